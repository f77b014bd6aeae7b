import numpy as np
import pytest

from facecluster.knn import brute_force_knn
from facecluster.methods import Context, hdbscan


def two_groups_and_outlier(seed=0, size=20, dim=16, spread=0.05):
    """Groups A (items 0..size-1) near e0 and B (size..2size-1) near e1, outlier near e2."""
    rng = np.random.default_rng(seed)
    which = np.r_[np.zeros(size, int), np.ones(size, int), 2]
    x = np.eye(dim)[which] + spread * rng.standard_normal((which.size, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), which


def same_partition(a, b):
    """Equal up to renaming the clusters."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


@pytest.fixture(scope="module")
def data():
    x, truth = two_groups_and_outlier()
    return x, truth, brute_force_knn(x, 12)


def test_groups_are_clusters_and_the_outlier_is_noise(data):
    x, truth, knn = data
    pred = hdbscan.cluster(x, knn, context=Context(threads=2), min_cluster_size=5)
    assert pred.dtype == np.int64 and pred.shape == (x.shape[0],)
    assert pred[-1] == -1
    assert same_partition(pred[:-1], truth[:-1]) and pred[:-1].min() >= 0


def test_min_cluster_size_above_the_groups_gives_noise(data):
    x, _, knn = data
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
def test_bad_parameters(data, params, match):
    x, _, knn = data
    with pytest.raises(ValueError, match=match):
        hdbscan.cluster(x, knn, context=Context(), **params)
