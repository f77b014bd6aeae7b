import numpy as np
import pytest
import scipy.sparse as sp
from _problems import blobs, same_partition

from facecluster.knn import brute_force_knn
from facecluster.methods import Context, spectral

# small test graphs are often disconnected; scikit-learn warns and copes
pytestmark = pytest.mark.filterwarnings("ignore:Graph is not fully connected")


@pytest.mark.parametrize("affinity", ["nearest_neighbors", "rbf"])
def test_two_groups_are_found(separated_groups, affinity):
    x, truth, knn = separated_groups
    kw = {"affinity": affinity, "n_neighbors": 5, "n_components_nystrom": 12}
    by_int = spectral.cluster(x, knn, context=Context(seed=0), n_clusters=2, **kw)
    by_true = spectral.cluster(x, knn, context=Context(seed=0, n_true_clusters=2), **kw)
    assert by_int.dtype == np.int64 and by_int.shape == (x.shape[0],)
    groups = truth < 2
    assert same_partition(by_int[groups], truth[groups])
    np.testing.assert_array_equal(by_int, by_true)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rbf_separates_three_groups(seed):
    x, y = blobs(n=90, groups=3, noise=0.2, seed=seed)
    pred = spectral.cluster(
        x, None, context=Context(seed=seed), n_clusters=3, affinity="rbf", gamma=2.0,
        n_components_nystrom=20,
    )  # fmt: skip
    assert same_partition(pred, y)


@pytest.mark.parametrize("include_self", [True, False])
def test_knn_connectivity_is_kneighbors_graph(include_self):
    from sklearn.neighbors import kneighbors_graph

    x, _ = blobs()
    knn = brute_force_knn(x, 15)
    ours = spectral.knn_connectivity(knn, 10, include_self=include_self)
    ref = kneighbors_graph(x.astype(np.float64), 10, include_self=include_self)
    assert ours.dtype == np.float64
    assert (ours != ref).nnz == 0


def test_nearest_neighbors_equals_sklearn_spectral_clustering():
    from sklearn.cluster import SpectralClustering

    x, _ = blobs()
    knn = brute_force_knn(x, 15)
    for seed, labels in ((0, "discretize"), (4, "kmeans")):
        ref = SpectralClustering(
            n_clusters=6,
            affinity="nearest_neighbors",
            assign_labels=labels,
            random_state=seed,
        ).fit(x)
        ours = spectral.cluster(
            x, knn, context=Context(seed=seed), n_clusters=6, assign_labels=labels
        )
        np.testing.assert_array_equal(ours, ref.labels_)


def test_nystrom_embedding_blocks_and_rows(monkeypatch):
    x, _ = blobs(n=300)
    whole = spectral.nystrom_embedding(x, 6, n_landmarks=40, gamma=1.0, seed=2)
    monkeypatch.setattr(spectral, "BLOCK_ROWS", 37)
    blocked = spectral.nystrom_embedding(x, 6, n_landmarks=40, gamma=1.0, seed=2)
    assert whole.shape == (300, 6)
    np.testing.assert_allclose(blocked, whole, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0)
    # more clusters than landmarks: the embedding has one dimension per landmark
    assert spectral.nystrom_embedding(x, 50, n_landmarks=20, gamma=1.0, seed=2).shape == (300, 20)


@pytest.mark.parametrize("affinity", ["nearest_neighbors", "rbf"])
def test_same_seed_same_labels(affinity):
    x, _ = blobs(noise=2.0, seed=3)  # weak structure: seeds matter
    knn = brute_force_knn(x, 12)
    kw = {"affinity": affinity, "n_clusters": 9, "n_components_nystrom": 30}
    a, b, c = (spectral.cluster(x, knn, context=Context(seed=s), **kw) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_small_inputs_use_fewer_landmarks(separated_groups):
    x, truth, knn = separated_groups
    pred = spectral.cluster(x, knn, context=Context(), n_clusters=2, affinity="rbf")
    assert same_partition(pred[truth < 2], truth[truth < 2])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": "true"}, "n_clusters='true'"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": 2, "affinity": "cosine"}, "affinity"),
        ({"n_clusters": 2, "assign_labels": "nope"}, "assign_labels"),
        ({"n_clusters": 2, "affinity": "rbf", "assign_labels": "discretize"}, "assign_labels"),
        ({"n_clusters": 2, "n_neighbors": 13}, "n_neighbors=13 needs a kNN graph with k >= 13"),
        ({"n_clusters": 2, "n_neighbors": 0}, "n_neighbors"),
        ({"n_clusters": 2, "affinity": "rbf", "gamma": 0.0}, "gamma"),
        ({"n_clusters": 2, "affinity": "rbf", "n_components_nystrom": 0}, "n_components_nystrom"),
    ],
)
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        spectral.cluster(x, knn, context=Context(), **params)


def test_estimate_explodes_with_clusters():
    def cost(**p):
        return spectral.SPEC.cost(
            100_000, 256, 80, params=p, train_params={}, train=False, threads=1
        )

    nn = cost(n_clusters=2000)
    assert nn.memory_bytes > 100_000 * 4000 * 8
    assert nn.seconds > 4 * cost(n_clusters=500).seconds
    assert cost(n_clusters=2000, affinity="rbf").memory_bytes < nn.memory_bytes / 10


def test_affinity_is_symmetric_binary_average():
    x, _ = blobs(n=50)
    conn = spectral.knn_connectivity(brute_force_knn(x, 10), 10, include_self=True)
    aff = 0.5 * (conn + conn.T)
    assert sp.issparse(aff) and set(np.unique(aff.data)) <= {0.5, 1.0}
    assert np.all(conn.diagonal() == 1) and np.all(np.diff(conn.indptr) == 10)
