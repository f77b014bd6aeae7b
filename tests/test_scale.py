"""Bounded memory at MS1M's size (issue 14): chunked GCN-V inference equals whole-graph
inference, the kNN of computed rows equals that of the array, the adjacency's rows equal the
whole matrix', half-float index storage, and a dataset-wide kNN backend."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster import metrics
from facecluster.graph import adjacency_rows, symmetric_normalized_adjacency
from facecluster.io import l2_normalize
from facecluster.knn import ComputedRows, build_knn, exact_neighbours, recall_at_k
from facecluster.methods import Context, gcnv

CTX = Context(seed=7, threads=1, device="cpu", knn_backend={"index": "flat"})


@pytest.fixture(scope="module")
def graph(small_synth):
    feats, labels = small_synth
    return feats, labels, build_knn(feats, 20, threads=1)


@pytest.fixture(scope="module")
def model(graph):
    feats, labels, knn = graph
    return gcnv.train(feats, labels, knn, context=CTX, hidden=32, epochs=200, lr=0.1)


@pytest.mark.parametrize("th_sim", [0.0, 0.6])
def test_adjacency_rows_are_the_whole_matrix_rows(graph, th_sim):
    _, _, knn = graph
    knn.nbrs[3, 10:], knn.sims[3, 10:] = -1, -1.0  # a padded row
    whole = symmetric_normalized_adjacency(knn, th_sim)
    rng = np.random.default_rng(0)
    n = knn.n
    for rows in (np.arange(n), np.arange(100, 357), np.sort(rng.choice(n, 50, replace=False))):
        got = adjacency_rows(knn, rows, th_sim, scan_rows=97)
        ref = whole[rows]
        ref.sort_indices()
        assert got.shape == (rows.size, n)
        np.testing.assert_array_equal(got.indptr, ref.indptr)
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_array_equal(got.data, ref.data)  # the same bits


def _whole_graph_predict(feats, knn, model, batch_size):
    """GCN-V inference as it was before chunking: A·X of the whole normalised adjacency,
    then the dense layers in batches."""
    import torch

    from facecluster.nn import gcnv as impl

    net = impl.GCNV(model["in_dim"], model["hidden"])
    net.load_state_dict(model["state_dict"])
    net.eval()
    x, ax = impl._aggregated(feats, knn, model["th_sim"], torch.device("cpu"))
    conf, hidden = [], []
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            c, h = net(x[start : start + batch_size], ax[start : start + batch_size])
            conf.append(c.numpy())
            hidden.append(h.numpy())
    return np.concatenate(conf), np.concatenate(hidden)


@pytest.mark.parametrize("chunk_rows", [64, 200, 10**6])
def test_chunked_inference_equals_whole_graph_inference(graph, model, chunk_rows):
    feats, _, knn = graph
    conf, hidden = _whole_graph_predict(feats, knn, model, batch_size=64)
    got_conf, got_hidden = gcnv.predict(
        feats, knn, model, context=CTX, batch_size=64, chunk_rows=chunk_rows
    )
    np.testing.assert_array_equal(got_conf, conf)
    np.testing.assert_array_equal(got_hidden, hidden)
    only_conf, none = gcnv.predict(feats, knn, model, context=CTX, hidden=False)
    assert none is None
    np.testing.assert_array_equal(only_conf, _whole_graph_predict(feats, knn, model, 65536)[0])


def test_computed_gcn_features_are_the_normalised_hidden_features(graph, model):
    feats, _, knn = graph
    _, hidden = gcnv.predict(feats, knn, model, context=CTX)
    rows = gcnv.gcn_features(feats, knn, model, context=CTX)
    assert rows.shape == hidden.shape
    got = rows.take(np.arange(rows.n))
    np.testing.assert_allclose(got, l2_normalize(hidden), rtol=0, atol=1e-6)
    # any rows: the same up to the GEMM's rounding with another number of rows
    some = np.array([5, 90, 400])
    np.testing.assert_allclose(rows.take(some), got[some], rtol=0, atol=1e-6)


def test_gcnv_cluster_equals_the_array_path(graph, model):
    """Labels from the chunked path equal those of the whole hidden matrix in memory."""
    feats, _, knn = graph
    got = gcnv.cluster(feats, knn, context=CTX, model=model, tau_0=0.5, tau=0.8).labels
    conf, hidden = _whole_graph_predict(feats, knn, model, batch_size=65536)
    hidden /= np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
    gknn = build_knn(hidden, knn.k, threads=1, seed=CTX.seed)
    peaks, sims = gcnv.confidence_to_peaks(gknn, conf)
    np.testing.assert_array_equal(got, gcnv.peaks_to_labels(peaks, sims, 0.8))


def test_float16_gcn_features_move_few_labels(graph, model):
    feats, labels, knn = graph
    full = gcnv.cluster(feats, knn, context=CTX, model=model, tau_0=0.5, tau=0.8).labels
    half = gcnv.cluster(
        feats, knn, context=CTX, model=model, tau_0=0.5, tau=0.8, gcn_feat_storage="float16"
    ).labels
    # the two partitions nearly agree, and score the same against the truth
    assert metrics.pairwise(full, half)[2] > 0.99
    assert metrics.pairwise(labels, half)[2] == pytest.approx(
        metrics.pairwise(labels, full)[2], abs=0.01
    )


def _data(n=2000, d=24, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return l2_normalize(x)


@pytest.mark.parametrize(
    ("index", "params"),
    [
        ("flat", {}),
        ("ivf", {"nlist": 16, "nprobe": 2}),
        ("ivf", {"nlist": 16, "recall_target": 0.8}),
    ],
)
def test_knn_of_computed_rows_equals_knn_of_the_array(index, params):
    x = _data()
    calls = []

    def compute(rows):
        calls.append(rows.size)
        return x[rows]

    rows = ComputedRows(x.shape[0], x.shape[1], compute, chunk_rows=300)
    ra, rb = {}, {}
    a = build_knn(x, 10, index=index, params=params, batch_size=128, report=ra, seed=1)
    b = build_knn(rows, 10, index=index, params=params, batch_size=128, report=rb, seed=1)
    np.testing.assert_array_equal(a.nbrs, b.nbrs)
    np.testing.assert_array_equal(a.sims, b.sims)
    # the same nprobe and sample; recall against exact neighbours found another way (faiss'
    # search, or numpy products while the rows are added), equal up to near-ties
    assert ra.pop("recall_at_k") == pytest.approx(rb.pop("recall_at_k"), abs=2e-3)
    assert ra == rb
    # the rows are walked twice (add, search) in chunks of 256 (300 rounded down to
    # batches); IVF also computes its recall sample (1000) and training sample (64 per
    # list), at most 300 rows a call
    samples = 1000 + 64 * 16 if index == "ivf" else 0
    assert max(calls) <= 300 and sum(calls) == 2 * x.shape[0] + samples


def test_knn_of_computed_rows_query_block():
    x = _data()
    rows = ComputedRows(x.shape[0], x.shape[1], lambda r: x[r], chunk_rows=256)
    whole = build_knn(x, 10, batch_size=128)
    block = build_knn(rows, 10, batch_size=128, query_rows=(512, 900))
    np.testing.assert_array_equal(block.nbrs, whole.nbrs[512:900])


@pytest.mark.parametrize("index", ["flat", "ivf", "hnsw"])
def test_float16_storage(index):
    """Half-float storage: nearly the float32 graph, its recall measured and reported."""
    x = _data()
    params = {"nlist": 8, "nprobe": 8} if index == "ivf" else {}
    report = {}
    half = build_knn(x, 10, index=index, params=params, storage="float16", report=report)
    exact = exact_neighbours(x, np.arange(x.shape[0]), 10)
    assert recall_at_k(half.nbrs, exact) > 0.97
    assert report["storage"] == "float16" and report["exact"] is False
    assert 0.97 < report["recall_at_k"] <= 1.0
    full = build_knn(x, 10, index=index, params=params)
    assert np.abs(half.sims - full.sims).max() < 5e-3  # fp16 rounding of unit vectors
    with pytest.raises(ValueError, match="storage"):
        build_knn(x, 10, index=index, params=params, storage="int8")


def test_dataset_knn_backend(tmp_path):
    from facecluster.config import ConfigError, method_config, validate_config

    config = {
        "knn_backends": {"flat": {"index": "flat"}, "ivf": {"index": "ivf"}},
        "datasets": {
            "big": {"source": "synthetic", "methods": ["cdp", "gcnv"], "knn_backend": "ivf"}
        },
        "methods": {
            "cdp": {"family": "cdp", "k": 10, "knn_backend": "flat"},
            "gcnv": {
                "family": "gcnv",
                "k": 10,
                "knn_backend": "flat",
                "per_dataset": {"big": {"knn_backend": "flat"}},
            },
        },
    }
    validate_config(config)
    assert method_config(config, "cdp", "big")["knn_backend"] == "ivf"
    assert method_config(config, "gcnv", "big")["knn_backend"] == "flat"  # its entry wins
    config["datasets"]["big"]["knn_backend"] = "nope"
    with pytest.raises(ConfigError, match="datasets.big.knn_backend: 'nope'"):
        validate_config(config)


@pytest.mark.parametrize("compressed", [False, True])
def test_read_knn_keeps_the_first_k_columns_block_by_block(tmp_path, monkeypatch, compressed):
    from facecluster import io

    monkeypatch.setattr(io, "KNN_READ_ROWS", 7)  # many blocks, the last one short
    graph = build_knn(_data(100), 12)
    path = tmp_path / "g.npz"
    if compressed:  # learn-to-cluster-style int64 indices, deflated
        np.savez_compressed(path, nbrs=graph.nbrs.astype(np.int64), sims=graph.sims)
    else:
        io.write_knn(path, graph)
    part = io.read_knn(path, 100, k=5)
    want = graph.truncate(5)
    assert part.nbrs.dtype == np.int32 and part.nbrs.flags.c_contiguous
    np.testing.assert_array_equal(part.nbrs, want.nbrs)
    np.testing.assert_array_equal(part.sims, want.sims)
    whole = io.read_knn(path, 100)
    np.testing.assert_array_equal(whole.nbrs, graph.nbrs)
    assert io.read_knn(path, 100, k=50).k == 12  # fewer columns than asked: all of them
