import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.software,
    dict(snakemake.params.config),
    snakemake.output.config,
    snakemake.output.software,
    packages=snakemake.params.packages,
)
