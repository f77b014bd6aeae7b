import numpy as np
from _problems import same_partition, two_groups_and_outlier

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, density_peaks, gcnv, get_spec


def test_density_is_the_mean_similarity_without_self_and_padding():
    knn = Knn(
        np.array([[0, 1, 2], [1, 0, -1], [0, 2, 1], [3, -1, -1]], dtype=np.int32),
        np.array(
            [[1.0, 0.5, 0.25], [1.0, 0.5, -1.0], [0.75, 1.0, 0.25], [1.0, -1.0, -1.0]],
            dtype=np.float32,
        ),
    )
    dens = density_peaks.density_confidence(knn, chunk=3)
    assert dens.dtype == np.float32 and dens.shape == (4,)
    # row 2: self is not first (an exact duplicate), still excluded wherever it sits
    np.testing.assert_allclose(dens, [0.375, 0.5, 0.5, 0.0])


def test_groups_and_outlier():
    x, labels = two_groups_and_outlier(seed=3)
    knn = brute_force_knn(x, 10)
    out = density_peaks.cluster(x, knn, context=Context(seed=0), tau_0=0.5)
    pred = out.labels
    np.testing.assert_array_equal(out.scores["density"], density_peaks.density_confidence(knn))
    assert pred.dtype == np.int64 and pred.shape == labels.shape
    assert same_partition(pred, labels)


def test_same_linking_as_gcnv_with_the_density_as_confidence():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn = brute_force_knn(x, 12)
    conf = density_peaks.density_confidence(knn)
    expected = gcnv.peaks_to_labels(*gcnv.confidence_to_peaks(knn, conf), 0.3)
    got = density_peaks.cluster(x, knn, tau_0=0.3).labels
    np.testing.assert_array_equal(got, expected)
    # every node links to a denser neighbour or is a peak: a higher tau_0 only splits
    finer = density_peaks.cluster(x, knn, tau_0=0.9).labels
    assert np.unique(finer).size >= np.unique(got).size


def test_spec_is_unsupervised_and_light():
    spec = get_spec("density_peaks")
    assert not spec.supervised and not spec.gpu and spec.conda_env == "eval"
    kw = {"params": {}, "train_params": {}, "train": False, "threads": 1}
    small, big = spec.cost(1000, 256, 80, **kw), spec.cost(100000, 256, 80, **kw)
    assert 0 < small.memory_bytes < big.memory_bytes and 0 < small.seconds < big.seconds
