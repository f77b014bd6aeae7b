import numpy as np
import pytest
import scipy.sparse as sp

from facecluster.graph import (
    components,
    finalize_labels,
    knn_pairs,
    knn_to_csr,
    propagate,
    symmetric_normalized_adjacency,
    unique_pairs,
)
from facecluster.io import Knn
from facecluster.knn import brute_force_knn


def _knn(rng, n=60, d=8, k=6):
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return brute_force_knn(x, k)


def test_knn_to_csr_drops_self_and_thresholds(rng):
    knn = _knn(rng)
    a = knn_to_csr(knn, th_sim=0.2)
    assert a.shape == (knn.n, knn.n)
    assert np.all(a.diagonal() == 0)
    assert a.data.min() >= 0.2
    dense = a.toarray()
    for i in range(knn.n):
        for j, s in zip(knn.nbrs[i], knn.sims[i], strict=True):
            if j != i and s >= 0.2:
                assert dense[i, j] == pytest.approx(s)


def test_symmetric_adjacency_rows_sum_to_one(rng):
    knn = _knn(rng)
    a = symmetric_normalized_adjacency(knn)
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    assert np.all(a.diagonal() > 0)
    # symmetric support: (i, j) stored iff (j, i) stored
    support = (a != 0).astype(int)
    assert (support != support.T).nnz == 0


def test_unique_pairs_pools():
    pairs = np.array([[0, 1], [1, 0], [2, 3], [0, 1]])
    scores = np.array([0.5, 0.7, 0.9, 0.6], dtype=np.float32)
    p, s = unique_pairs(pairs, scores, pool="first")
    np.testing.assert_array_equal(p, [[0, 1], [2, 3]])
    np.testing.assert_allclose(s, [0.5, 0.9])
    _, s = unique_pairs(pairs, scores, pool="avg")
    np.testing.assert_allclose(s, [0.6, 0.9])
    _, s = unique_pairs(pairs, scores, pool="max")
    np.testing.assert_allclose(s, [0.7, 0.9])
    with pytest.raises(ValueError):
        unique_pairs(pairs, scores, pool="median")


def test_knn_pairs_strict_threshold():
    knn = Knn(
        np.array([[0, 1, -1], [1, 0, 2], [2, 1, 0]], dtype=np.int32),
        np.array([[1.0, 0.7, -1.0], [1.0, 0.7, 0.8], [1.0, 0.8, 0.1]], dtype=np.float32),
    )
    pairs, scores = knn_pairs(knn, 0.7)
    np.testing.assert_array_equal(pairs, [[1, 2], [2, 1]])
    pairs, _ = knn_pairs(knn, 0.7, strict=False)
    assert len(pairs) == 4


def _reference_propagate(n, pairs, scores, max_sz, step, max_iter=100):
    """Straightforward re-statement of CDP's propagation with a BFS, for comparison."""
    adj = {}
    for (i, j), s in zip(pairs.tolist(), scores.tolist(), strict=True):
        adj.setdefault(i, {})[j] = s
        adj.setdefault(j, {})[i] = s
    labels = -np.ones(n, dtype=int)
    remain = set(adj)
    th = min(scores)
    nxt = 0
    for it in range(max_iter + 1):
        if it:
            th = th + (1 - th) * step
        seen = set()
        new_remain = set()
        for start in sorted(remain):
            if start in seen:
                continue
            comp, stack = [], [start]
            seen.add(start)
            while stack:
                u = stack.pop()
                comp.append(u)
                for v, s in adj[u].items():
                    if v in remain and v not in seen and (it == 0 or s >= th):
                        seen.add(v)
                        stack.append(v)
            if len(comp) <= max_sz:
                labels[comp] = nxt
                nxt += 1
            else:
                new_remain |= set(comp)
        remain = new_remain
        if not remain:
            return labels
    labels[list(remain)] = nxt
    return labels


def _same_partition(a, b):
    # equal up to renaming of cluster ids
    pa = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if pa.setdefault(x, y) != y:
            return False
    return len(set(pa.values())) == len(pa)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_sz", [3, 10, 1000])
def test_propagate_matches_bfs_reference(seed, max_sz):
    rng = np.random.default_rng(seed)
    n = 80
    pairs = rng.integers(0, n, size=(150, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs, scores = unique_pairs(pairs, rng.random(len(pairs)).astype(np.float32))
    got = propagate(n, pairs, scores, max_sz=max_sz, step=0.1)
    want = _reference_propagate(n, pairs, scores, max_sz, 0.1)
    assert np.array_equal(got < 0, want < 0)
    assert _same_partition(got[got >= 0], want[want >= 0])
    sizes = np.bincount(got[got >= 0])
    assert sizes.max() <= max_sz or max_sz < 3  # max_iter is not reached here


def test_propagate_forced_merge_after_max_iter():
    pairs = np.array([[0, 1], [1, 2], [2, 3]])
    scores = np.ones(3, dtype=np.float32)  # cannot be split by raising the threshold
    labels = propagate(5, pairs, scores, max_sz=2, step=0.5, max_iter=3)
    assert labels[4] == -1
    assert len(set(labels[:4])) == 1


def test_components():
    labels = components(5, np.array([0, 3]), np.array([1, 4]))
    assert labels[0] == labels[1] and labels[3] == labels[4]
    assert len(set(labels)) == 3


def test_finalize_labels():
    out = finalize_labels(np.array([5, -1, 5, 2, -1]))
    np.testing.assert_array_equal(out, [0, 1, 0, 2, 3])
    np.testing.assert_array_equal(finalize_labels(np.array([-1, -1])), [0, 1])


def test_knn_to_csr_handles_missing_neighbours():
    knn = Knn(np.array([[0, -1], [1, 0]], dtype=np.int32), np.array([[1, -1], [1, 0.5]], "f4"))
    a = knn_to_csr(knn, th_sim=-2)
    assert isinstance(a, sp.csr_matrix) and a.nnz == 1
