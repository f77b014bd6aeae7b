"""Density peaks: GCN-V's peak linking driven by a label-free density confidence.

The training-free baseline of GCN-V: the same linking as GCN-V's first stage (every node
linked to its nearest kNN neighbour of strictly higher confidence, links with similarity
> ``tau_0`` kept, connected components; :func:`facecluster.methods.gcnv.confidence_to_peaks`
and :func:`facecluster.methods.gcnv.peaks_to_labels`), with the learned confidence replaced
by a density: each item's **mean cosine similarity to its k nearest neighbours, itself
excluded** (:func:`density_confidence`). It needs no labels and no training; it shows how much
of GCN-V's result a learned confidence adds over plain local density.
"""

from __future__ import annotations

import numpy as np

from ..io import Knn
from . import Clustering, Cost, FamilySpec
from .gcnv import confidence_to_peaks, peaks_to_labels

__all__ = ["SPEC", "density_confidence", "cluster", "estimate"]


def estimate(n: int, dim: int, k: int, **_) -> Cost:
    """Features (read), the kNN graph (12 bytes per edge) and a few (chunk, k) temporaries of
    the linking; about 0.05 microseconds per kNN edge."""
    return Cost(n * (4 * dim + 24 * k + 64), 5e-8 * n * k + 1e-6 * n)


SPEC = FamilySpec(
    summary="Density peaks: GCN-V's peak linking at tau_0 with the mean similarity to the k "
    "neighbours (self excluded) as a label-free confidence",
    thresholds={"tau_0": "similarity"},
    supervised=False,
    gpu=False,
    conda_env="eval",
    threads=1,
    params={
        "tau_0": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.65,
            "description": "Similarity cut of peak links on the feature kNN (GCN-V's tau_0).",
        },
    },
    estimate=estimate,
)


def density_confidence(knn: Knn, *, chunk: int = 65536) -> np.ndarray:
    """Mean similarity of each item to its kNN neighbours, itself and padding excluded.

    Parameters
    ----------
    knn : nbrs int32 (N, k), sims float32 (N, k) (cosine similarities).
    chunk : rows processed at once (memory O(chunk * k)).

    Returns
    -------
    density : float32 (N,), in [-1, 1]; 0 for an item without any other neighbour.
    """
    n = knn.n
    out = np.zeros(n, dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        nb = knn.nbrs[start:stop]
        keep = (nb >= 0) & (nb != np.arange(start, stop)[:, None])
        total = np.where(keep, knn.sims[start:stop], 0.0).sum(axis=1, dtype=np.float64)
        count = keep.sum(axis=1)
        out[start:stop] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return out


def cluster(
    features: np.ndarray, knn: Knn, *, context=None, model=None, tau_0: float = 0.65
) -> np.ndarray:
    """Cluster by linking every item to its nearest denser kNN neighbour.

    Parameters
    ----------
    features : float32 (N, D), unused (the kNN graph carries the similarities).
    knn : kNN graph of the features, rows sorted by descending similarity.
    tau_0 : links with similarity <= tau_0 are cut.

    Returns
    -------
    :class:`Clustering`: labels int64 (N,), connected components of the kept links (density
    maxima and unlinked items head their own clusters), and the density (N,) per item.
    """
    conf = density_confidence(knn)
    peaks, peak_sims = confidence_to_peaks(knn, conf)
    return Clustering(peaks_to_labels(peaks, peak_sims, tau_0), {"density": conf})
