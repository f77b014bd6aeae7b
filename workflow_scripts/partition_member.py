import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.partition,
    snakemake.input.features,
    snakemake.input.labels,
    [snakemake.output[0]],
    [],
    [snakemake.wildcards.split],
    dim=snakemake.params.dim,
    n_parts=snakemake.params.n_parts,
    seed=snakemake.params.seed,
)
