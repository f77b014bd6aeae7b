import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

source = snakemake.params.source
tasks.run_logged(
    snakemake.log[0],
    tasks.download,
    snakemake.output[0],
    gdrive=source.get("gdrive"),
    urls=source.get("urls", []),
    md5=source.get("md5"),
    mirrors=source.get("mirrors", []),
)
