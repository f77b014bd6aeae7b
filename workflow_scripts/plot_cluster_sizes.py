import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.plot_cluster_sizes,
    snakemake.input.get("gt"),
    list(snakemake.input.pred),
    snakemake.output.png,
    snakemake.output.svg,
    dataset=snakemake.wildcards.dataset,
    split=snakemake.wildcards.split,
    methods=snakemake.params.methods,
)
