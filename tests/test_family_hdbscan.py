import numpy as np
import pytest
from _problems import same_partition

from facecluster.methods import Context, hdbscan


def test_groups_are_clusters_and_the_outlier_is_noise(separated_groups):
    x, truth, knn = separated_groups
    pred = hdbscan.cluster(x, knn, context=Context(threads=2), min_cluster_size=5)
    assert pred.dtype == np.int64 and pred.shape == (x.shape[0],)
    assert pred[-1] == -1
    assert same_partition(pred[:-1], truth[:-1]) and pred[:-1].min() >= 0


def test_min_cluster_size_above_the_groups_gives_noise(separated_groups):
    x, _, knn = separated_groups
    assert np.all(hdbscan.cluster(x, knn, context=Context(), min_cluster_size=25) == -1)


def test_min_samples_defaults_to_min_cluster_size_as_sklearn():
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(4)
    c = rng.standard_normal((4, 8))
    x = c[rng.integers(0, 4, 300)] + 0.5 * rng.standard_normal((300, 8))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ref = HDBSCAN(min_cluster_size=8, copy=True).fit_predict(x)
    ours = hdbscan.cluster(x, None, context=Context(), min_cluster_size=8)
    np.testing.assert_array_equal(ours, np.where(ref < 0, -1, ref))
    again = hdbscan.cluster(x, None, context=Context(seed=9), min_cluster_size=8, min_samples=None)
    np.testing.assert_array_equal(ours, again)
    other = hdbscan.cluster(x, None, context=Context(), min_cluster_size=8, min_samples=2)
    assert not np.array_equal(ours, other)


@pytest.mark.parametrize(
    "params, match",
    [({"min_cluster_size": 1}, "min_cluster_size"), ({"min_cluster_size": 2.0}, "min_cluster_size"),
     ({"min_samples": 0}, "min_samples"), ({"min_samples": 100}, "min_samples")],
)  # fmt: skip
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        hdbscan.cluster(x, knn, context=Context(), **params)
