import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.plot_scales,
    list(snakemake.input.cells),
    snakemake.input.published,
    snakemake.output.png,
    snakemake.output.svg,
    dataset=snakemake.wildcards.dataset,
    methods=snakemake.params.methods,
    splits=snakemake.params.splits,
    with_published=snakemake.params.with_published,
)
