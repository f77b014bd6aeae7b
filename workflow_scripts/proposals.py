import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.proposals,
    snakemake.input.features,
    snakemake.input.get("labels"),
    snakemake.input.knn,
    snakemake.output[0],
    spec=snakemake.params.spec,
    backends=snakemake.params.backends,
    dim=snakemake.params.dim,
    threads=snakemake.threads,
    seed=snakemake.params.seed,
    centre=snakemake.input.get("centre"),
)
