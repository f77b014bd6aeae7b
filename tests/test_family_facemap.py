"""FaceMap: the adaptive cut of each neighbour list, the lists without self, the links."""

import numpy as np
import pytest

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import Knn
from facecluster.methods import Context, facemap


def _spec_cut(sims, valid, window):
    """The cut as specified, one window start at a time (newer-methods.md §4.2)."""
    s = np.where(valid, np.clip(sims, 0, None), 0.0)
    p = s / s.sum()
    d = p[:-1] - p[1:]
    z = np.zeros(d.size)
    for j in range(d.size - window, -1, -1):
        test, ref, std = d[j : j + window].mean(), d[j:].mean(), d[j:].std()
        flat = std <= 1e-12 * max(abs(ref), 1 / sims.size)
        z[j + (window + 1) // 2] = 0.0 if flat else abs(test - ref) / std
    return int(z.argmax())


def test_cut_of_a_hand_made_profile_falls_at_the_identity_boundary():
    K, window = 40, 6
    # ten neighbours of the same identity (cosine about 0.8), then background (about 0.2)
    profile = np.concatenate([np.linspace(0.85, 0.75, 10), np.linspace(0.25, 0.15, K - 10)])
    cut, p = facemap.adaptive_cut(profile[None, :], np.ones((1, K), bool), window)
    assert p[0] == pytest.approx(profile / profile.sum())
    # the windows that hold the drop between ranks 9 and 10 centre on ranks 7..12; the
    # first of them scores highest: ranks 0..7 are linked
    assert cut[0] == 7 == _spec_cut(profile, np.ones(K, bool), window)
    longer = np.concatenate([np.linspace(0.9, 0.8, 25), np.linspace(0.3, 0.2, K - 25)])
    assert facemap.adaptive_cut(longer[None, :], np.ones((1, K), bool), window)[0][0] == 22


def test_cut_matches_the_specification_on_random_profiles(monkeypatch):
    rng = np.random.default_rng(1)
    n, K, window = 120, 30, 5
    sims = np.sort(rng.uniform(-0.1, 1.0, size=(n, K)), axis=1)[:, ::-1].copy()
    sims[3, 8:] = 0.2  # a flat tail: zero standard deviations score 0
    valid = np.ones_like(sims, dtype=bool)
    valid[7, -4:] = False
    expected = [_spec_cut(sims[i], valid[i], window) for i in range(n)]
    for rows in (16384, 7):  # any chunking
        monkeypatch.setattr(facemap, "CHUNK_ROWS", rows)
        cut, p = facemap.adaptive_cut(sims, valid, window)
        assert cut.tolist() == expected
        assert (p >= 0).all() and p[7, -4:].sum() == 0  # clipped negatives, missing entries


def test_window_must_fit_the_list():
    with pytest.raises(ValueError, match="window must be in"):
        facemap.adaptive_cut(np.ones((1, 10)), np.ones((1, 10), bool), 9)


def test_neighbour_lists_drop_self_wherever_it_sits():
    knn = Knn(
        np.array([[0, 1, 2], [2, 1, 0], [0, 1, 2]], dtype=np.int32),
        np.array([[1.0, 0.9, 0.8], [0.95, 1.0, 0.5], [0.9, 0.8, 0.7]], dtype=np.float32),
    )
    nbrs, sims = facemap.neighbour_lists(knn)
    # row 1: self in the middle; row 2: no self (a duplicate feature), the last entry goes
    assert nbrs.tolist() == [[1, 2], [2, 0], [0, 1]]
    assert sims[1].tolist() == pytest.approx([0.95, 0.5])


def test_items_that_only_receive_links_keep_their_module(separated_groups):
    feats, truth, knn = separated_groups
    pred = facemap.cluster(feats, knn, context=Context(seed=3), window=4)
    final = finalize_labels(pred)
    assert metrics.evaluate(truth, final)["pairwise_f"] > 0.95
    # the outlier is in the network only through links it emits or receives; items with
    # none are -1, everyone else has a module
    assert (pred >= 0).sum() >= truth.size - 1


def test_estimate_grows_with_k():
    small = facemap.SPEC.cost(100_000, 256, 129, params={}, train_params={}, train=False, threads=2)
    large = facemap.SPEC.cost(100_000, 256, 257, params={}, train_params={}, train=False, threads=2)
    assert large.memory_bytes > small.memory_bytes and large.seconds > small.seconds
