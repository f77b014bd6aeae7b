import numpy as np
import pytest

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, knn_dbscan


@pytest.fixture
def groups(rng):
    """Two tight groups of 10 and an outlier, interleaved; labels 0, 1, 2 (outlier)."""
    centres = rng.standard_normal((2, 16))
    labels = np.repeat([0, 1], 10)
    x = centres[labels] + 0.05 * rng.standard_normal((20, 16))
    x = np.vstack([x, rng.standard_normal((1, 16))])
    labels = np.append(labels, 2)
    perm = rng.permutation(21)
    x = x[perm] / np.linalg.norm(x[perm], axis=1, keepdims=True)
    return x.astype(np.float32), labels[perm]


def test_groups_and_outlier(groups):
    x, labels = groups
    knn = brute_force_knn(x, 8)
    ctx = Context(threads=1)
    pred = knn_dbscan.cluster(x, knn, context=ctx, eps=0.25, min_samples=1)
    assert pred.dtype == np.int64 and pred.shape == labels.shape
    out = labels == 2
    # min_samples 1: every item is core, the outlier is a cluster of its own
    assert np.array_equal(pred[:, None] == pred[None, :], labels[:, None] == labels[None, :])
    # min_samples 3: the outlier (no neighbour within eps) is noise
    pred = knn_dbscan.cluster(x, knn, context=ctx, eps=0.25, min_samples=3)
    assert np.all(pred[out] == -1)
    assert np.unique(pred[labels == 0]).size == 1 and np.unique(pred[labels == 1]).size == 1
    assert pred[labels == 0][0] != pred[labels == 1][0] and np.all(pred[~out] >= 0)


def test_only_stored_entries_are_neighbours_and_self_counts():
    # a chain 0 - 1 - 2 at distance 0.1, but 1's list (k 2) holds 0 and not 2
    nbrs = np.array([[0, 1], [1, 0], [2, 1]], dtype=np.int32)
    sims = np.array([[1, 0.9], [1, 0.9], [1, 0.9]], dtype=np.float32)
    knn = Knn(nbrs, sims)
    # min_samples 2: each item has itself and one stored neighbour -> all core; the graph
    # is directed: expanding from 0 reaches 1, whose neighbourhood lacks 2, so 2 starts a
    # cluster of its own (1, its neighbour, is taken already)
    assert knn_dbscan.cluster(None, knn, eps=0.15, min_samples=2).tolist() == [0, 0, 1]
    nbrs_sym = np.array([[0, 1], [1, 2], [2, 1]], dtype=np.int32)
    assert knn_dbscan.cluster(None, Knn(nbrs_sym, sims), eps=0.15, min_samples=2).tolist() == [
        0,
        0,
        0,
    ]
    # min_samples 3: nobody has 3 -> all noise
    assert knn_dbscan.cluster(None, knn, eps=0.15, min_samples=3).tolist() == [-1, -1, -1]
    # the similarity threshold drops stored entries
    assert knn_dbscan.cluster(None, knn, th=0.95, eps=0.15, min_samples=2).tolist() == [-1] * 3


def test_distance_graph():
    nbrs = np.array([[0, 1, -1], [1, 0, 2], [2, 1, 0]], dtype=np.int32)
    sims = np.array([[1, 1.0000001, -1], [1, 0.5, -0.2], [1, 0.25, 0.1]], dtype=np.float32)
    g = knn_dbscan.distance_graph(Knn(nbrs, sims), th=0.0)
    assert g.shape == (3, 3) and g.diagonal().tolist() == [0, 0, 0]
    # 0 -> 1 is stored with distance clipped to 0; 1 -> 2 (sim < 0) is dropped
    assert g.nnz == 4 and g[0, 1] == 0
    np.testing.assert_allclose(g.toarray(), [[0, 0, 0], [0.5, 0, 0], [0.9, 0.75, 0]], atol=1e-7)
    # rows stay sorted by distance (kNN order), as scikit-learn's precomputed graphs want
    for i in range(3):
        row = g.data[g.indptr[i] : g.indptr[i + 1]]
        assert np.all(np.diff(row) >= 0)
    # entries beyond max_dist are dropped: they are never DBSCAN neighbours
    near = knn_dbscan.distance_graph(Knn(nbrs, sims), th=0.0, max_dist=0.8)
    np.testing.assert_allclose(near.toarray(), [[0, 0, 0], [0.5, 0, 0], [0, 0.75, 0]], atol=1e-7)


def test_bad_params(groups):
    x, _ = groups
    knn = brute_force_knn(x, 4)
    for kwargs, name in [
        ({"eps": 0.0}, "eps"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 1.5}, "min_samples"),
        ({"th": 2.0}, "th"),
    ]:
        with pytest.raises(ValueError, match=name):
            knn_dbscan.cluster(x, knn, **kwargs)


@pytest.mark.parametrize("eps, min_samples", [(0.25, 1), (0.4, 3), (0.9, 5)])
def test_same_labels_as_dbscan_on_the_whole_knn_graph(small_synth, eps, min_samples):
    """Dropping the entries beyond eps first does not change DBSCAN's result."""
    from sklearn.cluster import DBSCAN

    x, _ = small_synth
    knn = brute_force_knn(x, 20)
    whole = knn_dbscan.distance_graph(knn, 0.0)
    expect = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(whole)
    got = knn_dbscan.cluster(x, knn, eps=eps, min_samples=min_samples)
    np.testing.assert_array_equal(got, expect)
