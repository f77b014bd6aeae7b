import warnings

import numpy as np
import pytest
from _problems import same_partition

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, get_spec
from facecluster.methods import infomap as fim

CTX = Context(seed=0, threads=1)


def _two_cliques_and_outlier(rng, sizes=(6, 9), d=16):
    """Two tight groups (cosine ~0.98 inside, ~0 across) and one item far from both."""
    centres = np.linalg.qr(rng.standard_normal((d, 3)))[0].T  # 3 orthonormal directions
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + 0.03 * rng.standard_normal((labels.size, d))
    x = np.vstack([x, centres[2]])  # the isolated item
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.append(labels, -1)


def test_spec():
    spec = get_spec("infomap")
    assert spec.conda_env == "infomap" and not spec.supervised and not spec.needs
    assert spec.params["min_sim"]["default"] == 0.58
    assert spec.params["two_level"]["default"] and spec.params["directed"]["default"]
    assert spec.params["num_trials"]["default"] == 1
    assert spec.params["markov_time"]["default"] == 1.0
    small = spec.cost(20_000, 256, 50, params={}, train_params={}, train=False, threads=2)
    big = spec.cost(200_000, 256, 50, params={}, train_params={}, train=False, threads=2)
    assert 0 < small.memory_bytes < big.memory_bytes and 0 < small.seconds < big.seconds


def test_knn_links():
    knn = Knn(
        np.array([[0, 2, 1], [1, 0, -1], [2, 0, 1]], dtype=np.int32),
        np.array([[1.0, 0.7, 0.5], [1.0, 0.5, -1.0], [1.0, 0.7, 0.6]], dtype=np.float32),
    )
    links = fim.knn_links(knn, 0.6)
    assert links.dtype == np.float64 and links.flags.c_contiguous
    np.testing.assert_allclose(links, [[0, 2, 0.7], [2, 0, 0.7], [2, 1, 0.6]], rtol=1e-6)
    assert fim.knn_links(knn, 0.99).shape == (0, 3)


def test_two_cliques_and_isolated_node(rng):
    x, truth = _two_cliques_and_outlier(rng)
    knn = brute_force_knn(x, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation notice of infomap's 3.0 surface
        pred = fim.cluster(x, knn, context=CTX, min_sim=0.5)
    assert pred.dtype == np.int64 and pred.shape == truth.shape
    assert pred[-1] == -1  # no link in either direction: not in the network
    assert np.all(pred[:-1] >= 0)
    assert same_partition(pred, truth)
    assert pred[0] >= 0  # node 0 keeps its leaf module (the reference's tree hack could not)


def test_deterministic_and_seeded(small_synth):
    feats, labels = small_synth
    knn = brute_force_knn(feats, 15)
    a = fim.cluster(feats, knn, context=Context(seed=3), min_sim=0.5)
    b = fim.cluster(feats, knn, context=Context(seed=3), min_sim=0.5)
    np.testing.assert_array_equal(a, b)
    # seed 0 is mapped to Infomap's smallest valid seed, 1
    np.testing.assert_array_equal(
        fim.cluster(feats, knn, context=Context(seed=0), min_sim=0.5),
        fim.cluster(feats, knn, context=Context(seed=1), min_sim=0.5),
    )
    # the well separated blobs are recovered
    assert same_partition(a, labels)


def test_labels_follow_a_permutation(rng):
    x, truth = _two_cliques_and_outlier(rng, sizes=(7, 5))
    perm = rng.permutation(x.shape[0])
    base = fim.cluster(x, brute_force_knn(x, 8), context=CTX, min_sim=0.5)
    permuted = fim.cluster(x[perm], brute_force_knn(x[perm], 8), context=CTX, min_sim=0.5)
    # item perm[i] of the original order is item i of the permuted run
    assert same_partition(permuted, base[perm])
    assert permuted[np.flatnonzero(perm == x.shape[0] - 1)[0]] == -1


@pytest.mark.parametrize("two_level,directed", [(False, True), (True, False)])
def test_variants_recover_groups(small_synth, two_level, directed):
    feats, labels = small_synth
    pred = fim.cluster(
        feats,
        brute_force_knn(feats, 15),
        context=CTX,
        min_sim=0.5,
        two_level=two_level,
        directed=directed,
        num_trials=2,
    )
    assert same_partition(pred, labels)


def test_no_links_gives_all_singletons(rng):
    x, _ = _two_cliques_and_outlier(rng)
    pred = fim.cluster(x, brute_force_knn(x, 4), context=CTX, min_sim=0.9999)
    assert np.all(pred == -1)


@pytest.mark.parametrize(
    "params,name",
    [
        ({"min_sim": 1.5}, "min_sim"),
        ({"num_trials": 0}, "num_trials"),
        ({"teleportation_probability": -0.1}, "teleportation_probability"),
        ({"markov_time": 0.0}, "markov_time"),
    ],
)
def test_bad_params(rng, params, name):
    x, _ = _two_cliques_and_outlier(rng)
    with pytest.raises(ValueError, match=name):
        fim.cluster(x, brute_force_knn(x, 4), context=CTX, **params)
