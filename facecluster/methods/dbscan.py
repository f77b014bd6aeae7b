"""DBSCAN (scikit-learn) on the raw features, Euclidean: CDP §1.7's "DBSCAN eps0.75 min10".

``DBSCAN(eps, min_samples, metric='euclidean', n_jobs)`` on the L2-normalised features: an
item with at least ``min_samples`` items (itself included) within Euclidean distance
``eps`` is a core point; clusters are the core points connected through such neighbourhoods
plus the border points they reach; the rest is noise (-1). On unit vectors
``|x - y| <= eps`` is ``cos >= 1 - eps^2 / 2`` (eps 0.75: cos >= 0.72). For the kNN-graph
variant (learn-to-cluster's KNN-DBSCAN) see the ``knn_dbscan`` family.

scikit-learn answers the radius queries by brute force (the features have more than 15
dimensions), N^2 D work in chunks, and keeps every item's neighbourhood (an int64 index
array each) until the clusters are formed; the published runs took 6.9 h on 200K items.
"""

from __future__ import annotations

import logging

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "cluster"]

#: seconds per (item pair x dimension) of the brute-force radius queries, one thread,
#: measured here: 4.7-6.6e-11 on 5-20K items, d 256 (4.8 s at 20K)
SECONDS_PER_PAIR_DIM = 5.5e-11
#: neighbourhood size the memory estimate assumes per item (face data: about the size of an
#: identity, up to a few hundred)
ASSUMED_NEIGHBOURHOOD = 300
#: scikit-learn's chunked distance reduction: buffers per thread
CHUNK_BYTES = 64 << 20


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of DBSCAN on ``n`` items of dimension ``dim``.

    Memory: the features (float32) and scikit-learn's neighbourhoods (an int64 index per
    neighbour, counted as 16 bytes for the query buffers, ``ASSUMED_NEIGHBOURHOOD`` per item,
    plus an array object of about 100 bytes per item; measured 68 MB in all at 20K synthetic
    items), and
    the chunk buffers of the distance reduction (``CHUNK_BYTES`` per thread). Time: the
    brute-force radius queries, N^2 D at ``SECONDS_PER_PAIR_DIM``, over ``threads``.
    """
    memory = n * dim * 4 + n * (16 * ASSUMED_NEIGHBOURHOOD + 100) + CHUNK_BYTES * threads
    seconds = SECONDS_PER_PAIR_DIM * n * n * dim / threads + 2e-5 * n
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="DBSCAN (scikit-learn) on the features, Euclidean; CDP's DBSCAN baseline",
    params={
        "eps": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.75,
            "description": "Neighbourhood radius, Euclidean on unit vectors (0.75: cos >= 0.72, "
            "CDP's setting).",
        },
        "min_samples": {
            "type": "integer",
            "minimum": 1,
            "default": 10,
            "description": "Neighbourhood size of a core point, the point itself included (CDP's "
            "setting: 10).",
        },
    },
    threads=16,
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn | None = None,
    *,
    context=None,
    model=None,
    eps: float = 0.75,
    min_samples: int = 10,
) -> np.ndarray:
    """Cluster the features with DBSCAN.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised.
    knn : unused (the neighbourhoods are exact radius queries on the features).
    context : :class:`facecluster.methods.Context`; ``threads`` is DBSCAN's ``n_jobs`` and
        the BLAS/OpenMP limit. DBSCAN is deterministic (no seed).
    eps : neighbourhood radius, Euclidean (on unit vectors, in (0, 2]).
    min_samples : neighbourhood size of a core point, the point itself included.

    Returns
    -------
    labels : int64 (N,), -1 for noise.
    """
    from sklearn.cluster import DBSCAN

    from .kmeans import check_integer, check_positive, fit_predict

    eps = check_positive(eps, "eps")
    min_samples = check_integer(min_samples, "min_samples")
    threads = int(getattr(context, "threads", 1))
    log.info("DBSCAN: %d items, eps=%g, min_samples=%d", features.shape[0], eps, min_samples)
    est = DBSCAN(eps=eps, min_samples=min_samples, n_jobs=threads)
    labels = fit_predict(est, features, threads)
    log.info("DBSCAN: %d clusters, %d noise items", labels.max() + 1, int((labels < 0).sum()))
    return labels
