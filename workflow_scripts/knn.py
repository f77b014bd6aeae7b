import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.knn,
    snakemake.input.features,
    snakemake.input.get("labels"),
    snakemake.output.knn,
    dim=snakemake.params.dim,
    k=int(snakemake.wildcards.k),
    backend=snakemake.params.backend,
    threads=snakemake.threads,
    seed=snakemake.params.seed,
    centre=snakemake.input.get("centre"),
    out_report=snakemake.output.report,
    blocks=list(snakemake.input.get("blocks", [])),
)
