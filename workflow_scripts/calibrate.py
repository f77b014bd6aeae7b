import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

cal = snakemake.params.calibration
tasks.run_logged(
    snakemake.log[0],
    tasks.calibrate,
    list(snakemake.input),
    snakemake.output[0],
    method=snakemake.wildcards.method,
    on=f"{cal['dataset']}/{cal['split']}",
    metric=cal["metric"],
    points=cal["points"],
    variants=snakemake.params.variants,
)
