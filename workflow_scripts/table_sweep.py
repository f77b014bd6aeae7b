import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.table_sweep,
    list(snakemake.input),
    snakemake.output.tsv,
    snakemake.output.md,
    snakemake.output.html,
    dataset=snakemake.wildcards.dataset,
    split=snakemake.params.split,
    method=snakemake.wildcards.method,
    points=snakemake.params.points,
    variants=snakemake.params.variants,
)
