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
from .kmeans import N_CLUSTERS_SCHEMA, estimated_n_clusters, limit_threads, resolve_n_clusters
from .spectral import knn_connectivity

log = logging.getLogger(__name__)

__all__ = ["SPEC", "condensed_cosine_distances", "estimate", "cluster"]

LINKAGES = ("ward", "average")

#: ward: seconds per (item x neighbour) of scikit-learn's connectivity-constrained ward tree
#: (one thread, measured here on 2-20K items, d 256, 30 neighbours)
WARD_SECONDS_PER_NK = 1.0e-5
#: ward: bytes per (item x neighbour) of its per-node neighbour dicts and heap
WARD_BYTES_PER_NK = 200.0
#: average: seconds per condensed distance of scipy's nearest-neighbour chain (one thread)
AVERAGE_SECONDS_PER_PAIR = 1.0e-8
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
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
            raise ValueError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
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

    ``ward``: scikit-learn's ward tree keeps float64 moments of every node (2N x D x 8 bytes,
    plus the float64 copy of the features) and per-node neighbour dicts and a heap over the
    connectivity edges (``WARD_BYTES_PER_NK`` per item and neighbour); time measured as
    ``WARD_SECONDS_PER_NK`` per item and neighbour (single-threaded Cython; merged nodes'
    neighbour lists grow, so this grows faster than linear on large inputs).

    ``average``: the condensed distances and scipy's working copy (2 x N^2/2 x 8 bytes) plus
    its finiteness check (N^2/2 bytes); time of the blocked products (N^2 D multiply-adds)
    and the nearest-neighbour chain (``AVERAGE_SECONDS_PER_PAIR`` per pair).
    """
    if params.get("linkage", "ward") == "average":
        pairs = n * (n - 1) / 2.0
        memory = pairs * (2 * 8 + 1) + n * dim * 4 + BLOCK_BYTES
        seconds = n * n * dim * 2e-11 / threads + AVERAGE_SECONDS_PER_PAIR * pairs
        return Cost(memory, seconds)
    nbr = int(params.get("n_neighbors", 30))
    estimated_n_clusters(params.get("n_clusters", "true"), n)  # the tree is built in full
    memory = n * dim * (4 + 8 + 16) + WARD_BYTES_PER_NK * n * nbr
    seconds = WARD_SECONDS_PER_NK * n * nbr
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="Agglomerative clustering: Ward with kNN connectivity (scikit-learn; the 'HAC "
    "knn30' baseline) or average linkage on all cosine distances (scipy)",
    params={
        "linkage": {"enum": list(LINKAGES), "default": "ward"},
        "n_clusters": {
            "oneOf": [*N_CLUSTERS_SCHEMA["oneOf"], {"type": "null"}],
            "default": "true",
        },
        "n_neighbors": {"type": "integer", "minimum": 1, "default": 30},
        "distance_threshold": {
            "oneOf": [{"type": "number", "minimum": 0, "maximum": 2}, {"type": "null"}],
            "default": 0.5,
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
        with limit_threads(threads):
            est = AgglomerativeClustering(n_clusters=c, linkage="ward", connectivity=conn)
            labels = est.fit_predict(features)
        return np.asarray(labels, dtype=np.int64)

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
