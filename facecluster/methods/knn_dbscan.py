"""KNN-DBSCAN: scikit-learn's DBSCAN on the sparse kNN distance graph (learn-to-cluster).

learn-to-cluster's ``knn_dbscan`` builds a CSR matrix of the kNN cosine *distances*
``1 - sim`` (``fast_knns2spmat(use_sim=False)``, self dropped) and runs
``DBSCAN(eps, min_samples, metric='precomputed')``. scikit-learn treats only the stored
entries of a sparse precomputed matrix as candidate neighbours, so item i's
eps-neighbourhood is {i} plus the entries of *i's own* kNN list with distance <= eps (the
graph is directed: j may count for i and not i for j); a point counts itself towards
``min_samples`` (DBSCAN stores the diagonal explicitly). Items that are neither core nor
within eps of a core item are noise (-1).

Differences from the reference: entries are kept where the *similarity* is >= ``th``
(learn-to-cluster compares its ``th_sim`` with the distance when ``use_sim=False``; with its
default 0 both keep every entry); only entries with distance <= eps matter, so ``th`` has an
effect only when ``th > 1 - eps``. Distances are computed in float64 and clipped at 0
(rounding can put a similarity a hair above 1, and scikit-learn rejects negative
precomputed distances); zero distances (duplicates) stay stored, so they are neighbours.

Reference settings (learn-to-cluster): MS1M k 80, eps 0.25, min_samples 1 (the README says
th 0.7, the script uses 0); YTF k 160, eps 0.3, min_samples 1; DeepFashion k 4, eps 0.1,
min_samples 2.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..io import Knn
from . import Cost, FamilySpec


def estimate(n: int, dim: int, k: int, **_) -> Cost:
    """Peak memory of the job: features and kNN graph, the distance CSR built through int64
    COO arrays, scikit-learn's copy and neighbourhood arrays (at most k entries per item):
    about 70 bytes per kNN entry, plus the interpreter with scikit-learn (measured peak RSS:
    294 MB at 20K items, 564 MB at 60K, d 256, k 80, eps 0.25). Time: about 0.2
    microsecond per kNN entry plus 3 microseconds per item (measured 0.33 s at 20K, 1.6 s
    at 60K)."""
    return Cost(n * 4 * dim + 78.0 * n * k + 2e8, 1.0 + 2e-7 * n * k + 3e-6 * n)


SPEC = FamilySpec(
    summary="KNN-DBSCAN: scikit-learn DBSCAN on the sparse kNN cosine-distance graph, "
    "learn-to-cluster baseline",
    thresholds={"eps": "cosine_distance"},
    params={
        "th": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.0,
            "description": "Keep kNN entries with cosine similarity >= th.",
        },
        "eps": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 2,
            "default": 0.25,
            "description": "Neighbourhood radius in cosine distance 1 - similarity.",
        },
        "min_samples": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Neighbourhood size (the item itself included) of a core item.",
        },
    },
    threads=1,
    estimate=estimate,
)


def distance_graph(knn: Knn, th: float = 0.0, max_dist: float = np.inf) -> sp.csr_matrix:
    """CSR (N, N) float64 of kNN distances ``max(0, 1 - sim)`` for entries j != i with
    sim >= ``th`` and distance <= ``max_dist`` (explicit zeros kept).

    Each row keeps the kNN order (ascending distance), which is what scikit-learn's
    precomputed neighbourhoods want: a graph sorted by value is used as it is, an unsorted
    one is re-sorted with an ``EfficiencyWarning``."""
    n, k = knn.nbrs.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn.nbrs.reshape(-1).astype(np.int64)
    sims = knn.sims.reshape(-1).astype(np.float64)
    dist = np.maximum(1.0 - sims, 0.0)
    keep = (cols >= 0) & (cols != rows) & (sims >= th) & (dist <= max_dist)
    rows, cols, dist = rows[keep], cols[keep], dist[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_matrix((dist, cols, indptr), shape=(n, n))


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    th: float = 0.0,
    eps: float = 0.25,
    min_samples: int = 1,
) -> np.ndarray:
    """Cluster with DBSCAN on the sparse kNN cosine-distance graph.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graph carries the distances).
    knn : kNN graph over the N items (self first); the method's k is the graph's k.
    context : :class:`facecluster.methods.Context`; ``context.threads`` sets ``n_jobs``.
    th : keep kNN entries with cosine similarity >= th.
    eps : neighbourhood radius in cosine distance ``1 - sim``.
    min_samples : neighbourhood size (the item itself included) of a core item.

    Returns
    -------
    labels : int64 (N,), -1 for noise.
    """
    from sklearn.cluster import DBSCAN

    if not -1.0 <= th <= 1.0:
        raise ValueError(f"th must be in [-1, 1], got {th}")
    if not 0.0 < eps <= 2.0:
        raise ValueError(f"eps must be in (0, 2] (a cosine distance), got {eps}")
    if int(min_samples) != min_samples or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples}")
    threads = context.threads if context is not None else 1
    # entries farther than eps are never neighbours: dropping them first gives the same
    # clustering and spares DBSCAN the scan of every kNN entry
    graph = distance_graph(knn, th, max_dist=eps)
    db = DBSCAN(eps=eps, min_samples=int(min_samples), metric="precomputed", n_jobs=threads)
    return db.fit_predict(graph).astype(np.int64)
