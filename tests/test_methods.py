import numpy as np
import pytest

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import Knn
from facecluster.knn import build_knn
from facecluster.methods import FAMILIES, Context, cdp, gcnv, get_family

CTX = Context(seed=7, threads=1, device="cpu")


@pytest.fixture(scope="module")
def graph(small_synth):
    feats, labels = small_synth
    return feats, labels, build_knn(feats, 20, threads=1)


def test_registry():
    assert set(FAMILIES) >= {"gcnv", "cdp"}
    assert get_family("cdp") is cdp and get_family("gcnv") is gcnv
    assert gcnv.SPEC.supervised and not cdp.SPEC.supervised
    assert gcnv.SPEC.gpu and gcnv.SPEC.conda_env == "torch" and cdp.SPEC.conda_env == "eval"


def test_cdp_clusters_synthetic(graph):
    feats, labels, knn = graph
    pred = cdp.cluster(feats, knn, th=0.75, max_sz=600, step=0.05)
    assert pred.shape == labels.shape and pred.dtype == np.int64
    m = metrics.evaluate(labels, finalize_labels(pred))
    assert m["pairwise_precision"] > 0.95 and m["pairwise_recall"] > 0.95
    # a pair above th always ends up in one cluster when clusters are uncapped
    i, j = 0, knn.nbrs[0, 1]
    if knn.sims[0, 1] > 0.75:
        assert pred[i] == pred[j] >= 0


def test_cdp_max_sz_caps_clusters(graph):
    feats, _, knn = graph
    pred = cdp.cluster(feats, knn, th=0.3, max_sz=15, step=0.05)
    assert np.bincount(pred[pred >= 0]).max() <= 15


def test_s_nbr_confidence():
    knn = Knn(
        np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]], dtype=np.int32),
        np.array([[1.0, 0.5, 0.2], [1.0, 0.5, 0.4], [1.0, 0.4, 0.2]], dtype=np.float32),
    )
    conf = gcnv.s_nbr_confidence(knn, np.array([0, 0, 1]))
    raw = np.array([1 + 0.5 - 0.2, 1 + 0.5 - 0.4, 1 - 0.4 - 0.2])
    np.testing.assert_allclose(conf, raw / np.abs(raw).max(), rtol=1e-6)


def test_confidence_to_peaks_matches_loop(rng):
    x = rng.standard_normal((200, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn = build_knn(x, 10, threads=1)
    conf = rng.random(200).astype(np.float32)
    peaks, sims = gcnv.confidence_to_peaks(knn, conf, chunk=37)
    for i in range(200):
        want = -1
        for j, s in zip(knn.nbrs[i], knn.sims[i], strict=True):
            if j != i and conf[j] > conf[i]:
                want = j
                assert sims[i] == s
                break
        assert peaks[i] == want
    labels = gcnv.peaks_to_labels(peaks, sims, tau=0.5)
    linked = (peaks >= 0) & (sims > 0.5)
    assert np.all(labels[linked] == labels[peaks[linked]])


@pytest.fixture(scope="module")
def gcnv_model(graph):
    feats, labels, knn = graph
    return gcnv.train(feats, labels, knn, context=CTX, hidden=32, epochs=400, lr=0.1)


def test_gcnv_train_learns_training_confidence(graph, gcnv_model):
    feats, labels, knn = graph
    assert np.isfinite(gcnv_model["loss"])
    conf, hidden = gcnv.predict(feats, knn, gcnv_model, context=CTX)
    target = gcnv.s_nbr_confidence(knn, labels)
    assert hidden.shape == (feats.shape[0], 32)
    # better than the best constant prediction, and positively correlated
    mse = float(np.mean((conf - target) ** 2))
    assert mse < 0.8 * float(np.var(target))
    assert np.corrcoef(conf, target)[0, 1] > 0.5


def test_gcnv_cluster_and_determinism(graph, gcnv_model):
    feats, labels, knn = graph
    a, scores = gcnv.cluster(feats, knn, context=CTX, model=gcnv_model, tau_0=0.5, tau=0.8)
    b = gcnv.cluster(feats, knn, context=CTX, model=gcnv_model, tau_0=0.5, tau=0.8).labels
    assert scores["confidence"].shape == labels.shape
    assert a.shape == labels.shape and a.min() >= 0
    np.testing.assert_array_equal(a, b)
    again = gcnv.train(feats, labels, knn, context=CTX, hidden=32, epochs=400, lr=0.1)
    for key, value in gcnv_model["state_dict"].items():
        assert np.array_equal(value.numpy(), again["state_dict"][key].numpy()), key


def test_gcnv_rejects_wrong_dimension(graph, gcnv_model):
    feats, _, knn = graph
    with pytest.raises(ValueError, match="expects 32-d"):
        gcnv.predict(feats[:, :16], knn, gcnv_model, context=CTX)
