import numpy as np
import pytest
from _problems import same_partition

from facecluster.methods import Context, kmeans


@pytest.mark.parametrize("minibatch", [False, True])
def test_three_clusters_isolate_the_outlier(separated_groups, minibatch):
    x, truth, knn = separated_groups
    ctx = Context(seed=3, n_true_clusters=3)
    by_int = kmeans.cluster(x, knn, context=ctx, n_clusters=3, minibatch=minibatch, batch_size=64)
    by_true = kmeans.cluster(x, knn, context=ctx, n_clusters="true", minibatch=minibatch)
    assert by_int.dtype == np.int64 and by_int.shape == (x.shape[0],)
    assert same_partition(by_int, truth)
    assert same_partition(by_true, truth)


def test_two_clusters_keep_the_groups_apart(separated_groups):
    x, truth, knn = separated_groups
    pred = kmeans.cluster(x, knn, context=Context(seed=0), n_clusters=2)
    assert np.unique(pred[truth == 0]).size == 1 and np.unique(pred[truth == 1]).size == 1
    assert pred[0] != pred[20]


@pytest.mark.parametrize("minibatch", [False, True])
def test_same_seed_same_labels(minibatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8)).astype(np.float32)  # no structure: init matters
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    runs = [
        kmeans.cluster(x, None, context=Context(seed=s), n_clusters=7, minibatch=minibatch)
        for s in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_n_init_defaults_follow_the_references():
    assert kmeans._n_init(None, minibatch=False) == 10
    assert kmeans._n_init(None, minibatch=True) == 3
    assert kmeans._n_init(2, minibatch=False) == 2


def test_resolve_n_clusters():
    ctx = Context(n_true_clusters=4)
    assert kmeans.resolve_n_clusters("true", ctx, 10) == 4
    assert kmeans.resolve_n_clusters(np.int64(3), ctx, 10) == 3
    with pytest.raises(ValueError, match="n_clusters='true'.*no"):
        kmeans.resolve_n_clusters("true", Context(), 10)
    with pytest.raises(ValueError, match="k='true'"):
        kmeans.resolve_n_clusters("true", None, 10, name="k")
    for bad in (0, -1, True, 2.5, "auto", None):
        with pytest.raises(ValueError, match="n_clusters"):
            kmeans.resolve_n_clusters(bad, ctx, 10)
    with pytest.raises(ValueError, match="n_clusters=11 exceeds the number of items"):
        kmeans.resolve_n_clusters(11, ctx, 10)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": "true"}, "n_clusters='true'"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": 2, "n_init": 0}, "n_init"),
        ({"n_clusters": 2, "minibatch": True, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters(separated_groups, params, match):
    x, _, knn = separated_groups
    with pytest.raises(ValueError, match=match):
        kmeans.cluster(x, knn, context=Context(), **params)


def test_estimate_grows_with_clusters_and_restarts():
    def cost(**p):
        return kmeans.SPEC.cost(20000, 256, 10, params=p, train_params={}, train=False, threads=1)

    assert cost(n_clusters=1000).seconds > 5 * cost(n_clusters=100).seconds
    assert cost(n_clusters=100).seconds > 5 * cost(n_clusters=100, n_init=1).seconds
    assert cost(n_clusters="true").seconds == cost(n_clusters=2500).seconds
    assert cost(n_clusters=100).memory_bytes > 20000 * 256 * 8
