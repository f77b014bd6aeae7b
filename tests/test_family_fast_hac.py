import numpy as np
import pytest
from _problems import same_partition, unit
from scipy.cluster.hierarchy import fcluster, linkage

from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, fast_hac


@pytest.mark.parametrize("distance", [0.3, 0.72, 1.0])
def test_equals_scipy_single_linkage(rng, distance):
    d = 8
    centres = rng.standard_normal((5, d))
    labels = np.repeat(np.arange(5), 16)
    x = unit(centres[labels] + 0.5 * rng.standard_normal((labels.size, d)) / np.sqrt(d))
    want = fcluster(
        linkage(x.astype(np.float64), method="single"), t=distance, criterion="distance"
    )
    # k large enough: every item's neighbours within `distance` are in its list
    dist = np.sqrt(np.maximum(2 - 2 * (x.astype(np.float64) @ x.T), 0))
    k = int((dist <= distance).sum(axis=1).max()) + 1
    k = min(k, x.shape[0])
    pred = fast_hac.cluster(x, brute_force_knn(x, k), context=Context(), distance=distance)
    assert pred.dtype == np.int64 and pred.shape == (x.shape[0],)
    assert same_partition(pred, want)
    assert 1 < np.unique(pred).size < x.shape[0]


def test_groups_and_outlier(rng):
    centres = rng.standard_normal((2, 16))
    labels = np.repeat([0, 1], 10)
    x = centres[labels] + 0.05 * rng.standard_normal((20, 16))
    x = unit(np.vstack([x, rng.standard_normal((1, 16))]))
    labels = np.append(labels, 2)
    pred = fast_hac.cluster(x, brute_force_knn(x, 6), context=Context(), distance=0.72)
    assert same_partition(pred, labels)


def test_cut_is_inclusive():
    # unit vectors at cosine 0.5 are at Euclidean distance exactly 1
    knn = Knn(np.array([[0, 1], [1, 0]], dtype=np.int32), np.array([[1, 0.5], [1, 0.5]], "f4"))
    assert fast_hac.cluster(None, knn, distance=1.0).tolist() == [0, 0]
    assert fast_hac.cluster(None, knn, distance=0.999).tolist() == [0, 1]
    assert fast_hac.similarity_threshold(0.72) == pytest.approx(0.7408)


def test_bad_params():
    knn = Knn(np.array([[0, 1], [1, 0]], dtype=np.int32), np.array([[1, 0.5], [1, 0.5]], "f4"))
    with pytest.raises(ValueError, match="distance"):
        fast_hac.cluster(None, knn, distance=-0.1)
    with pytest.raises(ValueError, match="distance"):
        fast_hac.cluster(None, knn, distance=2.5)
