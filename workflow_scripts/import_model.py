import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

tasks.run_logged(
    snakemake.log[0],
    tasks.import_model,
    dict(snakemake.input.items()),
    snakemake.output[0],
    method=snakemake.params.method,
    method_cfg=snakemake.params.method_cfg,
)
