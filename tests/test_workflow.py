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
    assert list(table.index) == [
        "gcnv", "gcnv_tau", "gcnd_2", "starfc", "cdp", "cdp_vote", "infomap", "spectral"
    ]  # fmt: skip
    assert {"pairwise_f_part1", "bcubed_f_part3", "nmi_part1"} <= set(table.columns)
    # spectral is beyond its limit (mem_mb: 1): "—" and the reason, the rest is complete
    assert table.drop(index="spectral").notna().all().all()
    assert table.loc["spectral"].isna().all()
    assert "| spectral | — | — |" in md
    assert "spectral / part1: spectral on" in md and "limits.mem_mb" in md
    cell = pd.read_csv(out / "synth" / "part3" / "gcnv.tsv", sep="\t")
    assert list(cell.columns) == METRIC_COLUMNS and len(cell) == 1
    row = cell.iloc[0]
    assert 0 < row["pairwise_f"] <= 1 and 0 < row["nmi"] <= 1 and row["seconds"] > 0
    labels = (out / "synth" / "part3" / "gcnv.labels").read_text().split()
    assert len(labels) == row["n_items"]
    # the published layout (synthetic: ours only), the plots, the sweep, the report pages
    tables = out / "tables"
    for name in ("synth_part1_prf", "synth_scales_pairwise_f", "synth_scales_bcubed_f",
                 "synth_scales_nmi", "synth_sweep_cdp"):  # fmt: skip
        for ext in ("md", "tsv", "html"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    scales = pd.read_csv(tables / "synth_scales_pairwise_f.tsv", sep="\t", index_col="method")
    assert list(scales.index) == list(table.index)
    assert scales.loc["gcnv", "part1"] == table.loc["gcnv", "pairwise_f_part1"]
    assert "part1_published" not in scales.columns
    assert scales.loc["cdp", "part3_n_true_clusters"] > 0
    plots = ["synth_scales_f", "synth_precision_recall", "synth_time_vs_items", "synth_sweep_cdp"]
    plots += ["synth_part3_cluster_sizes"]  # the largest split (any split is a target)
    for plot in plots:
        assert (out / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG", plot
        assert b"<svg" in (out / "plots" / f"{plot}.svg").read_bytes()[:1000], plot
    assert "scikit-learn" in (out / "report" / "software.html").read_text()
    # every rule wrote its log and benchmark
    rules = ("synthesize", "partition", "knn", "proposals", "train", "cluster", "table",
             "table_scales", "table_split", "table_sweep", "plot_scales", "plot_precision_recall",
             "plot_time", "plot_cluster_sizes", "plot_sweep", "software")  # fmt: skip
    for rule in rules:
        assert any((out / "logs" / rule).rglob("*.log")), rule
        assert any((out / "benchmarks" / rule).rglob("*.tsv")), rule


def test_same_config_gives_identical_labels(runs):
    a, b = (sorted((d / "results" / "synth").rglob("*.labels")) for d in runs)
    assert len(a) == 18  # 16 cells and 2 sweep points
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes(), x


def test_one_knn_per_split_and_one_model_per_training(runs):
    res = runs[0] / "results" / "synth"
    # cdp (k 10), gcnv (k 20) and infomap (k 50) read one exact graph, at k 50
    for split in ("part1", "part3"):
        knn = sorted(p.name for p in (res / split / "knn").iterdir())
        assert knn == ["flat_k50.json", "flat_k50.npz"]
        report = yaml.safe_load((res / split / "knn" / "flat_k50.json").read_text())
        assert report["exact"] and report["recall_at_k"] == 1.0 and report["k"] == 50
        members = sorted(p.parent.parent.name for p in (res / split / "committee").rglob("*.npz"))
        assert members == ["m1", "m2"]
    # gcnv and gcnv_tau differ only in tau: one model; and GCN-D's and STAR-FC's
    models = sorted(p.name for p in (res / "models").iterdir())
    assert [m.split("_")[0] for m in models] == ["gcnd", "gcnv", "starfc"], models
    # proposals: the test set on each test split, the training set on the train split
    assert sorted(p.name for p in (res / "part1" / "proposals").iterdir()) == ["tiny_test.npz"]
    assert sorted(p.name for p in (res / "part0" / "proposals").iterdir()) == ["tiny_train.npz"]
    a = (res / "part1" / "gcnv.labels").read_text()
    b = (res / "part1" / "gcnv_tau.labels").read_text()
    assert a != b  # ... clustered at two taus


def test_sweep_points_are_cells_and_the_published_point_equals_the_variant(runs):
    res = runs[0] / "results"
    sweep = pd.read_csv(res / "tables" / "synth_sweep_cdp.tsv", sep="\t", index_col="method")
    assert list(sweep.index) == ["cdp/th~0.6", "cdp/th~0.7"]
    assert list(sweep["th"]) == [0.6, 0.7]
    point = pd.read_csv(res / "synth" / "part1" / "cdp" / "th~0.7.tsv", sep="\t").iloc[0]
    cell = pd.read_csv(res / "synth" / "part1" / "cdp.tsv", sep="\t").iloc[0]
    assert point["method"] == "cdp/th~0.7"
    # th 0.7 is the variant's own setting: the same labels as the variant's cell
    labels = (res / "synth" / "part1" / "cdp" / "th~0.7.labels").read_bytes()
    assert labels == (res / "synth" / "part1" / "cdp.labels").read_bytes()
    assert point["pairwise_f"] == cell["pairwise_f"]
    assert sweep.loc["cdp/th~0.6", "pairwise_f"] != sweep.loc["cdp/th~0.7", "pairwise_f"]


def test_report_renders_in_a_headless_browser(runs, tmp_path):
    from _browser import find_browser, probe_report

    report = tmp_path / "report.html"
    snakemake("--configfile", str(TINY), "--report", str(report), cwd=runs[0])
    assert report.stat().st_size > 100_000
    browser = find_browser()
    if browser is None:
        pytest.skip(
            "no chromium on PATH: the report was built but not opened in a browser "
            "(.ci/run installs Debian's chromium where apt works)"
        )
    found = probe_report(report, browser, tmp_path)
    assert found["errors"] == []
    pngs = sorted(p.name for p in (runs[0] / "results" / "plots").glob("*.png"))
    images = {Path(k).name: v for k, v in found["images"].items()}
    assert sorted(images) == pngs
    for name, size in images.items():
        assert size and size[0] > 100 and size[1] > 100, (name, size)
    tables = {Path(k).name: v for k, v in found["tables"].items()}
    assert {"synth.html", "synth_scales_pairwise_f.html", "synth_part1_prf.html",
            "synth_sweep_cdp.html", "config.html", "software.html"} <= set(tables)  # fmt: skip
    for name, seen in tables.items():
        assert seen["mounted"] and seen["tables"] >= (0 if name == "config.html" else 1), name
    # the overview: a header row and one row per method, in each of its six sections
    assert tables["synth.html"]["rows"] >= 6 * 9


def test_rerun_has_nothing_to_do(runs):
    proc = snakemake("--configfile", str(TINY), "--cores", "2", "-n", cwd=runs[0])
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_dry_run_lists_whole_chain(tmp_path):
    proc = snakemake("-n", "results/synth/part9/gcnv.tsv", cwd=tmp_path)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert jobs == {"synthesize", "partition", "knn", "train", "cluster"}


PUBLISHED = ROOT / "config" / "published_results.tsv"  # shipped with the project


def test_every_published_ms1m_id_resolves_with_ms1m_settings(tmp_path):
    """`results/ms1m/part1/{id}.tsv` plans for every id of our registry with an MS1M row."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    ours = set(config["methods"])
    if PUBLISHED.is_file():
        published = set(pd.read_csv(PUBLISHED, sep="\t").query("dataset == 'ms1m'")["method_id"])
        ids = sorted(published & ours)
    else:
        ids = sorted(config["datasets"]["ms1m"]["methods"])
    assert {"cw", "aro", "minibatch_kmeans", "knn_dbscan", "fast_hac", "dask_spectral"} <= set(ids)
    assert {"cdp", "gcnv", "infomap", "gcnve", "lgcn", "gcnd_2", "gcnds_20", "starfc"} <= set(ids)
    targets = [f"results/ms1m/part1/{m}.tsv" for m in ids]
    proc = snakemake("-n", "-p", *targets, cwd=tmp_path)
    for m in ids:
        assert f"results/ms1m/part1/{m}.tsv" in proc.stdout, m
    # one kNN of part1 per backend at the largest k that MS1M's methods need: exact at 257
    # (FaceMap's 256 neighbours besides self; the others cut it to their k), and hnsw at 80
    # for GCN-D's published proposal sets
    assert {"fces", "facemap"} <= set(ids)
    knn_jobs = re.findall(r"results/ms1m/part1/knn/(\w+)\.npz", proc.stdout)
    assert set(knn_jobs) == {"flat_k257", "hnsw_k80"}, knn_jobs
    for name in ("ms1m_2", "ms1m_5", "ms1m_8", "ms1m_20"):
        assert f"results/ms1m/part1/proposals/{name}.npz" in proc.stdout, name
    assert "results/ms1m/part0/proposals/ms1m_train_84.npz" in proc.stdout


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


def _l2c_folder(root, splits):
    """A learn-to-cluster data/ folder: features/<stem>.bin and labels/<stem>.meta."""
    from facecluster.data.synthetic import SyntheticSpec, generate
    from facecluster.io import write_features, write_labels

    feats, labels = generate(SyntheticSpec(scale=0.002, seed=5))
    half = labels < np.median(labels)
    out = {}
    for stem, rows in zip(splits, (half, ~half), strict=True):
        write_features(root / "features" / f"{stem}.bin", feats[rows])
        write_labels(root / "labels" / f"{stem}.meta", labels[rows])
        out[stem] = feats[rows]
    return out


#: the tables, plots and report pages of a dataset with one test split
ONE_SPLIT_REPORT = {
    "table", "table_split", "plot_precision_recall", "plot_cluster_sizes", "software"
}  # fmt: skip


def _config_with(tmp_path, name, dataset):
    """The tiny config plus ``dataset`` as ``name`` (the one table of rule all)."""
    config = yaml.safe_load(TINY.read_text())
    config["all"] = [name]
    config["datasets"][name] = {"test_splits": ["part1"], "methods": ["cdp", "gcnv"], **dataset}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def _data_dir_dataset(data):
    return {"source": "data_dir", "data_dir": str(data)}


def test_data_dir_dataset_skips_generation(tmp_path):
    """A learn-to-cluster data/ folder is used as it is: no synthesize, no partition."""
    data = tmp_path / "l2c_data"
    _l2c_folder(data, ["part0_train", "part1_test"])
    cfg = _config_with(tmp_path, "mine", _data_dir_dataset(data))
    work = tmp_path / "work"
    dry = snakemake("--configfile", str(cfg), "-n", cwd=work)
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert jobs == {"knn", "train", "cluster", "all", *ONE_SPLIT_REPORT}
    snakemake("--configfile", str(cfg), "--cores", "2", cwd=work)
    table = pd.read_csv(work / "results" / "tables" / "mine.tsv", sep="\t", index_col="method")
    assert table.loc["cdp", "pairwise_f_part1"] > 0
    assert not (work / "resources").exists()


def _download_config(tmp_path, url, md5):
    archive = {"urls": [url], "md5": md5, "splits": ["part0", "part1"]}
    return _config_with(tmp_path, "dl", {"source": "download", "archives": {"tiny": archive}})


@pytest.fixture
def served_archive(tmp_path, http_server):
    """A tar.gz in learn-to-cluster's layout (under data/), served on 127.0.0.1."""
    import hashlib
    import tarfile

    _l2c_folder(tmp_path / "data", ["part0_train", "part1_test"])
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data", arcname="data")
    body = archive.read_bytes()
    http_server.files["/tiny.tar.gz"] = body
    return http_server.url("/tiny.tar.gz"), hashlib.md5(body).hexdigest()


def test_download_dataset_end_to_end(tmp_path, served_archive):
    url, md5 = served_archive
    cfg = _download_config(tmp_path, url, md5)
    # a real dataset's tables show the published numbers (here the user's own file)
    published = tmp_path / "published.tsv"
    published.write_text(
        "dataset\tsplit\tmethod_id\tmethod\tmetric\tvalue\tsource\n"
        "dl\tpart1\tcdp\tCDP\tpairwise_f\t50.0\ttest\n"
        "dl\tpart1\tlgcn\tL-GCN\tpairwise_f\t40.0\ttest\n"
    )
    config = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**config, "published": str(published)}))
    work = tmp_path / "work"
    dry = snakemake("--configfile", str(cfg), "-n", "results/dl/part1/gcnv.tsv", cwd=work)
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert jobs == {"download", "extract", "partition", "knn", "train", "cluster"}
    snakemake("--configfile", str(cfg), "--cores", "2", cwd=work)
    table = pd.read_csv(work / "results" / "tables" / "dl.tsv", sep="\t", index_col="method")
    assert table.loc["cdp", "pairwise_f_part1"] > 0
    prf = work / "results" / "tables" / "dl_part1_prf"
    joined = pd.read_csv(f"{prf}.tsv", sep="\t", index_col="method")
    assert list(joined.index) == ["cdp", "gcnv", "lgcn"]
    assert joined.loc["cdp", "pairwise_f_published"] == 50.0
    assert joined.loc["cdp", "pairwise_f_diff"] == pytest.approx(
        joined.loc["cdp", "pairwise_f"] - 50.0, abs=0.011
    )
    assert np.isnan(joined.loc["gcnv", "pairwise_f_published"])
    md = Path(f"{prf}.md").read_text()
    assert "| lgcn | — | — | — / 40.00 |" in md and "lgcn: not configured for dl" in md
    assert (work / "results" / "tables" / "dl_part1_metrics.md").is_file()
    res = work / "resources" / "dl"
    assert (res / "archives" / "tiny" / "features" / "part1_test.bin").is_file()
    assert not list(res.rglob("*.part")) and not list(res.rglob("*.tmp"))
    # the split is the archive's file, linked in place
    a, b = res / "features" / "part1.bin", res / "archives" / "tiny" / "features" / "part1_test.bin"
    assert a.read_bytes() == b.read_bytes()
    again = snakemake("--configfile", str(cfg), "-n", cwd=work)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout


def test_download_md5_mismatch_fails_and_leaves_no_archive(tmp_path, served_archive):
    url, _ = served_archive
    cfg = _download_config(tmp_path, url, "0" * 32)
    work = tmp_path / "work"
    proc = snakemake(
        "--configfile", str(cfg), "--cores", "1", "results/dl/part1/cdp.tsv", cwd=work, check=False
    )
    assert proc.returncode != 0
    log = (work / "results" / "logs" / "download" / "dl" / "tiny.log").read_text()
    assert "md5 mismatch" in log and "0" * 32 in log
    assert not list((work / "resources").rglob("tiny.tar.gz*"))


def test_data_dir_knn_files_are_reused(tmp_path):
    """knns/<stem>/faiss_k_80.npz of a learn-to-cluster folder replaces our flat kNN job."""
    from facecluster.knn import brute_force_knn

    data = tmp_path / "l2c_data"
    feats = _l2c_folder(data, ["part0_train", "part1_test"])
    for stem, x in feats.items():
        g = brute_force_knn(x, 30)
        l2c = np.stack([g.nbrs.astype(np.float32), 1 - g.sims], axis=1)  # (N, 2, k)
        (data / "knns" / stem).mkdir(parents=True)
        np.savez(data / "knns" / stem / "faiss_k_30.npz", data=l2c)
    cfg = _config_with(tmp_path, "mine", _data_dir_dataset(data))
    work = tmp_path / "work"
    dry = snakemake("--configfile", str(cfg), "-n", cwd=work)
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert jobs == {"train", "cluster", "all", *ONE_SPLIT_REPORT}  # no kNN job
    assert "knns/part1_test/faiss_k_30.npz" in dry.stdout
    snakemake("--configfile", str(cfg), "--cores", "2", cwd=work)
    assert not (work / "results" / "mine" / "part1" / "knn").exists()
    table = pd.read_csv(work / "results" / "tables" / "mine.tsv", sep="\t", index_col="method")
    assert table.loc["cdp", "pairwise_f_part1"] > 0 and table.loc["gcnv", "pairwise_f_part1"] > 0


def test_slurm_profile_dry_run_of_the_ms1m_cell(tmp_path):
    """The issue's command on a fresh checkout (no data): the whole chain, GPUs requested."""
    proc = snakemake(
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "-n",
        "results/ms1m/part9/gcnv.tsv",
        cwd=tmp_path,
    )
    out = proc.stdout
    jobs = re.findall(r"^rule (\w+):", out, flags=re.M)
    assert set(jobs) == {"download", "extract", "partition", "knn", "train", "cluster"}
    gpus = {}
    for block in re.split(r"^(?=rule \w+:)", out, flags=re.M):
        m = re.match(r"rule (\w+):", block)
        if m and "resources:" in block:
            found = re.search(r"\bgpu=(\d+)", block)
            gpus.setdefault(m.group(1), set()).add(int(found.group(1)) if found else 0)
    assert gpus["train"] == {1} and gpus["cluster"] == {1}
    assert 1 in gpus["knn"]  # part9 (5.21M images) goes to a GPU
    assert gpus["partition"] == {0}
    assert "slurm_partition=gpu" in out


def test_profile_by_name_after_the_documented_link(tmp_path):
    """README: `ln -s "$PWD/profiles/slurm" ~/.config/snakemake/slurm` once, then
    `snakemake --profile slurm ...` from the repository root."""
    import os

    config_home = tmp_path / "config"
    (config_home / "snakemake").mkdir(parents=True)
    (config_home / "snakemake" / "slurm").symlink_to(ROOT / "profiles" / "slurm")
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "slurm",
            "-n",
            "--directory",
            str(tmp_path / "work"),
            "results/ms1m/part9/gcnv.tsv",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "slurm_partition=gpu" in proc.stdout and "rule download:" in proc.stdout


def test_gpu_profile_serialises_gpu_jobs(tmp_path):
    """profiles/gpu declares one `gpu`; GCN jobs request it, so they never overlap."""
    proc = snakemake(
        "--profile", str(ROOT / "profiles" / "gpu"), "--configfile", str(TINY), cwd=tmp_path
    )
    log = proc.stdout + proc.stderr
    assert "gpu=1" in log
    # the Snakemake log lists job starts and ends in order: at most one GPU job at a time
    running, most = set(), 0
    gpu_jobs = set()
    for block in re.split(r"\n(?=\[)", log):
        start = re.search(r"^(?:local)?rule (\w+):.*?jobid: (\d+)", block, flags=re.M | re.S)
        if start and re.search(r"\bgpu=1\b", block):
            gpu_jobs.add(start.group(2))
            running.add(start.group(2))
            most = max(most, len(running))
        done = re.search(r"Finished jobid: (\d+)", block)
        if done:
            running.discard(done.group(1))
    # GCN-V: one train (gcnv and gcnv_tau share the model) + 2 x 2 cluster jobs; GCN-D and
    # STAR-FC: one train + 2 cluster jobs each
    assert len(gpu_jobs) == 11 and most == 1


def test_released_weights_replace_training(tmp_path):
    """A variant with `pretrained` clusters with the imported weights: no train job."""
    cfg = tmp_path / "pre.yaml"
    weights = tmp_path / "pretrained_gcn_v_ms1m.pth"
    weights.write_bytes(b"")
    cfg.write_text(
        "methods:\n  gcnv:\n    family: gcnv\n    k: 80\n"
        f"    per_dataset: {{synth: {{pretrained: {{model: {weights}}}}}}}\n"
    )
    proc = snakemake("--configfile", str(cfg), "-n", "results/synth/part1/gcnv.tsv", cwd=tmp_path)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert "import_model" in jobs and "train" not in jobs
    assert re.search(r"results/synth/pretrained/gcnv_pretrained_\w+\.pt", proc.stdout)


def test_upstream_inference_feeds_gcne(tmp_path):
    """GCN-V+E reads GCN-V's inference on the train split (training) and the test split."""
    proc = snakemake("-n", "results/synth/part1/gcnve.tsv", cwd=tmp_path)
    infer = set(re.findall(r"results/synth/(part\d)/infer/gcnv_\w+\.npz", proc.stdout))
    assert infer == {"part0", "part1"}
    jobs = re.findall(r"^rule (\w+):", proc.stdout, flags=re.M)
    assert jobs.count("train") == 2  # GCN-V's and GCN-E's


# --------------------------------------------------------------- the user's own embeddings


def _unlabelled_config(tmp_path, features, **dataset):
    """The tiny config plus an unlabelled dataset `mine` (the one dataset of rule all)."""
    config = yaml.safe_load(TINY.read_text())
    config["all"] = ["mine"]
    config["datasets"]["mine"] = {"source": "unlabelled", "features": str(features), **dataset}
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg


def test_unlabelled_embeddings_with_a_model_trained_elsewhere(runs, tmp_path):
    """A float16 .npy with ids, clustered by CDP (its th calibrated on synth's part0), by
    Infomap and by GCN-V trained on synth's part0: clusters.tsv with ids, a run record with
    the summary, the summary table and the cluster-size plot; the tiny run's GCN-V model is
    reused, not retrained."""
    work = runs[0]
    feats = np.fromfile(work / "resources/synth/features/part1.bin", dtype="<f4").reshape(-1, 256)
    np.save(tmp_path / "emb.npy", feats.astype(np.float16))
    ids = [f"photos/{i:05d}.jpg" for i in range(feats.shape[0])]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    cfg = _unlabelled_config(
        tmp_path,
        tmp_path / "emb.npy",
        ids=str(tmp_path / "ids.txt"),
        train_on="synth",
        methods=["cdp", "infomap", "gcnv"],
        calibrate=[{"method": "cdp", "grid": {"th": [0.6, 0.7]}, "on": "synth/part0"}],
    )
    models = sorted((work / "results/synth/models").iterdir())
    targets = [
        "results/tables/mine.md",
        "results/plots/mine_all_cluster_sizes.png",
        *(f"results/mine/all/{m}.clusters.tsv" for m in ("cdp", "infomap", "gcnv")),
    ]
    proc = snakemake("--configfile", str(cfg), "--cores", "2", *targets, cwd=work)
    jobs = set(re.findall(r"rule (\w+):", proc.stdout + proc.stderr))
    assert "train" not in jobs and {"calibrate", "cluster", "knn", "table"} <= jobs
    assert sorted((work / "results/synth/models").iterdir()) == models
    res = work / "results" / "mine" / "all"
    gcnv = pd.read_csv(res / "gcnv.clusters.tsv", sep="\t")
    assert list(gcnv.columns) == ["id", "cluster", "confidence"]
    assert gcnv["id"].tolist() == ids and gcnv["confidence"].between(-1, 2).all()
    run = yaml.safe_load((res / "gcnv.run.json").read_text())
    assert run["summary"]["n_items"] == len(ids) and run["summary"]["n_clusters"] > 10
    # the same items as synth's part1, as float16: the same clustering as the labelled cell
    labelled = np.loadtxt(work / "results/synth/part1/gcnv.labels", dtype=np.int64)
    assert run["summary"]["n_clusters"] == pytest.approx(np.unique(labelled).size, rel=0.1)
    cal = yaml.safe_load((work / "results/mine/calibration/cdp.json").read_text())
    assert cal["on"] == "synth/part0" and cal["chosen"]["th"] in (0.6, 0.7)
    cdp_run = yaml.safe_load((res / "cdp.run.json").read_text())
    assert cdp_run["params"]["th"] == cal["chosen"]["th"] and cdp_run["calibration"] == cal
    assert (work / "results/synth/part0/cdp/th~0.6.tsv").is_file()
    md = (work / "results/tables/mine.md").read_text()
    assert "mine (unlabelled, all)" in md and "| gcnv |" in md and "largest cluster" in md


def test_every_label_free_method_plans_on_unlabelled_embeddings(tmp_path):
    """`results/mine/all/{method}.clusters.tsv` plans for every variant of the default
    registry that can run without labels (the learned ones trained on synth's part0)."""
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((50, 256)))
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    # needs the true number of identities (kmeans, spectral, ward HAC) or a committee of
    # other models' features (CDP vote / mediator): not without labels
    cannot = {
        "kmeans", "minibatch_kmeans", "spectral", "dask_spectral", "hac", "cdp_vote",
        "cdp_mediator",
    }  # fmt: skip
    methods = [m for m in config["methods"] if m not in cannot]
    assert len(methods) >= 20
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "all": ["mine"],
                "datasets": {
                    "mine": {
                        "source": "unlabelled",
                        "features": str(tmp_path / "emb.npy"),
                        "train_on": "synth",
                        "methods": methods,
                    }
                },
            }
        )
    )
    targets = [f"results/mine/all/{m}.clusters.tsv" for m in methods]
    proc = snakemake("--configfile", str(cfg), "-n", *targets, cwd=tmp_path)
    for m in methods:
        assert f"results/mine/all/{m}.clusters.tsv" in proc.stdout, m
    assert "results/synth/models/gcnv_" in proc.stdout
    # the ones that cannot are refused before any job, each with its reason
    cfg.write_text(cfg.read_text().replace("methods:", "methods: [kmeans, cdp_vote]\n    x:"))
    bad = yaml.safe_load(cfg.read_text())
    bad["datasets"]["mine"].pop("x")
    cfg.write_text(yaml.safe_dump(bad))
    proc = snakemake("--configfile", str(cfg), "-n", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "'kmeans' uses the true number of identities" in out
    assert "'cdp_vote' needs a committee" in out


def test_bad_embeddings_fail_before_any_job(tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 256)).astype(np.float32)
    x[7] = np.nan
    np.save(tmp_path / "emb.npy", x)
    cfg = _unlabelled_config(tmp_path, tmp_path / "emb.npy", methods=["cdp"])
    proc = snakemake("--configfile", str(cfg), "-n", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "emb.npy: row(s) with NaN or Inf (first rows: [7])" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
