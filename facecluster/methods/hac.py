"""Agglomerative clustering: Ward with kNN connectivity (scikit-learn), or average linkage.

``linkage="ward"`` is the "HAC knn30" baseline of CDP §1.7 and learn-to-cluster's
``hierarchy``: ``AgglomerativeClustering(n_clusters, linkage='ward',
connectivity=kneighbors_graph(X, 30, include_self=False))`` on the features. The
connectivity (each item's ``n_neighbors`` nearest others, entries 1) is built here from the
job's kNN graph instead of a second neighbour search; scikit-learn symmetrises it, and if it
has several connected components it warns and joins them by their closest pairs (computing
distances between components) before building the tree, as in the reference.

``linkage="average"`` is UPGMA on the full cosine-distance matrix: the condensed distances
``1 - x_i . x_j`` (float64, computed by blocked float32 matrix products), scipy's
``linkage(method='average')`` (nearest-neighbour chain, O(N^2) time) and ``fcluster(t,
criterion='distance')``: clusters whose average pairwise cosine distance is at most
``distance_threshold``. It needs N^2/2 float64 distances plus scipy's working copy, i.e.
about 8 N^2 bytes (20 GB at 50K items): the cost estimate refuses it on large splits.
"""

from __future__ import annotations

import logging

import numpy as np

from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec
from .kmeans import (
    N_CLUSTERS_SCHEMA,
    check_integer,
    fit_predict,
    limit_threads,
    resolve_n_clusters,
)
from .spectral import knn_connectivity

log = logging.getLogger(__name__)

__all__ = ["SPEC", "condensed_cosine_distances", "estimate", "cluster"]

LINKAGES = ("ward", "average")

#: ward, single-threaded, measured here with 30 neighbours (d 256): 7.8 s on 20K synthetic
#: face-like items, 10.5 s on a harder synthetic set, 29 s on structureless random unit
#: vectors (5K: 4.7 s, 10K: 12.8 s), i.e. about N^1.35; the estimate takes the worst:
#: seconds = WARD_SECONDS_PER_N135 x N^1.35 x n_neighbors / 30 ...
WARD_SECONDS_PER_N135 = 4.5e-5
#: ... plus a quadratic term from CDP's published runs on real faces (HAC knn30: 5.65 h on
#: 200K items, 60.9 h on 600K, i.e. about N^2.2 at that scale; late merges of large
#: clusters walk their ever-growing neighbour lists), which the synthetic sets here do not
#: show: seconds per item^2
WARD_SECONDS_PER_N2 = 5.0e-7
#: ward: bytes per (item x neighbour) of its per-node neighbour dicts and heap (measured peak
#: 305 MB in all at 20K face-like items, 440 MB on random vectors)
WARD_BYTES_PER_NK = 500.0
#: average: seconds per condensed distance, distances and nearest-neighbour chain together,
#: one thread (measured 7-8e-8 on 5-20K items: 15 s at 20K)
AVERAGE_SECONDS_PER_PAIR = 8.0e-8
#: average: bytes per condensed distance: the float64 vector, scipy's working copy and its
#: finiteness mask (measured 15.3-15.7 at 10-20K: 3.06 GB at 20K)
AVERAGE_BYTES_PER_PAIR = 17.0
#: rows of one block of the condensed distance computation, capped by memory
BLOCK_BYTES = 256 << 20


def condensed_cosine_distances(features: np.ndarray) -> np.ndarray:
    """Condensed cosine distances ``1 - x_i . x_j`` for i < j, as ``scipy.spatial.distance``
    orders them (row-major upper triangle), float64 (N (N - 1) / 2,), clipped to [0, 2].

    Computed in row blocks ``X[a:b] @ X[a:].T`` (float32); the upper-triangle entries of
    rows a..b-1 are one contiguous run of the condensed vector, filled from the block with
    a boolean mask. Extra memory: one block (at most ``BLOCK_BYTES`` of float32).
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    progress = Progress(out.size, "cosine distances", unit="pairs", logger=log)
    a = pos = 0
    while a < n - 1:
        rows = max(1, min(n - 1 - a, BLOCK_BYTES // (4 * 2 * (n - a))))
        b = a + rows
        block = x[a:b] @ x[a:].T  # (rows, n - a)
        cols = np.arange(n - a)
        upper = cols[None, :] > np.arange(rows)[:, None]
        vals = block[upper]
        out[pos : pos + vals.size] = vals
        pos += vals.size
        progress.update(vals.size)
        a = b
    progress.close()
    np.subtract(1.0, out, out=out)
    np.clip(out, 0.0, 2.0, out=out)
    return out


def _check(linkage, n_clusters, distance_threshold, n_neighbors):
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    if linkage == "ward":
        if n_clusters is None:
            raise ValueError(
                "linkage='ward' requires n_clusters (an integer >= 1 or 'true'), got None"
            )
        check_integer(n_neighbors, "n_neighbors")
    else:
        if distance_threshold is None:
            raise ValueError(
                "linkage='average' requires distance_threshold (a cosine distance in "
                "[0, 2]), got None"
            )
        if (
            isinstance(distance_threshold, bool)
            or not isinstance(distance_threshold, int | float)
            or not 0 <= distance_threshold <= 2
        ):
            raise ValueError(
                f"distance_threshold must be a cosine distance in [0, 2], got "
                f"{distance_threshold!r}"
            )


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of agglomerative clustering of ``n`` items.

    ``ward``: scikit-learn's ward tree keeps float64 moments of every node (2N x D x 8 bytes)
    besides the features and their float64 copy, and per-node neighbour dicts and a heap over
    the connectivity edges (``WARD_BYTES_PER_NK`` per item and neighbour); time
    ``WARD_SECONDS_PER_N135 x N^1.35 x n_neighbors / 30 + WARD_SECONDS_PER_N2 x N^2``,
    single-threaded (Cython): the measured worst case plus the published runs' quadratic
    growth (so 20K items count as about 4 minutes where 8-30 s were measured, 200K as 5.7 h,
    584K as 48 h).

    ``average``: ``AVERAGE_BYTES_PER_PAIR`` per condensed distance (N (N - 1) / 2 of them),
    the features and one block of products; time ``AVERAGE_SECONDS_PER_PAIR`` per pair
    (the nearest-neighbour chain is single-threaded, so ``threads`` is not counted).
    """
    if params.get("linkage", "ward") == "average":
        pairs = n * (n - 1) / 2.0
        memory = AVERAGE_BYTES_PER_PAIR * pairs + n * dim * 4 + BLOCK_BYTES
        return Cost(memory, AVERAGE_SECONDS_PER_PAIR * pairs)
    nbr = int(params.get("n_neighbors", 30))
    memory = n * dim * (4 + 8 + 16) + WARD_BYTES_PER_NK * n * nbr
    seconds = WARD_SECONDS_PER_N135 * n**1.35 * nbr / 30 + WARD_SECONDS_PER_N2 * n * n
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="Agglomerative clustering: Ward with kNN connectivity (scikit-learn; the 'HAC "
    "knn30' baseline) or average linkage on all cosine distances (scipy)",
    params={
        "linkage": {
            "enum": list(LINKAGES),
            "default": "ward",
            "description": "ward (kNN connectivity, cut at n_clusters) or average (all cosine "
            "distances, cut at distance_threshold).",
        },
        "n_clusters": {
            "oneOf": [*N_CLUSTERS_SCHEMA["oneOf"], {"type": "null"}],
            "default": "true",
            "description": "Clusters at which the ward tree is cut, or 'true' for the "
            "ground-truth count; unused by average.",
        },
        "n_neighbors": {
            "type": "integer",
            "minimum": 1,
            "default": 30,
            "description": "Neighbours per item in ward's connectivity, self excluded (the 'HAC "
            "knn30' baseline: 30).",
        },
        "distance_threshold": {
            "oneOf": [{"type": "number", "minimum": 0, "maximum": 2}, {"type": "null"}],
            "default": 0.5,
            "description": "Cosine distance at which the average-linkage tree is cut; unused by "
            "ward.",
        },
    },
    threads=2,
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    linkage: str = "ward",
    n_clusters: int | str | None = "true",
    n_neighbors: int = 30,
    distance_threshold: float | None = 0.5,
) -> np.ndarray:
    """Agglomerative clustering of the items.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised.
    knn : kNN graph over the N items (``ward``: needs k >= ``n_neighbors + 1``, self
        included).
    context : :class:`facecluster.methods.Context`; ``threads`` limits BLAS threads,
        ``n_true_clusters`` serves ``n_clusters="true"``. Both linkages are deterministic.
    linkage : "ward" (kNN-constrained, cut at ``n_clusters``) or "average" (all pairs, cut
        at ``distance_threshold``).
    n_clusters : int >= 1 or "true" (``ward`` only; required there, unused by
        ``average``).
    n_neighbors : neighbours of each item in the connectivity, self excluded (``ward``).
    distance_threshold : cosine distance at which the average-linkage tree is cut
        (``average`` only; required there, unused by ``ward``).

    Returns
    -------
    labels : int64 (N,), every item in a cluster (no -1).
    """
    _check(linkage, n_clusters, distance_threshold, n_neighbors)
    n = int(features.shape[0])
    threads = int(getattr(context, "threads", 1))
    if linkage == "ward":
        from sklearn.cluster import AgglomerativeClustering

        c = resolve_n_clusters(n_clusters, context, n)
        conn = knn_connectivity(knn, n_neighbors, include_self=False)
        log.info("ward (kNN connectivity, %d neighbours): %d items, %d clusters", n_neighbors, n, c)
        est = AgglomerativeClustering(n_clusters=c, linkage="ward", connectivity=conn)
        return fit_predict(est, features, threads)

    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    if n < 2:
        return np.zeros(n, dtype=np.int64)
    log.info(
        "average linkage: %d items, %.3g GB of distances, cut at %g",
        n,
        n * (n - 1) / 2 * 8 / 1e9,
        distance_threshold,
    )
    with limit_threads(threads):
        dist = condensed_cosine_distances(features)
    tree = scipy_linkage(dist, method="average")
    del dist
    labels = fcluster(tree, t=float(distance_threshold), criterion="distance")
    return labels.astype(np.int64) - 1
