import numpy as np
import pytest
from _problems import blobs, same_partition

from facecluster.knn import brute_force_knn
from facecluster.methods import Context, hac


@pytest.mark.filterwarnings("ignore:the number of connected components")
def test_ward_isolates_the_outlier(separated_groups):
    x, truth, knn = separated_groups
    by_int = hac.cluster(x, knn, context=Context(), n_clusters=3, n_neighbors=5)
    by_true = hac.cluster(x, knn, context=Context(n_true_clusters=3), n_neighbors=5)
    assert by_int.dtype == np.int64 and by_int.shape == (x.shape[0],)
    assert same_partition(by_int, truth)
    np.testing.assert_array_equal(by_int, by_true)
    two = hac.cluster(x, knn, context=Context(), n_clusters=2, n_neighbors=5)
    assert same_partition(two[truth < 2], truth[truth < 2])


@pytest.mark.parametrize("threshold, expected", [(0.5, 3), (1.5, 1)])
def test_average_cuts_at_the_threshold(separated_groups, threshold, expected):
    x, truth, knn = separated_groups
    pred = hac.cluster(x, knn, context=Context(), linkage="average", distance_threshold=threshold)
    assert pred.dtype == np.int64 and pred.min() == 0
    assert np.unique(pred).size == expected
    if expected == 3:
        assert same_partition(pred, truth)


@pytest.mark.filterwarnings("ignore:the number of connected components")
def test_ward_equals_sklearn_with_kneighbors_graph():
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.neighbors import kneighbors_graph

    x, _ = blobs()
    knn = brute_force_knn(x, 31)
    conn = kneighbors_graph(x, 30, include_self=False)
    ref = AgglomerativeClustering(n_clusters=8, linkage="ward", connectivity=conn).fit(x)
    ours = hac.cluster(x, knn, context=Context(), n_clusters=8)
    np.testing.assert_array_equal(ours, ref.labels_)


def test_condensed_distances_match_pdist(monkeypatch):
    from scipy.spatial.distance import pdist

    x, _ = blobs(n=97)
    monkeypatch.setattr(hac, "BLOCK_BYTES", 4 * 2 * 97 * 5)  # blocks of about 5 rows
    np.testing.assert_allclose(hac.condensed_cosine_distances(x), pdist(x, "cosine"), atol=1e-6)


def test_average_equals_scipy_on_pdist():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    x, _ = blobs(noise=1.0)
    ref = fcluster(linkage(pdist(x.astype(np.float64), "cosine"), "average"), 0.6, "distance")
    ours = hac.cluster(x, None, context=Context(), linkage="average", distance_threshold=0.6)
    assert np.unique(ours).size > 3
    assert same_partition(ours, ref)


def test_deterministic():
    x, _ = blobs(noise=2.0)
    knn = brute_force_knn(x, 31)
    a, b = (hac.cluster(x, knn, context=Context(seed=s), n_clusters=9) for s in (0, 1))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "params, match",
    [
        ({}, "n_clusters='true'"),
        ({"n_clusters": None}, "linkage='ward' requires n_clusters"),
        ({"linkage": "average", "distance_threshold": None}, "requires distance_threshold"),
        ({"linkage": "average", "distance_threshold": 2.5}, "distance_threshold"),
        ({"linkage": "single", "n_clusters": 2}, "linkage"),
        ({"n_clusters": 2, "n_neighbors": 12}, "n_neighbors=12 needs a kNN graph with k >= 13"),
        ({"n_clusters": 2, "n_neighbors": 0}, "n_neighbors"),
        ({"n_clusters": 0}, "n_clusters"),
    ],
)
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        hac.cluster(x, knn, context=Context(), **params)


def test_average_estimate_is_quadratic_in_memory():
    def cost(n, **p):
        return hac.SPEC.cost(n, 256, 30, params=p, train_params={}, train=False, threads=1)

    avg = cost(100_000, linkage="average")
    assert avg.memory_bytes > 8 * 100_000**2
    assert cost(200_000, linkage="average").memory_bytes > 3.9 * avg.memory_bytes
    assert cost(100_000).memory_bytes < avg.memory_bytes / 10
