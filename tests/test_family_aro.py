import numpy as np
import pytest

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, aro


def _naive_links(nbrs, th):
    """The reference's per-row loop (varun-suresh/Clustering as used by learn-to-cluster),
    with lists as sets and -1 padding ignored: directed plausible links (i, j)."""
    lists = [[int(x) for x in row if x >= 0] for row in nbrs]
    sets = [set(lst) for lst in lists]
    links = set()
    for i, own in enumerate(lists):
        for idx, j in enumerate(own[1:]):
            o_i = idx + 1
            if j == i or i not in sets[j]:
                continue  # the reference: D = 9999 for a non-mutual pair
            o_j = lists[j].index(i) + 1
            d_ij = len(set(own[0:o_i]) - sets[j])
            d_ji = len(set(lists[j][0:o_j]) - sets[i])
            if float(d_ij + d_ji) / min(o_i, o_j) <= 1 - th:
                links.add((i, j))
    return links


def _random_lists(rng, n, k, p_self=0.9, p_pad=0.1):
    """Arbitrary kNN-like lists: distinct entries, self first in most rows, some padding."""
    nbrs = np.full((n, k), -1, dtype=np.int32)
    for i in range(n):
        length = k - rng.integers(0, 3) if rng.random() < p_pad else k
        others = rng.permutation(np.delete(np.arange(n), i))
        row = list(others[: length - 1])
        if rng.random() < p_self:
            row = [i] + row
        else:
            row = row + [others[length - 1]]
        nbrs[i, :length] = row
    sims = np.where(nbrs >= 0, np.linspace(1, 0, k, dtype=np.float32), -1.0)
    return Knn(nbrs, sims.astype(np.float32))


def _links(knn, th):
    src, dst = aro.plausible_links(knn, th)
    return set(zip(src.tolist(), dst.tolist(), strict=True))


@pytest.mark.parametrize("th", [0.0, 0.5, -2.0])
def test_matches_naive_on_features(rng, th):
    x = rng.standard_normal((150, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn = brute_force_knn(x, 12)
    assert _links(knn, th) == _naive_links(knn.nbrs, th)


@pytest.mark.parametrize("chunk", [1 << 22, 40])
def test_matches_naive_on_arbitrary_lists(rng, monkeypatch, chunk):
    # small chunks exercise the compressed (slot) position table and many chunks
    monkeypatch.setattr(aro, "CHUNK_ENTRIES", chunk)
    knn = _random_lists(rng, 40, 9)
    # random lists give few mutual pairs; a low threshold makes the count matter
    for th in (0.0, -1.0, -5.0):
        assert _links(knn, th) == _naive_links(knn.nbrs, th)


def test_groups_and_outlier(rng):
    d = 16
    centres = rng.standard_normal((2, d))
    labels = np.repeat([0, 1], 15)
    x = centres[labels] + 0.1 * rng.standard_normal((30, d))
    x = np.vstack([x, rng.standard_normal((1, d))])
    labels = np.append(labels, 2)
    perm = rng.permutation(31)
    x, labels = x[perm], labels[perm]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    pred = aro.cluster(x, brute_force_knn(x, 10), context=Context())
    assert pred.dtype == np.int64 and pred.shape == (31,)
    a, b = labels[:, None] == labels[None, :], pred[:, None] == pred[None, :]
    assert np.array_equal(a, b)


def test_rank_order_distance_by_hand():
    # 0 and 1 list each other first, with the same next entry: D = 0 -> plausible.
    # 2's list holds 0 but 0's does not hold 2: not mutual, never plausible.
    knn = Knn(
        np.array([[0, 1, 3], [1, 0, 3], [2, 0, 1], [3, 2, 1]], dtype=np.int32),
        np.ones((4, 3), dtype=np.float32),
    )
    assert _links(knn, 1.0) == {(0, 1), (1, 0)}
    labels = aro.cluster(None, knn, th=1.0)
    assert labels[0] == labels[1] and len({labels[1], labels[2], labels[3]}) == 3
    # at th 0 (D <= 1), 1 <-> 3 (mutual at ranks 2): d = |{1, 0} \ L_3| + |{3, 2, 1} \ L_1|
    # = 1 + 1, min(O_i, O_j) = min(2, 3): D = 1
    assert _links(knn, 0.0) == {(0, 1), (1, 0), (1, 3), (3, 1)}


def test_rank_order_slices_are_asymmetric():
    # 1 is at rank 2 in 0's list, behind 5, which 1's list lacks; 0 is at rank 1 in 1's:
    # D(0 -> 1) = (|{0, 5} \ L_1| + |{1, 0} \ L_0|) / min(2, 1 + 1) = 1 / 2
    # D(1 -> 0) = (|{1} \ L_0| + |{0, 5, 1} \ L_1|) / min(1, 2 + 1) = 1
    knn = Knn(
        np.array([[0, 5, 1], [1, 0, 2], [2, 3, 4], [3, 4, 2], [4, 2, 3], [5, 0, 3]]).astype(
            np.int32
        ),
        np.ones((6, 3), dtype=np.float32),
    )
    for th, want in [(0.0, {(0, 1), (1, 0)}), (0.5, {(0, 1)}), (0.6, set())]:
        links = _links(knn, th)
        assert {p for p in links if set(p) == {0, 1}} == want, th
        assert links == _naive_links(knn.nbrs, th)


def test_bad_params(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with pytest.raises(ValueError, match="th"):
        aro.cluster(x, brute_force_knn(x, 3), th=1.5)
