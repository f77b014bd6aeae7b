import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.knn_block,
    snakemake.input.features,
    snakemake.input.get("labels"),
    snakemake.output[0],
    dim=snakemake.params.dim,
    k=int(snakemake.wildcards.k),
    backend=snakemake.params.backend,
    threads=snakemake.threads,
    seed=snakemake.params.seed,
    block=int(snakemake.wildcards.block),
    n_blocks=snakemake.params.n_blocks,
    centre=snakemake.input.get("centre"),
)
