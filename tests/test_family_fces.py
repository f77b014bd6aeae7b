"""FC-ES: the neighbour-based edge probability, the early stop and the singleton rule."""

import numpy as np
import pytest

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import Knn
from facecluster.methods import Context, fces


def _knn(nbrs, sims):
    return Knn(np.asarray(nbrs, dtype=np.int32), np.asarray(sims, dtype=np.float32))


def _softmax(cos, sigma=0.5):
    w = np.exp(-(2 - 2 * np.clip(cos, 0, 1)) / sigma)
    return w / w.sum()


def test_edge_probability_of_two_lists_with_a_known_overlap():
    # lists of 0 and 1 share {0, 1, 2}; 0's list has 3, 1's has 4
    nbrs = [[0, 1, 2, 3], [1, 2, 0, 4], [2, 0, 1, 3], [3, 0, 2, 4], [4, 1, 3, 2]]
    sims = [[1.0, 0.9, 0.6, 0.3], [1.0, 0.8, 0.7, -0.2], [1.0, 0.6, 0.5, 0.1],
            [1.0, 0.3, 0.2, 0.1], [1.0, 0.5, 0.1, 0.0]]  # fmt: skip
    knn = _knn(nbrs, sims)
    p0, p1 = _softmax(np.array(sims[0])), _softmax(np.array(sims[1]))
    np.testing.assert_allclose(fces.transition(knn)[:2], [p0, p1], rtol=1e-6)
    nep = fces.edge_probability(knn, 0.5)
    # NEP(0, 1) = 1/2 (P_0(0) + P_0(1) + P_0(2) + P_1(0) + P_1(1) + P_1(2))
    expected = 0.5 * (p0[0] + p0[1] + p0[2] + p1[2] + p1[0] + p1[1])
    assert nep[0, 1] == pytest.approx(expected, rel=1e-6)
    # by hand for the same numbers: the shared three carry most of both distributions
    assert 0.5 * (p0[:3].sum() + p1[:3].sum()) == pytest.approx(expected)
    # NEP(i, i) = 1; NEP(1, 4): 1's list {1, 2, 0, 4} and 4's {4, 1, 3, 2} share {1, 2, 4}
    np.testing.assert_allclose(nep[:, 0], 1.0, rtol=1e-6)
    p4 = _softmax(np.array(sims[4]))
    assert nep[1, 3] == pytest.approx(0.5 * (p1[0] + p1[1] + p1[3] + p4[1] + p4[3] + p4[0]))


def test_edge_probability_is_independent_of_the_chunking(separated_groups, monkeypatch):
    _, _, knn = separated_groups
    whole = fces.edge_probability(knn)
    for chunk in (144, 1000):  # one row per chunk; compressed table columns
        monkeypatch.setattr(fces, "CHUNK_ENTRIES", chunk)
        np.testing.assert_array_equal(fces.edge_probability(knn), whole)
    assert ((whole >= 0) & (whole <= 1 + 1e-6)).all()


def test_missing_entries_score_zero():
    knn = _knn([[0, 1, -1], [1, 0, -1]], [[1.0, 0.9, 0.0], [1.0, 0.9, 0.0]])
    nep = fces.edge_probability(knn)
    assert nep[0, 2] == 0 and nep[1, 2] == 0
    assert nep[0, 1] == pytest.approx(1.0, rel=1e-6)  # two items, each the other's list


def test_early_stop_drops_neighbours_after_the_first_failing_one():
    nbrs = [[0, 1, 2, 3, 4], [2, 1, 0, 3, 4]]  # row 1: self in the middle
    nep = np.array([[1.0, 0.5, 0.1, 0.6, 0.9], [0.4, 1.0, 0.3, 0.2, 0.9]], dtype=np.float32)
    keep = fces.early_stop(_knn(nbrs, np.ones((2, 5))), nep, theta=0.22)
    # row 0: 1 passes, 2 fails and stops the walk; 3 and 4 are above theta but dropped
    assert keep[0].tolist() == [False, True, False, False, False]
    # row 1: self (position 1) is skipped, 2 and 0 pass, 3 fails
    assert keep[1].tolist() == [True, False, True, False, False]


def _chain():
    """Items 0 and 1 link to each other and to 4; 4's first neighbour 5 sits in a tight
    trio (5, 6, 7) whose list shares only 5 with 4's: NEP(4, 5) < 0.22, so 4 emits no link
    while 0 and 1 link to it."""
    nbrs = [[0, 1, 4], [1, 0, 4], [2, 3, 1], [3, 2, 1], [4, 5, 2], [5, 6, 7], [6, 5, 7],
            [7, 5, 6]]  # fmt: skip
    sims = [[1, 0.95, 0.9], [1, 0.95, 0.9], [1, 0.95, 0.2], [1, 0.95, 0.2], [1, 0.3, 0.3],
            [1, 0.99, 0.99], [1, 0.99, 0.99], [1, 0.99, 0.99]]  # fmt: skip
    return _knn(nbrs, sims)


def test_singleton_override_switch():
    knn = _chain()
    nep = fces.edge_probability(knn)
    keep = fces.early_stop(knn, nep, 0.22)
    assert not keep[4].any() and keep[0, 2]  # 4 emits nothing, 0 links to it
    ctx = Context(seed=1)
    on = finalize_labels(fces.cluster(None, knn, context=ctx))
    off = finalize_labels(fces.cluster(None, knn, context=ctx, singleton_override=False))
    assert (on == on[4]).sum() == 1  # the reference: a label of its own
    assert off[4] == off[0]  # kept in the module its incoming link put it in


def test_clusters_separated_groups(separated_groups):
    feats, truth, knn = separated_groups
    pred = finalize_labels(fces.cluster(feats, knn, context=Context(seed=3), theta=0.1))
    assert metrics.evaluate(truth, pred)["pairwise_f"] > 0.95


def test_bad_parameters():
    knn = _chain()
    with pytest.raises(ValueError, match="sigma"):
        fces.cluster(None, knn, sigma=0)
    with pytest.raises(ValueError, match="theta"):
        fces.cluster(None, knn, theta=1.5)


def test_estimate_at_ms1m_scale_is_bounded():
    cost = fces.SPEC.cost(5_210_000, 256, 80, params={}, train_params={}, train=False, threads=2)
    assert cost.memory_bytes < 80e9 and cost.seconds > 0
