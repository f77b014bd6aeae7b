"""The user's own unlabelled embeddings: reading them, bad inputs, thresholds that do not
travel, centring, calibration on a labelled split, and models trained elsewhere."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from facecluster import tasks
from facecluster.config import (
    SCHEMA_PATH,
    ConfigError,
    check_inputs,
    method_config,
    validate_config,
)
from facecluster.diagnostics import cluster_summary, similarity_of, threshold_warnings
from facecluster.io import (
    InputError,
    inspect_features,
    read_features,
    read_ids,
    scan_features,
    write_features,
    write_knn,
    write_labels,
)
from facecluster.knn import brute_force_knn

DEFAULT = yaml.safe_load((SCHEMA_PATH.parent / "config.yaml").read_text())
BACKENDS = {"flat": {"index": "flat", "batch_size": 64}}
CDP = {"family": "cdp", "k": 10, "knn_backend": "flat", "params": {"th": 0.7}, "train": {}}


def blobs(n_ids=30, per_id=10, dim=32, spread=0.25, seed=0, offset=0.0):
    """Unit-norm identity blobs (float32 (N, dim), labels (N,)); ``offset`` adds a shared
    component (dlib-like geometry: every pair has a high cosine)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_ids), per_id)
    x = centres[labels] + spread * rng.standard_normal((labels.size, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if offset:
        u = rng.standard_normal(dim)
        x = x + offset * u / np.linalg.norm(u)
    return x.astype(np.float32), labels


# ---------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_npy_of_any_float_dtype_reads_as_normalised_float32(tmp_path, dtype):
    x, _ = blobs()
    np.save(tmp_path / "e.npy", x.astype(dtype))
    got = read_features(tmp_path / "e.npy", 32)
    assert got.dtype == np.float32 and got.shape == x.shape
    expected = x.astype(dtype).astype(np.float32)
    expected /= np.linalg.norm(expected.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert inspect_features(tmp_path / "e.npy").dim == 32


def test_blocks_give_the_same_result_as_one_read(tmp_path, monkeypatch):
    x, _ = blobs()
    np.save(tmp_path / "e.npy", x.astype(np.float16))
    whole = read_features(tmp_path / "e.npy", 32)
    monkeypatch.setattr("facecluster.io.CHUNK_ROWS", 7)
    np.testing.assert_array_equal(read_features(tmp_path / "e.npy", 32), whole)


def test_centring_subtracts_the_mean_before_normalising(tmp_path):
    x, _ = blobs(offset=3.0)
    np.save(tmp_path / "e.npy", x)
    mean = tasks.centre(str(tmp_path / "e.npy"), str(tmp_path / "mean.npy"), dim=32)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
    got = read_features(tmp_path / "e.npy", 32, centre=np.load(tmp_path / "mean.npy"))
    expected = x - x.mean(axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the shared component dominated every cosine; centred, impostors are near 0 again
    plain = read_features(tmp_path / "e.npy", 32)
    assert np.median(plain[:50] @ plain[-50:].T) > 0.8
    assert abs(np.median(got[:50] @ got[-50:].T)) < 0.2


def test_ids_are_carried_into_the_clusters_table(tmp_path):
    x, _ = blobs()
    np.save(tmp_path / "e.npy", x)
    ids = [f"img/{i:04d}.jpg" for i in range(x.shape[0])]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    write_knn(tmp_path / "k.npz", brute_force_knn(x / np.linalg.norm(x, axis=1)[:, None], 10))
    pred = tasks.cluster(
        str(tmp_path / "e.npy"), None, str(tmp_path / "k.npz"), None,
        str(tmp_path / "p.labels"), str(tmp_path / "run.json"),
        method="cdp", method_cfg=CDP, backends=BACKENDS, dim=32, seed=0, threads=1,
        device="cpu", ids=str(tmp_path / "ids.txt"), out_clusters=str(tmp_path / "c.tsv"),
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert list(table.columns) == ["id", "cluster"]
    assert table["id"].tolist() == ids and (table["cluster"].to_numpy() == pred).all()
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["summary"]["n_clusters"] == np.unique(pred).size == 30
    row = tasks.evaluate(
        None, str(tmp_path / "p.labels"), str(tmp_path / "run.json"), str(tmp_path / "m.tsv"),
        dataset="mine", split="all", method="cdp",
    )  # fmt: skip
    assert row["n_pred_clusters"] == 30 and "pairwise_f" not in row
    assert row["largest_cluster"] == 10 and row["n_singletons"] == 0


# ------------------------------------------------------------------------------- bad input


def _npy(tmp_path, x):
    np.save(tmp_path / "e.npy", x)
    return tmp_path / "e.npy"


def test_nan_and_inf_rows_name_the_first_rows(tmp_path):
    x, _ = blobs()
    x[[3, 17]] = np.nan
    x[40, 2] = np.inf
    path = _npy(tmp_path, x.astype(np.float16))
    with pytest.raises(InputError, match=r"e\.npy: 3 row\(s\) contain NaN or Inf.*\[3, 17, 40\]"):
        read_features(path, 32)
    with pytest.raises(InputError, match=r"e\.npy: row\(s\) with NaN or Inf.*\[3, 17, 40\]"):
        scan_features(path)


def test_all_zero_rows_have_no_direction(tmp_path):
    x, _ = blobs()
    x[[5, 9]] = 0
    path = _npy(tmp_path, x)
    with pytest.raises(InputError, match=r"e\.npy: .*zero.*no direction.*\[5, 9\]"):
        read_features(path, 32)
    with pytest.raises(InputError, match=r"e\.npy: all-zero row\(s\).*\[5, 9\]"):
        scan_features(path)


def test_wrong_dim_empty_and_truncated_files(tmp_path):
    x, _ = blobs()
    path = _npy(tmp_path, x)
    with pytest.raises(
        InputError, match=r"e\.npy: features of dim 32, but the configured dim is 64"
    ):
        inspect_features(path, 64)
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.npy: feature file is empty"):
        inspect_features(tmp_path / "empty.npy")
    cut = tmp_path / "cut.npy"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=r"cut\.npy: truncated: its header says 300 rows"):
        inspect_features(cut)
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(InputError, match=r"junk\.npy: not a readable \.npy"):
        inspect_features(tmp_path / "junk.npy")
    np.save(tmp_path / "ints.npy", np.zeros((4, 3), dtype=np.int32))
    with pytest.raises(InputError, match=r"ints\.npy: .*float16, float32 or float64, got int32"):
        inspect_features(tmp_path / "ints.npy")


def test_bin_whose_size_does_not_fit_dim_names_the_dims_that_would(tmp_path):
    write_features(tmp_path / "e.bin", np.ones((300, 512), dtype=np.float32))
    with pytest.raises(
        InputError,
        match=r"e\.bin: .*dim-1000 .*dims that fit: .*256 \(N=600\), 384 \(N=400\), 512 \(N=300\)",
    ):
        inspect_features(tmp_path / "e.bin", 1000)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 1026)
    with pytest.raises(InputError, match=r"odd\.bin: .*not a whole number of float32 values"):
        inspect_features(tmp_path / "odd.bin", 256)


def test_ids_of_wrong_length_empty_or_duplicate(tmp_path):
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=r"ids\.txt: 3 ids, but e\.npy has 4 rows"):
        read_ids(tmp_path / "ids.txt", 4, "e.npy")
    (tmp_path / "dup.txt").write_text("a\nb\na\nc\nb\n")
    with pytest.raises(
        InputError, match=r"dup\.txt: 4 lines hold duplicate ids: 'a' \(line 1\), 'b' \(line 2\)"
    ):
        read_ids(tmp_path / "dup.txt", 5, "e.npy")
    (tmp_path / "gap.txt").write_text("a\n\nc\n")
    with pytest.raises(InputError, match=r"gap\.txt: 1 empty id\(s\) \(first lines: \[2\]\)"):
        read_ids(tmp_path / "gap.txt", 3, "e.npy")


def _with_unlabelled(**dataset):
    """The default config plus an unlabelled dataset `mine` (CDP unless ``methods``)."""
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["mine"] = {"source": "unlabelled", "methods": ["cdp"], **dataset}
    return config


def test_check_inputs_before_any_job_fills_dim_and_size(tmp_path):
    x, _ = blobs()
    path = _npy(tmp_path, x.astype(np.float16))
    config = validate_config(_with_unlabelled(features=str(path)))
    assert config["datasets"]["mine"]["test_splits"] == ["all"]
    check_inputs(config)
    assert config["datasets"]["mine"]["dim"] == 32
    assert config["datasets"]["mine"]["images"] == {"all": 300}
    (tmp_path / "ids.txt").write_text("x\n" * 300)
    bad = validate_config(_with_unlabelled(features=str(path), ids=str(tmp_path / "ids.txt")))
    with pytest.raises(InputError, match=r"datasets\.mine: .*ids\.txt: 300 lines hold duplicate"):
        check_inputs(bad)


def test_unlabelled_config_errors(tmp_path):
    path = str(_npy(tmp_path, blobs()[0]))
    config = _with_unlabelled(
        features=path,
        test_splits=["part1"],
        methods=["kmeans", "gcnv", "cdp_vote"],
        sweeps=[{"method": "cdp", "grid": {"th": [0.5]}}],
    )
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "datasets.mine.test_splits: an unlabelled dataset is one split 'all'" in msg
    del config["datasets"]["mine"]["test_splits"]
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "'kmeans' uses the true number of identities" in msg
    assert "'gcnv' is trained, and dataset 'mine' is unlabelled: train it elsewhere" in msg
    assert "'cdp_vote' needs a committee of feature sets" in msg
    assert "datasets.mine.sweeps: sweeps are scored against labels" in msg
    config["datasets"]["mine"].update(train_on="ytf", methods=["gcnv"], sweeps=[])
    with pytest.raises(
        ConfigError, match=r"datasets\.mine\.train_on: dataset 'ytf' has no labelled train split"
    ):
        validate_config(config)


def test_train_on_and_model_file_resolve(tmp_path):
    path = str(_npy(tmp_path, blobs()[0]))
    config = _with_unlabelled(features=path, train_on="synth", methods=["gcnv", "gcnve"])
    config["methods"]["gcnve"]["per_dataset"]["mine"] = {"model": "elsewhere/gcne.pt"}
    validate_config(config)
    assert method_config(config, "gcnv", "mine")["train_on"] == "synth"
    gcne = method_config(config, "gcnve", "mine")
    assert gcne["model"] == "elsewhere/gcne.pt" and gcne["train_on"] is None
    with pytest.raises(
        InputError,
        match=r"gcnve\.per_dataset\.mine\.model: elsewhere/gcne\.pt: model file not found",
    ):
        check_inputs(config)


# ---------------------------------------------------------------------- thresholds, summary


def test_threshold_warning_when_every_similarity_exceeds_it():
    x, _ = blobs(offset=3.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn = brute_force_knn(x, 10)
    warnings = threshold_warnings(knn, {"th": 0.7}, {"th": "similarity"}, method="cdp")
    assert len(warnings) == 1
    assert warnings[0].startswith("cdp: th 0.7 keeps 100.0% of the kNN edges (k=10;")
    assert "percentiles" in warnings[0] and "normalise: centre" in warnings[0]
    # and one that cuts everything; distances map to cosines
    assert (
        "cuts 100.0%" in threshold_warnings(knn, {"th": 0.999}, {"th": "similarity"}, method="m")[0]
    )
    assert (
        "keeps" in threshold_warnings(knn, {"eps": 0.9}, {"eps": "cosine_distance"}, method="m")[0]
    )
    # ArcFace-like geometry: the published threshold splits the edges, no warning
    y, _ = blobs()
    assert (
        threshold_warnings(brute_force_knn(y, 30), {"th": 0.7}, {"th": "similarity"}, method="cdp")
        == []
    )
    assert similarity_of(0.72, "euclidean_distance") == pytest.approx(0.7408)


def test_cluster_summary():
    s = cluster_summary(np.array([0, 0, 0, 1, 1, 2, -1]))
    assert s["n_clusters"] == 4 and s["n_singletons"] == 2 and s["largest_cluster"] == 3
    assert s["singleton_share"] == pytest.approx(2 / 7) and s["size_p50"] == 1.5


# -------------------------------------------------------------------------------- models


def test_model_of_another_dimension_is_refused(tmp_path):
    x, labels = blobs()
    write_features(tmp_path / "f.bin", x)
    write_labels(tmp_path / "l.meta", labels)
    write_knn(tmp_path / "k.npz", brute_force_knn(x, 10))
    gcnv = {
        "family": "gcnv", "k": 10, "knn_backend": "flat",
        "params": {"tau_0": 0.5, "tau": 0.8}, "train": {"epochs": 2, "hidden": 16},
    }  # fmt: skip
    kw = dict(method="gcnv", method_cfg=gcnv, backends=BACKENDS, seed=0, threads=1, device="cpu")
    tasks.train(
        str(tmp_path / "f.bin"), str(tmp_path / "l.meta"), str(tmp_path / "k.npz"),
        str(tmp_path / "m.pt"), dim=32, dataset="synth", split="part0", **kw,
    )  # fmt: skip
    model = tasks.load_model(str(tmp_path / "m.pt"))
    assert model["dim"] == 32 and json.loads(model["applied_with"])["dataset"] == "synth"
    y = np.tile(x, (1, 2))
    np.save(tmp_path / "wide.npy", y)
    write_knn(tmp_path / "kw.npz", brute_force_knn(read_features(tmp_path / "wide.npy", 64), 10))
    with pytest.raises(InputError, match=r"m\.pt: a model trained on features of dim 32, .*dim 64"):
        tasks.cluster(
            str(tmp_path / "wide.npy"), None, str(tmp_path / "kw.npz"), str(tmp_path / "m.pt"),
            str(tmp_path / "p.labels"), str(tmp_path / "run.json"), dim=64, **kw,
        )  # fmt: skip
    assert not (tmp_path / "p.labels").exists()
    with pytest.raises(InputError, match=r"m\.pt: a model trained with k=10, the method has k=5"):
        tasks._check_model(model, {**gcnv, "k": 5}, str(tmp_path / "m.pt"), 32)


# ---------------------------------------------------------------------------- calibration


def test_calibration_picks_the_only_threshold_that_works(tmp_path):
    """Identities at cosine ~0.9 within and ~0.5 to the nearest other identity: th 0.3
    chains identities, th 0.97 splits each into singletons, only 0.75 recovers them."""
    rng = np.random.default_rng(3)
    dim, n_ids, per_id = 64, 40, 8
    base = rng.standard_normal(dim)
    centres = 0.7 * base / np.linalg.norm(base) + 0.7 * rng.standard_normal((n_ids, dim)) / np.sqrt(
        dim
    )
    labels = np.repeat(np.arange(n_ids), per_id)
    x = centres[labels] + 0.3 * rng.standard_normal((labels.size, dim)) / np.sqrt(dim)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    write_features(tmp_path / "f.bin", x)
    write_labels(tmp_path / "l.meta", labels)
    write_knn(tmp_path / "k.npz", brute_force_knn(x, 10))
    points = [{"th": 0.3}, {"th": 0.75}, {"th": 0.97}]
    variants = [f"cdp/th~{p['th']}" for p in points]
    cells = []
    for point, variant in zip(points, variants, strict=True):
        cfg = {**CDP, "params": {**CDP["params"], **point, "max_sz": 1000}}
        stem = str(tmp_path / variant.replace("/", "_"))
        tasks.cluster_cell(
            str(tmp_path / "f.bin"), str(tmp_path / "l.meta"), str(tmp_path / "k.npz"), None,
            f"{stem}.labels", f"{stem}.json", f"{stem}.tsv",
            dataset="synth", split="part0", method=variant, method_cfg=cfg,
            backends=BACKENDS, dim=dim, seed=0, threads=1, device="cpu",
        )  # fmt: skip
        cells.append(f"{stem}.tsv")
    out = tasks.calibrate(
        cells, str(tmp_path / "cal.json"), method="cdp", on="synth/part0",
        metric="pairwise_f", points=points, variants=variants,
    )  # fmt: skip
    scores = [s["pairwise_f"] for s in out["scores"]]
    assert out["chosen"] == {"th": 0.75}, scores
    assert scores[1] > 0.95 and max(scores[0], scores[2]) < 0.5
    # the calibrated cluster job runs with the chosen value and records where it came from
    tasks.cluster(
        str(tmp_path / "f.bin"), None, str(tmp_path / "k.npz"), None,
        str(tmp_path / "c.labels"), str(tmp_path / "c.json"),
        method="cdp", method_cfg=CDP, backends=BACKENDS, dim=dim, seed=0, threads=1,
        device="cpu", calibration=str(tmp_path / "cal.json"),
    )  # fmt: skip
    run = json.loads((tmp_path / "c.json").read_text())
    assert run["params"]["th"] == 0.75 and run["calibration"]["on"] == "synth/part0"


def test_calibration_config_never_on_an_evaluated_split():
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["synth"]["calibrate"] = [
        {"method": "cdp", "grid": {"th": [0.6, 0.7]}, "on": "synth/part1"},
        {"method": "infomap", "grid": {"min_sim": [0.5]}, "on": "ytf/test"},
        {"method": "nosuch", "grid": {"th": [0.5]}},
    ]
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "calibrate[0].on: synth/part1 is a split the calibrated cells are evaluated on" in msg
    assert "calibrate[2].method: 'nosuch' is not one of datasets.synth.methods" in msg
    config["datasets"]["synth"]["calibrate"] = [{"method": "cdp", "grid": {"th": [0.6, 0.7]}}]
    validate_config(config)
    assert config["methods"]["cdp/th~0.6"]["per_dataset"]["synth"]["params"]["th"] == 0.6
