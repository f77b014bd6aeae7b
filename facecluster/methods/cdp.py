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

SUPERVISED = False
#: the conda env (envs/<name>.yaml) of its rules
CONDA_ENV = "eval"
#: CDP runs on the CPU only
GPU = False


def memory_bytes(n: int, dim: int, k: int, *, train: bool = False, **params) -> int:
    """Peak bytes of :func:`cluster` on ``n`` items: features (read), the kNN graph, the
    thresholded pairs and their de-duplication (a few int64/float arrays per kNN edge)."""
    return int(n * (4 * dim + 48 * k))


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
