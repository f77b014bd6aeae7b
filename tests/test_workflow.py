"""Integration tests: the Snakemake workflow end to end on a tiny config, in temp dirs."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from facecluster.tasks import METRIC_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]

pytestmark = pytest.mark.integration


def snakemake(*args, cwd, check=True):
    proc = subprocess.run(
        [*SNAKEMAKE, "--directory", str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny workflow run twice, in two fresh directories."""
    dirs = []
    for name in ("a", "b"):
        d = tmp_path_factory.mktemp(name)
        snakemake("--configfile", str(TINY), "--cores", "2", cwd=d)
        dirs.append(d)
    return dirs


def test_end_to_end_outputs(runs):
    out = runs[0] / "results"
    md = (out / "tables" / "synth.md").read_text()
    for title in ("Pairwise F", "BCubed F", "NMI"):
        assert title in md
    table = pd.read_csv(out / "tables" / "synth.tsv", sep="\t", index_col="method")
    assert list(table.index) == ["gcnv", "cdp"]
    assert {"pairwise_f_part1", "bcubed_f_part3", "nmi_part1"} <= set(table.columns)
    assert table.notna().all().all()
    cell = pd.read_csv(out / "synth" / "part3" / "gcnv.tsv", sep="\t")
    assert list(cell.columns) == METRIC_COLUMNS and len(cell) == 1
    row = cell.iloc[0]
    assert 0 < row["pairwise_f"] <= 1 and 0 < row["nmi"] <= 1 and row["seconds"] > 0
    labels = (out / "synth" / "part3" / "gcnv.labels").read_text().split()
    assert len(labels) == row["n_items"]
    # every rule wrote its log and benchmark
    for rule in ("synthesize", "partition", "knn", "train", "cluster", "evaluate", "table"):
        assert any((out / "logs" / rule).rglob("*.log")), rule
        assert any((out / "benchmarks" / rule).rglob("*.tsv")), rule


def test_same_config_gives_identical_labels(runs):
    a, b = (sorted((d / "results" / "synth").rglob("*.labels")) for d in runs)
    assert len(a) == 4
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes(), x


def test_rerun_has_nothing_to_do(runs):
    proc = snakemake("--configfile", str(TINY), "--cores", "2", "-n", cwd=runs[0])
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_dry_run_lists_whole_chain(tmp_path):
    proc = snakemake("-n", "results/synth/part9/gcnv.tsv", cwd=tmp_path)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert jobs == {"synthesize", "partition", "knn", "train", "cluster", "evaluate"}


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods:\n  cdp:\n    family: cdp\n    k: fifteen\n")
    proc = snakemake("--configfile", str(bad), "-n", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "methods.cdp.k" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists()


def test_lint_is_clean():
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


def test_data_dir_dataset_skips_generation(tmp_path):
    """A learn-to-cluster data/ folder is used as it is: no synthesize, no partition."""
    from facecluster.data.synthetic import SyntheticSpec, generate
    from facecluster.io import write_features, write_labels

    feats, labels = generate(SyntheticSpec(scale=0.002, seed=5))
    data = tmp_path / "l2c_data"
    half = labels < np.median(labels)
    for stem, rows in (("part0_train", half), ("part1_test", ~half)):
        write_features(data / "features" / f"{stem}.bin", feats[rows])
        write_labels(data / "labels" / f"{stem}.meta", labels[rows])
    config = yaml.safe_load(TINY.read_text())
    config["all"] = ["mine"]
    config["datasets"]["mine"] = {
        "source": "data_dir",
        "data_dir": str(data),
        "test_splits": ["part1"],
        "methods": ["cdp", "gcnv"],
    }
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    dry = snakemake("--configfile", str(cfg), "-n", cwd=work)
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert jobs == {"knn", "train", "cluster", "evaluate", "table", "all"}
    snakemake("--configfile", str(cfg), "--cores", "2", cwd=work)
    table = pd.read_csv(work / "results" / "tables" / "mine.tsv", sep="\t", index_col="method")
    assert table.loc["cdp", "pairwise_f_part1"] > 0
    assert not (work / "resources").exists()
