import numpy as np
import pytest
from _problems import same_partition

from facecluster.methods import Context, dbscan


def test_groups_are_clusters_and_the_outlier_is_noise(separated_groups):
    x, truth, knn = separated_groups
    pred = dbscan.cluster(x, knn, context=Context(threads=2), eps=0.4, min_samples=5)
    assert pred.dtype == np.int64 and pred.shape == (x.shape[0],)
    assert pred[-1] == -1
    assert same_partition(pred[:-1], truth[:-1]) and pred[:-1].min() >= 0


def test_eps_and_min_samples_decide_core_points(separated_groups):
    x, truth, knn = separated_groups
    # a radius larger than the distance between the groups (about sqrt 2) joins everything
    assert np.unique(dbscan.cluster(x, knn, context=Context(), eps=1.6, min_samples=5)).size == 1
    # min_samples 1: every item is a core point, the outlier a cluster of its own
    assert same_partition(dbscan.cluster(x, knn, context=Context(), eps=0.4, min_samples=1), truth)
    # more than a group holds: all noise
    assert np.all(dbscan.cluster(x, knn, context=Context(), eps=0.4, min_samples=25) == -1)


def test_equals_sklearn_and_is_deterministic():
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ref = DBSCAN(eps=0.6, min_samples=4).fit_predict(x)
    a = dbscan.cluster(x, None, context=Context(seed=0), eps=0.6, min_samples=4)
    b = dbscan.cluster(x, None, context=Context(seed=1), eps=0.6, min_samples=4)
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(a, b)
    assert (a == -1).any() and a.max() >= 1


@pytest.mark.parametrize(
    "params, match",
    [({"eps": 0.0}, "eps"), ({"eps": -1}, "eps"), ({"min_samples": 0}, "min_samples"),
     ({"min_samples": 2.5}, "min_samples")],
)  # fmt: skip
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        dbscan.cluster(x, knn, context=Context(), **params)


def test_estimate_is_quadratic_in_time():
    def cost(n):
        return dbscan.SPEC.cost(n, 256, 10, params={}, train_params={}, train=False, threads=1)

    assert cost(200_000).seconds > 3.5 * cost(100_000).seconds
