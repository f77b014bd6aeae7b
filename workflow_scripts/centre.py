import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.centre,
    snakemake.input.features,
    snakemake.output[0],
    dim=snakemake.params.dim,
)
