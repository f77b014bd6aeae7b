"""What a run tells a user who has no labels: cluster-size summaries, and warnings when a
threshold does not suit the embeddings' geometry.

Every published threshold (CDP ``th``, GCN-V ``tau_0``, Infomap ``min_sim``, ...) assumes
ArcFace-like features, where an impostor pair has cosine near 0. On other embeddings (dlib's
impostor cosine is about 0.85) a threshold of 0.7 keeps every kNN edge and the method chains
identities together, silently. :func:`threshold_warnings` compares each threshold a family
declares (``FamilySpec.thresholds``) with the similarities of the split's kNN graph.
"""

from __future__ import annotations

import numpy as np

from .io import Knn

__all__ = ["THRESHOLD_KINDS", "cluster_summary", "similarity_of", "threshold_warnings"]

#: how a family's threshold parameter maps to a cosine similarity s of unit vectors:
#: ``similarity`` (s itself), ``cosine_distance`` (1 - s), ``euclidean_distance``
#: (sqrt(2 - 2 s)); an edge is kept where s is at least the mapped value
THRESHOLD_KINDS = ("similarity", "cosine_distance", "euclidean_distance")

#: a threshold that keeps more than 1 - NEARLY_ALL or less than NEARLY_ALL of the kNN
#: edges is reported
NEARLY_ALL = 0.01

#: rows of the kNN graph sampled for the check (seeded: the same rows every run)
SAMPLE_ROWS = 100_000


def similarity_of(value: float, kind: str) -> float:
    """The cosine similarity at which a threshold ``value`` of ``kind`` cuts."""
    if kind == "similarity":
        return float(value)
    if kind == "cosine_distance":
        return 1.0 - float(value)
    if kind == "euclidean_distance":
        return 1.0 - float(value) ** 2 / 2.0
    raise ValueError(f"unknown threshold kind {kind!r} (known: {', '.join(THRESHOLD_KINDS)})")


def _neighbour_sims(knn: Knn, sample_rows: int) -> np.ndarray:
    """Similarities of the kNN entries that are real neighbours (not self, not padding) of
    up to ``sample_rows`` rows, float64 (M,)."""
    rows = np.arange(knn.n)
    if knn.n > sample_rows:
        rows = np.sort(np.random.default_rng(0).choice(knn.n, sample_rows, replace=False))
    nbrs, sims = knn.nbrs[rows], knn.sims[rows]
    real = (nbrs >= 0) & (nbrs != rows[:, None])
    return sims[real].astype(np.float64)


def threshold_warnings(
    knn: Knn,
    params: dict,
    thresholds: dict[str, str],
    *,
    method: str,
    sample_rows: int = SAMPLE_ROWS,
) -> list[str]:
    """Warnings for thresholds that keep or cut nearly all kNN edges.

    Parameters
    ----------
    knn : the split's kNN graph at the method's k.
    params : the variant's parameters (defaults filled in).
    thresholds : ``FamilySpec.thresholds``: parameter name -> kind (:data:`THRESHOLD_KINDS`).
    method : the variant's name, for the message.

    Returns
    -------
    One line per threshold that keeps more than 99 % or less than 1 % of the (sampled)
    neighbour entries, naming the method, the threshold, the share it keeps and the 1st,
    50th and 99th percentiles of the neighbour similarities; empty when all suit.
    """
    present = {p: kind for p, kind in thresholds.items() if params.get(p) is not None}
    if not present:
        return []
    sims = _neighbour_sims(knn, sample_rows)
    if not sims.size:
        return []
    q1, q50, q99 = np.percentile(sims, [1, 50, 99])
    out = []
    for param, kind in present.items():
        cut = similarity_of(params[param], kind)
        kept = float(np.mean(sims >= cut))
        if NEARLY_ALL <= kept <= 1 - NEARLY_ALL:
            continue
        what = "keeps" if kept > 1 - NEARLY_ALL else "cuts"
        share = kept if what == "keeps" else 1 - kept
        at = "" if kind == "similarity" else f" (cosine {cut:.3f})"
        out.append(
            f"{method}: {param} {params[param]}{at} {what} {share:.1%} of the kNN edges "
            f"(k={knn.k}; neighbour cosine 1/50/99th percentiles {q1:.3f} / {q50:.3f} / "
            f"{q99:.3f}): the threshold assumes ArcFace-like geometry (impostor cosine near "
            f"0); calibrate it on a labelled split or try `normalise: centre`"
        )
    return out


def cluster_summary(labels: np.ndarray) -> dict:
    """Cluster-size statistics of a labelling (int (N,), ``-1`` = unassigned, counted as
    singletons): clusters, singletons (count and share of items), the 50/90/99th
    percentiles of cluster sizes, and the largest cluster (size and share of items)."""
    labels = np.asarray(labels)
    n = int(labels.size)
    if n == 0:
        return {"n_items": 0, "n_clusters": 0, "n_singletons": 0}
    assigned = labels[labels >= 0]
    _, sizes = np.unique(assigned, return_counts=True)
    sizes = np.concatenate([sizes, np.ones(n - assigned.size, dtype=sizes.dtype)])
    p50, p90, p99 = np.percentile(sizes, [50, 90, 99])
    singletons = int(np.count_nonzero(sizes == 1))
    return {
        "n_items": n,
        "n_clusters": int(sizes.size),
        "n_singletons": singletons,
        "singleton_share": singletons / n,
        "size_p50": float(p50),
        "size_p90": float(p90),
        "size_p99": float(p99),
        "largest_cluster": int(sizes.max()),
        "largest_share": float(sizes.max()) / n,
    }
