import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.train,
    snakemake.input.features,
    snakemake.input.get("labels"),
    snakemake.input.knn,
    snakemake.output[0],
    method=snakemake.params.method,
    method_cfg=snakemake.params.method_cfg,
    extra=snakemake.params.extra,
    backends=snakemake.params.backends,
    dim=snakemake.params.dim,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    device=snakemake.params.device,
    centre=snakemake.input.get("centre"),
    dataset=snakemake.wildcards.dataset,
    split=snakemake.params.split,
)
