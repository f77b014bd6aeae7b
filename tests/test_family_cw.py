import numpy as np
import pytest
from _problems import same_partition

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, cw


def _blobs(rng, sizes, d=16, noise=0.1):
    centres = rng.standard_normal((len(sizes), d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + noise * rng.standard_normal((labels.size, d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


@pytest.fixture
def groups(rng):
    """Two groups of 12 and an outlier, items interleaved (not sorted by group)."""
    x, labels = _blobs(rng, [12, 12, 1])
    perm = rng.permutation(labels.size)
    return x[perm], labels[perm]


def test_groups_and_outlier_index_aligned(groups):
    x, labels = groups
    knn = brute_force_knn(x, 10)
    pred = cw.cluster(x, knn, context=Context(seed=1), th=0.6, iters=20)
    assert pred.dtype == np.int64 and pred.shape == labels.shape
    assert same_partition(pred, labels)
    # labels are representative item indices, aligned with the items: an item's label is
    # an item of its own group
    assert np.array_equal(labels[pred], labels)
    outlier = np.flatnonzero(labels == 2)[0]
    assert pred[outlier] == outlier  # isolated: keeps its own label


def test_deterministic_under_seed(rng):
    x, _ = _blobs(rng, [30, 30, 30, 30], noise=0.8)
    knn = brute_force_knn(x, 15)
    a = cw.cluster(x, knn, context=Context(seed=5), th=0.3, iters=5)
    b = cw.cluster(x, knn, context=Context(seed=5), th=0.3, iters=5)
    assert np.array_equal(a, b)


def test_no_edges_keeps_own_labels(groups):
    x, _ = groups
    knn = brute_force_knn(x, 5)
    pred = cw.cluster(x, knn, context=Context(seed=0), th=1.0, iters=3)
    assert np.array_equal(pred, np.arange(x.shape[0]))


def test_symmetric_graph_keeps_max_and_zero_weights():
    knn = Knn(
        np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1]], dtype=np.int32),
        np.array([[1.0, 0.5, 0.0], [1.0, 0.75, -0.5], [1.0, 0.25, -0.5]], dtype=np.float32),
    )
    indptr, indices, w = cw.symmetric_graph(knn, 0.0)
    dense = np.full((3, 3), np.nan)
    for i in range(3):
        for p in range(indptr[i], indptr[i + 1]):
            dense[i, indices[p]] = w[p]
    want = np.array([[np.nan, 0.75, 0.25], [0.75, np.nan, np.nan], [0.25, np.nan, np.nan]])
    np.testing.assert_array_equal(dense, want)
    # a zero-similarity edge is an edge (th 0 keeps sim >= 0)
    knn0 = Knn(knn.nbrs, np.where(knn.sims == 0.25, 0.0, knn.sims).astype(np.float32))
    indptr, indices, w = cw.symmetric_graph(knn0, 0.0)
    assert indices[indptr[2] : indptr[3]].tolist() == [0] and w[indptr[2]] == 0.0


def _naive_whispers(indptr, indices, weights, orders):
    """Sequential Chinese Whispers, node by node, ties to the smallest label."""
    n = indptr.size - 1
    labels = list(range(n))
    for order in orders:
        for v in order:
            sums = {}
            for p in range(indptr[v], indptr[v + 1]):
                lab = labels[indices[p]]
                sums[lab] = sums.get(lab, 0.0) + weights[p]
            if sums:
                best = max(sums.values())
                labels[v] = min(lab for lab, s in sums.items() if s == best)
    return np.array(labels)


def _random_graph(rng, n, p):
    upper = np.triu(rng.random((n, n)) < p, 1)
    # dyadic weights: exact sums, so ties are frequent and exact in both implementations
    w = rng.integers(1, 5, size=(n, n)) / 4.0
    adj = upper | upper.T
    wsym = np.triu(w, 1)
    wsym = wsym + wsym.T
    indptr = np.concatenate(([0], np.cumsum(adj.sum(axis=1))))
    rows, cols = np.nonzero(adj)
    return indptr, cols.astype(np.int64), wsym[rows, cols]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_parallel_equals_sequential(seed):
    rng = np.random.default_rng(seed)
    n = 60
    indptr, indices, weights = _random_graph(rng, n, 0.12)
    orders = [rng.permutation(n) for _ in range(6)]
    # run round by round and compare after every round (early stopping must not matter)
    for r in range(1, len(orders) + 1):
        fast = cw.whispers(indptr, indices, weights, iter(orders[:r]))
        slow = _naive_whispers(indptr, indices, weights, orders[:r])
        assert np.array_equal(fast, slow), f"round {r}"


def test_levels_are_independent_sets(rng):
    n = 50
    indptr, indices, _ = _random_graph(rng, n, 0.2)
    rank = np.empty(n, dtype=np.int64)
    rank[rng.permutation(n)] = np.arange(n)
    layers = cw.levels(indptr, indices, rank)
    level = np.empty(n, dtype=np.int64)
    seen = np.concatenate(layers)
    assert np.array_equal(np.sort(seen), np.arange(n))
    for lv, nodes in enumerate(layers):
        level[nodes] = lv
    for v in range(n):
        nb = indices[indptr[v] : indptr[v + 1]]
        earlier = nb[rank[nb] < rank[v]]
        want = 1 + level[earlier].max() if earlier.size else 0
        assert level[v] == want


def test_bad_params(groups):
    x, _ = groups
    knn = brute_force_knn(x, 5)
    with pytest.raises(ValueError, match="th"):
        cw.cluster(x, knn, context=Context(), th=1.5)
    with pytest.raises(ValueError, match="iters"):
        cw.cluster(x, knn, context=Context(), iters=0)
    with pytest.raises(ValueError, match="order"):
        cw.whispers(np.zeros(3, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), [[0]])
