import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from facecluster import tasks  # noqa: E402

if "archive" in snakemake.input.keys():  # a split of a downloaded archive
    folder, stem = Path(snakemake.input.archive), snakemake.params.stem
    tasks.run_logged(
        snakemake.log[0],
        tasks.place_split,
        str(folder / "features" / f"{stem}.bin"),
        str(folder / "labels" / f"{stem}.meta"),
        snakemake.output.features,
        snakemake.output.labels,
        dim=snakemake.params.dim,
    )
else:
    tasks.run_logged(
        snakemake.log[0],
        tasks.partition,
        snakemake.input.features,
        snakemake.input.labels,
        [snakemake.output.features],
        [snakemake.output.labels],
        [snakemake.wildcards.split],
        dim=snakemake.params.dim,
        n_parts=snakemake.params.n_parts,
        seed=snakemake.params.seed,
    )
