import numpy as np
import pytest
from _problems import same_partition

from facecluster.methods import Context, meanshift


def test_groups_and_the_outlier_are_modes(separated_groups):
    x, truth, knn = separated_groups
    pred = meanshift.cluster(x, knn, context=Context(), bandwidth=0.5)
    assert pred.dtype == np.int64 and pred.shape == (x.shape[0],)
    assert same_partition(pred, truth)  # cluster_all: the outlier is its own mode, not noise


def test_a_wide_window_merges_everything(separated_groups):
    x, _, knn = separated_groups
    assert np.unique(meanshift.cluster(x, knn, context=Context(), bandwidth=1.8)).size == 1


def test_bin_seeding_on_unit_vectors_collapses():
    # two tight groups around random directions in 64-d: every coordinate is small, so at
    # bandwidth 1 every item falls in the grid cell at the origin: one seed, one cluster
    rng = np.random.default_rng(6)
    c = rng.standard_normal((2, 64))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.repeat(c, 15, axis=0) + 0.02 * rng.standard_normal((30, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assert np.abs(x).max() < 0.5
    ctx = Context()
    assert np.unique(meanshift.cluster(x, None, context=ctx, bandwidth=1.0)).size == 2
    binned = meanshift.cluster(x, None, context=ctx, bandwidth=1.0, bin_seeding=True)
    assert np.unique(binned).size == 1


def test_equals_sklearn_and_uses_two_workers():
    from sklearn.cluster import MeanShift

    rng = np.random.default_rng(5)
    c = rng.standard_normal((3, 8))
    x = c[rng.integers(0, 3, 120)] + 0.3 * rng.standard_normal((120, 8))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ref = MeanShift(bandwidth=0.7).fit_predict(x)
    ours = meanshift.cluster(x, None, context=Context(threads=2), bandwidth=0.7)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(
    "params, match",
    [({"bandwidth": 0}, "bandwidth"), ({"bandwidth": -0.5}, "bandwidth"),
     ({"min_bin_freq": 0}, "min_bin_freq"), ({"bin_seeding": "yes"}, "bin_seeding")],
)  # fmt: skip
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        meanshift.cluster(x, knn, context=Context(), **params)
