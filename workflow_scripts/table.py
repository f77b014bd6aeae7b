import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.table,
    list(snakemake.input),
    snakemake.output.tsv,
    snakemake.output.md,
    snakemake.output.html,
    dataset=snakemake.wildcards.dataset,
    methods=snakemake.params.methods,
    splits=snakemake.params.splits,
    labelled=snakemake.params.labelled,
)
