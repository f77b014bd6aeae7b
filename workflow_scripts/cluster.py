import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.cluster_cell,
    snakemake.input.features,
    snakemake.input.get("labels"),
    snakemake.input.knn,
    snakemake.input.get("model"),
    snakemake.output.labels,
    snakemake.output.run,
    snakemake.output.cell,
    dataset=snakemake.wildcards.dataset,
    split=snakemake.wildcards.split,
    method=snakemake.wildcards.method,
    method_cfg=snakemake.params.method_cfg,
    limits=snakemake.params.limits,
    extra=snakemake.params.extra,
    backends=snakemake.params.backends,
    dim=snakemake.params.dim,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    device=snakemake.params.device,
    centre=snakemake.input.get("centre"),
    calibration=snakemake.input.get("calibration"),
    ids=snakemake.input.get("ids"),
    out_clusters=snakemake.output.clusters,
)
