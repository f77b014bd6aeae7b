import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.evaluate,
    snakemake.input.gt,
    snakemake.input.pred,
    snakemake.input.run,
    snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
    split=snakemake.wildcards.split,
    method=snakemake.wildcards.method,
)
