"""File-level steps: bad inputs give errors naming the file; outputs are written atomically."""

import json

import numpy as np
import pandas as pd
import pytest

from facecluster import tasks
from facecluster.io import InputError, write_features, write_knn, write_labels
from facecluster.knn import brute_force_knn

BACKENDS = {"flat": {"index": "flat", "batch_size": 64}}
CDP = {"family": "cdp", "k": 5, "knn_backend": "flat", "params": {"th": 0.5}, "train": {}}


@pytest.fixture
def split(tmp_path, small_synth):
    feats, labels = small_synth
    write_features(tmp_path / "f.bin", feats)
    write_labels(tmp_path / "l.meta", labels)
    return tmp_path, feats, labels


def run_knn_task(d, *, dim, k):
    """tasks.knn on the split fixture's files, writing ``k.npz``."""
    tasks.knn(
        str(d / "f.bin"),
        str(d / "l.meta"),
        str(d / "k.npz"),
        dim=dim,
        k=k,
        backend=BACKENDS["flat"],
        threads=1,
        seed=0,
    )


def test_knn_task_k_too_large_names_file(split):
    d, *_ = split
    with pytest.raises(InputError, match=r"f\.bin.*k=5000"):
        run_knn_task(d, dim=32, k=5000)
    assert not (d / "k.npz").exists()


def test_knn_task_wrong_dimension_names_file(split):
    d, *_ = split
    with pytest.raises(InputError, match=r"f\.bin.*dim 256"):
        run_knn_task(d, dim=256, k=5)


def test_cluster_and_evaluate(split):
    d, feats, labels = split
    write_knn(d / "k.npz", brute_force_knn(feats, 5))
    kw = dict(method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32, seed=0, threads=1)
    pred = tasks.cluster(
        str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), None,
        str(d / "p.labels"), str(d / "run.json"), device="cpu", **kw,
    )  # fmt: skip
    assert pred.min() == 0 and pred.size == labels.size
    run = json.loads((d / "run.json").read_text())
    assert run["seconds"] > 0 and run["peak_rss_mb"] > 0 and run["method"] == "cdp"
    row = tasks.evaluate(
        str(d / "l.meta"), str(d / "p.labels"), str(d / "run.json"), str(d / "m.tsv"),
        dataset="x", split="part1", method="cdp",
    )  # fmt: skip
    table = pd.read_csv(d / "m.tsv", sep="\t")
    assert list(table.columns) == tasks.METRIC_COLUMNS
    assert table.loc[0, "pairwise_f"] == pytest.approx(row["pairwise_f"])


def test_cluster_rejects_knn_of_other_split(split):
    d, feats, _ = split
    write_knn(d / "k.npz", brute_force_knn(feats[:100], 5))
    with pytest.raises(InputError, match=r"k\.npz.*100 rows"):
        tasks.cluster(
            str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), None,
            str(d / "p.labels"), str(d / "run.json"),
            method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32, seed=0, threads=1,
            device="cpu",
        )  # fmt: skip
    assert not (d / "p.labels").exists()


def test_corrupt_model_names_file(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"m\.pt"):
        tasks.load_model(str(tmp_path / "m.pt"))


def test_evaluate_length_mismatch_names_files(tmp_path):
    write_labels(tmp_path / "gt.meta", np.arange(10))
    write_labels(tmp_path / "p.labels", np.arange(9))
    (tmp_path / "run.json").write_text('{"seconds": 1, "peak_rss_mb": 1}')
    with pytest.raises(InputError, match=r"p\.labels.*9.*gt\.meta.*10"):
        tasks.evaluate(
            str(tmp_path / "gt.meta"), str(tmp_path / "p.labels"), str(tmp_path / "run.json"),
            str(tmp_path / "m.tsv"), dataset="x", split="part1", method="cdp",
        )  # fmt: skip
    assert not (tmp_path / "m.tsv").exists()


def test_table(tmp_path):
    cells = []
    for m in ("gcnv", "cdp"):
        for s in ("part1", "part3"):
            row = {c: 0.5 for c in tasks.METRIC_COLUMNS}
            row.update(dataset="x", split=s, method=m, pairwise_f=0.8 if m == "cdp" else 0.9)
            p = tmp_path / f"{m}_{s}.tsv"
            pd.DataFrame([row]).to_csv(p, sep="\t", index=False)
            cells.append(str(p))
    flat = tasks.table(
        cells, str(tmp_path / "t.tsv"), str(tmp_path / "t.md"),
        dataset="x", methods=["gcnv", "cdp"], splits=["part1", "part3"],
    )  # fmt: skip
    assert list(flat.index) == ["gcnv", "cdp"]
    assert flat.loc["cdp", "pairwise_f_part3"] == pytest.approx(80.0)
    md = (tmp_path / "t.md").read_text()
    assert "| gcnv | 90.00 | 90.00 |" in md and "## NMI (%)" in md


def test_cluster_cuts_a_larger_knn_and_rejects_a_smaller_one(split):
    d, feats, _ = split
    kw = dict(method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32, seed=0, threads=1)
    paths = [str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), None]
    write_knn(d / "k.npz", brute_force_knn(feats, 5))
    exact = tasks.cluster(*paths, str(d / "a.labels"), str(d / "a.json"), device="cpu", **kw)
    write_knn(d / "k.npz", brute_force_knn(feats, 12))  # a reused learn-to-cluster file
    cut = tasks.cluster(*paths, str(d / "b.labels"), str(d / "b.json"), device="cpu", **kw)
    np.testing.assert_array_equal(exact, cut)
    write_knn(d / "k.npz", brute_force_knn(feats, 3))
    with pytest.raises(InputError, match=r"k\.npz.*k=3.*needs k=5"):
        tasks.cluster(*paths, str(d / "c.labels"), str(d / "c.json"), device="cpu", **kw)
    assert not (d / "c.labels").exists()


def test_place_split_links_a_checked_split(split):
    d, feats, labels = split
    info = tasks.place_split(
        str(d / "f.bin"), str(d / "l.meta"), str(d / "out" / "f.bin"), str(d / "out" / "l.meta"),
        dim=32,
    )  # fmt: skip
    assert info["n_items"] == labels.size
    assert (d / "out" / "f.bin").read_bytes() == (d / "f.bin").read_bytes()
    assert (d / "out" / "f.bin").stat().st_ino == (d / "f.bin").stat().st_ino  # a hard link


@pytest.mark.parametrize("damage", ["short_labels", "wrong_dim", "nan"])
def test_place_split_rejects_a_bad_split_and_writes_nothing(split, damage):
    d, feats, labels = split
    dim = 32
    if damage == "short_labels":
        write_labels(d / "l.meta", labels[:-1])
    elif damage == "wrong_dim":
        dim = 64
    else:
        bad = feats.copy()
        bad[3, 1] = np.nan
        write_features(d / "f.bin", bad)
    with pytest.raises(InputError, match=r"f\.bin"):
        tasks.place_split(
            str(d / "f.bin"), str(d / "l.meta"), str(d / "o.bin"), str(d / "o.meta"), dim=dim
        )
    assert not (d / "o.bin").exists() and not (d / "o.meta").exists()


def test_a_method_beyond_its_limits_is_refused_and_shown_as_a_dash(split, tmp_path):
    d, feats, labels = split
    write_knn(d / "k.npz", brute_force_knn(feats, 5))
    kw = dict(method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32, seed=0, threads=1)
    paths = [str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), None]
    out = tasks.cluster(
        *paths, str(d / "r.labels"), str(d / "r.json"), device="cpu", limits={"mem_mb": 0}, **kw
    )
    assert out is None and (d / "r.labels").read_text() == ""
    record = json.loads((d / "r.json").read_text())
    assert "limits.mem_mb" in record["refused"] and f"{labels.size:,} items" in record["refused"]
    row = tasks.evaluate(
        str(d / "l.meta"), str(d / "r.labels"), str(d / "r.json"), str(d / "r.tsv"),
        dataset="x", split="part1", method="cdp",
    )  # fmt: skip
    assert np.isnan(row.get("pairwise_f", np.nan)) and "limits.mem_mb" in row["note"]
    # a cell within its limits next to it
    tasks.cluster(*paths, str(d / "a.labels"), str(d / "a.json"), device="cpu", **kw)
    tasks.evaluate(
        str(d / "l.meta"), str(d / "a.labels"), str(d / "a.json"), str(d / "a.tsv"),
        dataset="x", split="part3", method="cdp",
    )  # fmt: skip
    flat = tasks.table(
        [str(d / "r.tsv"), str(d / "a.tsv")], str(d / "t.tsv"), str(d / "t.md"),
        dataset="x", methods=["cdp"], splits=["part1", "part3"],
    )  # fmt: skip
    assert np.isnan(flat.loc["cdp", "pairwise_f_part1"]) and flat.loc["cdp", "pairwise_f_part3"] > 0
    md = (d / "t.md").read_text()
    assert "| cdp | — | " in md and "- cdp / part1: cdp on" in md


def test_proposals_task_writes_a_readable_set(split):
    from facecluster.proposals import Proposals

    d, feats, labels = split
    write_knn(d / "k.npz", brute_force_knn(feats, 10))
    spec = {"k": 10, "maxsz": 300, "iter0": [{"th": 0.5}], "iter1": [{"k": 2, "sv_maxsz": 4}]}
    tasks.proposals(
        str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), str(d / "p.npz"),
        spec=spec, backends=BACKENDS, dim=32, threads=1, seed=0,
    )  # fmt: skip
    props = Proposals.read(d / "p.npz", labels.size)
    assert props.n_proposals > 0 and len(props.folders) == 2
    extra = tasks.load_extra({"proposals": [{"proposals": str(d / "p.npz")}]}, dim=32,
                             n_items=labels.size, k=5)  # fmt: skip
    assert list(extra["proposals"]) == ["p"]


def test_infer_and_upstream_round_trip_with_checks(split):
    from facecluster.methods import Context, get_family

    d, feats, labels = split
    graph = brute_force_knn(feats, 5)
    write_knn(d / "k.npz", graph)
    gcnv = get_family("gcnv")
    ctx = Context(seed=0, threads=1, device="cpu")
    model = gcnv.train(feats, labels, graph, context=ctx, hidden=8, epochs=3)
    model.update(family="gcnv", k=5)
    tasks.save_model(model, str(d / "m.pt"))
    cfg = {"family": "gcnv", "k": 5, "knn_backend": "flat", "params": {}, "train": {}}
    tasks.infer(
        str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), str(d / "m.pt"),
        str(d / "inf.npz"), method="gcnv", method_cfg=cfg, backends=BACKENDS, dim=32,
        seed=0, threads=1, device="cpu",
    )  # fmt: skip
    out = tasks.load_extra({"upstream": [{"upstream": str(d / "inf.npz")}]}, dim=32,
                           n_items=labels.size, k=5)["upstream"]  # fmt: skip
    assert out["confidence"].shape == (labels.size,)
    assert out["features"].shape == (labels.size, 8)
    with pytest.raises(InputError, match=r"inf\.npz.*rows"):
        tasks.read_inference(str(d / "inf.npz"), labels.size + 1)
    # a family without inference output is refused by name
    with pytest.raises(ValueError, match="no inference output"):
        tasks.infer(
            str(d / "f.bin"), str(d / "l.meta"), str(d / "k.npz"), str(d / "m.pt"),
            str(d / "x.npz"), method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32,
            seed=0, threads=1, device="cpu",
        )  # fmt: skip


def test_import_model_names_a_missing_checkpoint(tmp_path):
    cfg = {"family": "gcnv", "k": 5, "knn_backend": "flat", "params": {}, "train": {}}
    with pytest.raises(InputError, match=r"nope\.pth.*gcnv"):
        tasks.import_model({"model": str(tmp_path / "nope.pth")}, str(tmp_path / "m.pt"),
                           method="gcnv", method_cfg=cfg)  # fmt: skip
    assert not (tmp_path / "m.pt").exists()


def test_import_model_names_a_missing_role(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    cfg = {"family": "gcnv", "k": 5, "knn_backend": "flat", "params": {}, "train": {}}
    with pytest.raises(InputError, match=r"gcnv.*'model'"):
        tasks.import_model({"det": str(weights)}, str(tmp_path / "m.pt"),
                           method="gcnv", method_cfg=cfg)  # fmt: skip
    cfg["family"] = "gcnds"
    with pytest.raises(InputError, match=r"expected det, iop, seg"):
        tasks.import_model({"det": str(weights)}, str(tmp_path / "m.pt"),
                           method="gcnds_2", method_cfg=cfg)  # fmt: skip


def test_logs_carry_no_faiss_loader_noise(tmp_path):
    """faiss's loader logs each missing AVX build as a ModuleNotFoundError at INFO."""
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = (
        "from facecluster.tasks import setup_logging; import logging; "
        f"setup_logging({str(log)!r}); import faiss; "
        "logging.getLogger('facecluster').info('kNN starts'); "
        "logging.getLogger('faiss.loader').warning('a real problem')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    text = log.read_text()
    assert "kNN starts" in text and "a real problem" in text
    assert "ModuleNotFoundError" not in text and "Loading faiss" not in text


def test_library_warnings_go_to_the_job_log(tmp_path):
    """A library's warnings.warn lands in the job's log, not on the run's console."""
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = (
        "from facecluster.tasks import setup_logging; import warnings; "
        f"setup_logging({str(log)!r}); "
        "warnings.warn('graph is not fully connected', UserWarning)"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "graph is not fully connected" in log.read_text()
    assert "not fully connected" not in proc.stderr


def test_sharded_knn_equals_the_unsharded_one(tmp_path, small_synth):
    """Blocks of query rows (each searching the whole split), merged, give the unsharded
    kNN file byte for byte; a block past the end is empty; a missing block is an error."""
    feats, labels = small_synth
    write_features(tmp_path / "f.bin", feats)
    n = feats.shape[0]
    backend = {"index": "flat", "batch_size": 128, "block_rows": 512}
    kw = dict(dim=feats.shape[1], k=10, threads=1, seed=0)
    tasks.knn(str(tmp_path / "f.bin"), None, str(tmp_path / "whole.npz"), backend=backend, **kw)
    n_blocks = -(-n // 512) + 1  # one more than needed: the size was an estimate
    blocks = [str(tmp_path / f"b{b}.npz") for b in range(n_blocks)]
    spans = [
        tasks.knn_block(str(tmp_path / "f.bin"), None, path, backend=backend, block=b,
                        n_blocks=n_blocks, **kw)
        for b, path in enumerate(blocks)
    ]  # fmt: skip
    assert spans[0] == (0, 512) and spans[-1] == (n, n)
    report = tasks.knn(
        str(tmp_path / "f.bin"), None, str(tmp_path / "merged.npz"), backend=backend,
        out_report=str(tmp_path / "merged.json"), blocks=blocks, **kw,
    )  # fmt: skip
    assert report["blocks"] == n_blocks and report["n_items"] == n and report["exact"]
    assert (tmp_path / "merged.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    with pytest.raises(InputError, match=r"b2\.npz: block starts at row 1024, expected 512"):
        tasks.knn_merge([blocks[0], blocks[2]], str(tmp_path / "bad.npz"))
    assert not (tmp_path / "bad.npz").exists()
