"""CDP, single model (Zhan et al., ECCV 2018): pair selection + size-capped propagation.

With an empty committee CDP's "vote" strategy keeps every kNN pair (i, j), j != i, whose
cosine similarity is strictly above ``th``; pairs are de-duplicated as undirected pairs
keeping the score of their first occurrence, and turned into clusters by
:func:`facecluster.graph.propagate` (components, then components larger than ``max_sz``
re-split with a rising threshold). Items in no pair are discarded (-1).

Reference settings: CDP's released configs use k=15, max_sz=600, step=0.05; the MS1M row of
the learn-to-cluster tables is "single model, th=0.7".
"""

from __future__ import annotations

import numpy as np

from ..graph import knn_pairs, propagate, unique_pairs
from ..io import Knn
from . import Cost, FamilySpec

#: the parameters of CDP's size-capped propagation, shared by the CDP families
PROPAGATION_PARAMS = {
    "max_sz": {
        "type": "integer",
        "minimum": 1,
        "default": 600,
        "description": "Largest cluster size accepted; larger components are re-split.",
    },
    "step": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1,
        "default": 0.05,
        "description": "Each re-split pass raises the threshold by th <- th + (1 - th) * step.",
    },
    "max_iter": {
        "type": "integer",
        "minimum": 0,
        "default": 100,
        "description": "Re-split passes; after them the remaining nodes form one cluster.",
    },
}


def estimate(n: int, dim: int, k: int, **_) -> Cost:
    """Features (read), the kNN graph, the thresholded pairs and their de-duplication (a
    few int64/float arrays per kNN edge); about 0.3 microseconds per kNN edge."""
    return Cost(n * (4 * dim + 48 * k), 3e-7 * n * k)


SPEC = FamilySpec(
    summary="CDP single model (Zhan et al., ECCV 2018): kNN pairs above th, size-capped "
    "propagation",
    thresholds={"th": "similarity"},
    params={
        "th": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.7,
            "description": "Pair threshold (strict); 0.7 is MS1M's single-model setting.",
        },
        **PROPAGATION_PARAMS,
    },
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    th: float = 0.7,
    max_sz: int = 600,
    step: float = 0.05,
    max_iter: int = 100,
) -> np.ndarray:
    """Cluster with CDP single-model propagation.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graph carries everything CDP needs).
    knn : kNN graph over the N items.
    th : similarity threshold for a pair (strict).
    max_sz : largest cluster size before re-splitting.
    step : threshold step fraction of the re-splitting passes.
    max_iter : re-splitting passes before the rest is merged.

    Returns
    -------
    labels : int64 (N,), -1 for discarded items.
    """
    pairs, scores = knn_pairs(knn, th, strict=True)
    pairs, scores = unique_pairs(pairs, scores, pool="first")
    return propagate(knn.n, pairs, scores, max_sz=max_sz, step=step, max_iter=max_iter)
