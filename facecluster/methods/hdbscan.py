"""HDBSCAN (scikit-learn's ``sklearn.cluster.HDBSCAN``) on the raw features, Euclidean.

CDP §1.7's "HDBSCAN min10" baseline ran the ``hdbscan`` package's
``HDBSCAN(min_cluster_size=min_samples)`` (whose ``min_samples`` then defaults to
``min_cluster_size``); this is scikit-learn's port with the same defaults (``eom`` cluster
selection, ``alpha`` 1, no single cluster). The two libraries count the point itself among
its ``min_samples`` neighbours differently, so core distances are those of one neighbour
fewer in one of them; results can differ slightly. Noise is -1.

On Euclidean dense data scikit-learn picks ``algorithm='kd_tree'``: core distances from a KD
tree (which in 256 dimensions degenerates to about a brute-force scan) and Prim's minimum
spanning tree over the mutual-reachability distances computed on the fly (N^2 D work,
single-threaded, O(N D) memory). The published run took 4.9 h on 200K items.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "cluster"]

#: seconds per (item pair x dimension) at 5K items: KD-tree core distances plus Prim's MST,
#: one thread; measured here 1.6e-9 at 2-5K items, 2.0e-9 at 10K, 2.3e-9 at 20K (237 s),
#: d 256, so the estimate adds ``GROWTH_PER_DOUBLING`` of it per doubling of N above 5K
SECONDS_PER_PAIR_DIM = 1.75e-9
GROWTH_PER_DOUBLING = 0.2


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of HDBSCAN on ``n`` items of dimension ``dim``.

    Memory: the features, scikit-learn's float64 copy and its KD tree (about 3 x N x D x 8
    bytes), the core distances, MST and condensed tree (a few hundred bytes per item);
    measured 66 MB at 20K items.
    Time: ``SECONDS_PER_PAIR_DIM x N^2 x D``, growing by ``GROWTH_PER_DOUBLING`` per
    doubling of N above 5K (about 100 h at 584K items; CDP's published run took 47.9 h on 600K); the
    KD-tree queries use ``threads`` but Prim's tree does not, so threads are not counted.
    """
    memory = n * dim * (4 + 3 * 8) + 400.0 * n
    growth = 1.0 + GROWTH_PER_DOUBLING * math.log2(max(n, 5000) / 5000)
    seconds = SECONDS_PER_PAIR_DIM * growth * n * n * dim
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="HDBSCAN (scikit-learn) on the features, Euclidean; CDP's HDBSCAN baseline",
    params={
        "min_cluster_size": {
            "type": "integer",
            "minimum": 2,
            "default": 10,
            "description": "Smallest cluster kept (CDP's 'HDBSCAN min10': 10).",
        },
        "min_samples": {
            "oneOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
            "default": None,
            "description": "Neighbours defining an item's core distance; null for "
            "min_cluster_size (the reference).",
        },
    },
    threads=4,
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn | None = None,
    *,
    context=None,
    model=None,
    min_cluster_size: int = 10,
    min_samples: int | None = None,
) -> np.ndarray:
    """Cluster the features with HDBSCAN.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised.
    knn : unused.
    context : :class:`facecluster.methods.Context`; ``threads`` is ``n_jobs`` (core
        distances). HDBSCAN is deterministic (no seed).
    min_cluster_size : smallest cluster kept (>= 2).
    min_samples : neighbours defining an item's core distance; None for
        ``min_cluster_size`` (the reference's setting).

    Returns
    -------
    labels : int64 (N,), -1 for noise.
    """
    from sklearn.cluster import HDBSCAN

    from .kmeans import check_integer, fit_predict

    min_cluster_size = check_integer(min_cluster_size, "min_cluster_size", minimum=2)
    if min_samples is not None and (
        isinstance(min_samples, bool)
        or not isinstance(min_samples, int | np.integer)
        or min_samples < 1
    ):
        raise ValueError(f"min_samples must be an integer >= 1 or null, got {min_samples!r}")
    n = int(features.shape[0])
    ms = min_cluster_size if min_samples is None else int(min_samples)
    if ms > n:
        raise ValueError(f"min_samples ({ms}) exceeds the number of items ({n})")
    if n < 2:
        return np.full(n, -1, dtype=np.int64)
    threads = int(getattr(context, "threads", 1))
    log.info("HDBSCAN: %d items, min_cluster_size=%d, min_samples=%d", n, min_cluster_size, ms)
    est = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=ms, n_jobs=threads, copy=True)
    labels = fit_predict(est, features, threads)
    labels[labels < 0] = -1
    log.info("HDBSCAN: %d clusters, %d noise items", labels.max() + 1, int((labels < 0).sum()))
    return labels
