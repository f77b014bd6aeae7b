import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.plot_sweep,
    snakemake.input[0],
    snakemake.output.png,
    snakemake.output.svg,
    dataset=snakemake.wildcards.dataset,
    split=snakemake.params.split,
    method=snakemake.wildcards.method,
    setting=snakemake.params.setting,
)
