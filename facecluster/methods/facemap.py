"""FaceMap: Infomap on an adaptively cut neighbour list (Yu et al., arXiv 2203.10090;
bd-if/FaceMap).

Instead of a global similarity threshold, each item cuts its own list where its transition
probabilities stop falling like an identity's and start falling like the background's:

1. the K nearest neighbours of i, self excluded (the variant's ``k`` is K + 1: the kNN list
   holds i itself first), with cosines ``s(i, r)`` clipped at 0;
2. transition probabilities ``p_i(r) = s(i, r) / sum_r s(i, r)`` (not exponentiated);
3. first differences ``D_i(r) = p_i(r) - p_i(r + 1)``, r = 0..K-2;
4. for every window start j = 0..K-1-w (w = ``window``, 20): the mean of D_i over the
   window [j, j + w) against the mean and standard deviation (ddof 0) of D_i over [j, end):
   ``z_i(j + floor((w + 1) / 2)) = |mean_test - mean_ref| / std_ref`` (0 where std_ref is
   0, and at positions no window reaches); the cut ``q_i`` is the first argmax of z_i;
5. links i -> (r-th neighbour) for r = 0..q_i with weight p_i(r) (not renormalised),
   two-level **undirected** Infomap;
6. items that Infomap did not place (no link in either direction) are singletons; items
   that only receive links keep their module (unlike FC-ES and the Infomap baseline).

Vectorised with cumulative sums: the window means and the suffix means and variances of
every start come from two prefix sums per row (O(N K) instead of the reference's
O(N K^2) loop), in float64, in row chunks.

Differences from the reference code, deliberate: modules come from Infomap's leaf nodes
(the reference's 1.x tree trimming), a zero standard deviation scores 0 instead of
inf/NaN, negative cosines are clipped so that no probability is negative, and Infomap's
seed is the config's (the reference: 100). Reference settings: K 256, w 20 on MS1M and on
CASIA/VGGFace2; none published for DeepFashion or YTF. Published MS1M pairwise / BCubed F:
part1 94.24 / 92.55, part9 86.37 / 86.29.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec
from . import infomap as _infomap

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "neighbour_lists", "adaptive_cut", "cluster"]

#: rows per chunk of the cut's float64 work arrays (a few (rows, K) arrays)
CHUNK_ROWS = 16384

#: seconds of the last :func:`cluster` call by stage
LAST_TIMINGS: dict[str, float] = {}


def estimate(
    n: int, dim: int, k: int, *, params: dict | None = None, threads: int = 1, **_
) -> Cost:
    """Peak memory and wall time of :func:`cluster`: Infomap's estimate on at most
    ``n (k - 1)`` links (an adaptive cut keeps fewer), the lists without self (12 bytes
    per entry), the cut's chunk work arrays (six float64 (CHUNK_ROWS, k) arrays), and
    30 ns per list entry for the cut."""
    params = params or {}
    base = _infomap.estimate(n, dim, k, params=params, threads=threads)
    extra = 12.0 * n * k + 48.0 * min(n, CHUNK_ROWS) * k
    return Cost(base.memory_bytes + extra, base.seconds + 30e-9 * n * k)


_INFOMAP_KEYS = ("two_level", "num_trials", "teleportation_probability", "markov_time")

SPEC = FamilySpec(
    summary="FaceMap: Infomap on kNN lists cut per item where the transition "
    "probabilities turn to background (Yu et al. 2022)",
    conda_env="infomap",
    threads=2,
    params={
        "window": {
            "type": "integer",
            "minimum": 2,
            "default": 20,
            "description": "Window of the outlier test on the probability differences "
            "(omega, 20); must be below K - 1.",
        },
        "directed": {
            "type": "boolean",
            "default": False,
            "description": "Directed flow model; FaceMap uses undirected flow (false).",
        },
        **{key: _infomap.SPEC.params[key] for key in _INFOMAP_KEYS},
    },
    estimate=estimate,
)


def neighbour_lists(knn: Knn) -> tuple[np.ndarray, np.ndarray]:
    """The lists without self: (nbrs int64 (N, k-1), sims float32 (N, k-1)), in the kNN's
    order. The self entry is dropped wherever it sits; a row without it loses its last
    entry instead."""
    n, k = knn.nbrs.shape
    is_self = knn.nbrs == np.arange(n, dtype=knn.nbrs.dtype)[:, None]
    if is_self[:, 0].all():
        return knn.nbrs[:, 1:].astype(np.int64), knn.sims[:, 1:].astype(np.float32)
    order = np.argsort(is_self, axis=1, kind="stable")[:, : k - 1]  # non-self first
    nbrs = np.take_along_axis(knn.nbrs, order, axis=1).astype(np.int64)
    sims = np.take_along_axis(knn.sims, order, axis=1).astype(np.float32)
    return nbrs, sims


def adaptive_cut(sims: np.ndarray, valid: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cut and transition probabilities.

    Parameters
    ----------
    sims : float (N, K) cosines of the K neighbours (self excluded), descending.
    valid : bool (N, K), False for missing entries (their similarity counts as 0).
    window : the outlier test's window w, 2 <= w <= K - 2.

    Returns
    -------
    cut : int64 (N,), q_i: the neighbours at ranks 0..q_i are linked.
    p : float32 (N, K), the transition probabilities p_i(r).
    """
    n, K = sims.shape
    L = K - 1  # number of differences
    if not 2 <= window <= L - 1:
        raise ValueError(f"window must be in [2, K - 2] = [2, {K - 2}], got {window}")
    cut = np.zeros(n, dtype=np.int64)
    p_all = np.zeros((n, K), dtype=np.float32)
    starts = np.arange(0, L - window + 1)
    centre = starts + (window + 1) // 2
    count = (L - starts).astype(np.float64)
    for s in range(0, n, CHUNK_ROWS):
        e = min(n, s + CHUNK_ROWS)
        w = np.where(valid[s:e], np.clip(sims[s:e].astype(np.float64), 0.0, None), 0.0)
        total = w.sum(axis=1, keepdims=True)
        p = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        p_all[s:e] = p
        delta = p[:, :-1] - p[:, 1:]  # (m, L)
        c1 = np.concatenate([np.zeros((e - s, 1)), np.cumsum(delta, axis=1)], axis=1)
        c2 = np.concatenate([np.zeros((e - s, 1)), np.cumsum(delta * delta, axis=1)], axis=1)
        test = (c1[:, starts + window] - c1[:, starts]) / window
        ref = (c1[:, L : L + 1] - c1[:, starts]) / count
        var = (c2[:, L : L + 1] - c2[:, starts]) / count - ref * ref
        std = np.sqrt(np.maximum(var, 0.0))
        # a flat tail has std 0 (the reference divides by it: inf/NaN); rounding leaves
        # ~1e-18 where it is exactly 0, so compare with the scale of the probabilities
        flat = std <= 1e-12 * np.maximum(np.abs(ref), 1.0 / K)
        z = np.zeros((e - s, L))
        z[:, centre] = np.where(flat, 0.0, np.abs(test - ref) / np.where(flat, 1.0, std))
        cut[s:e] = z.argmax(axis=1)
    return cut, p_all


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    window: int = 20,
    directed: bool = False,
    two_level: bool = True,
    num_trials: int = 1,
    teleportation_probability: float = 0.15,
    markov_time: float = 1.0,
) -> np.ndarray:
    """Cluster with FaceMap.

    Parameters
    ----------
    features : float32 (N, D); unused.
    knn : kNN graph over the N items with k = K + 1 (self first, descending cosine).
    context : seeds Infomap (``max(1, seed)``) and sets its threads.
    window : the outlier test's window (omega).
    directed, two_level, num_trials, teleportation_probability, markov_time : Infomap's
        settings (FaceMap: undirected, two-level, 1 trial).

    Returns
    -------
    labels : int64 (N,): Infomap modules, ``-1`` for items outside the network.
    """
    t0 = time.perf_counter()
    nbrs, sims = neighbour_lists(knn)
    valid = nbrs >= 0
    cut, p = adaptive_cut(sims, valid, window)
    keep = (np.arange(nbrs.shape[1])[None, :] <= cut[:, None]) & valid & (p > 0)
    links = _infomap.masked_links(nbrs, keep, p)
    del keep, p, sims, nbrs
    t_links = time.perf_counter()
    log.info(
        "facemap: %d links (%.1f per item; cut quantiles 10/50/90 %%: %s); cut %.2f s",
        len(links),
        len(links) / max(1, knn.n),
        np.percentile(cut + 1, [10, 50, 90]).tolist() if cut.size else [],
        t_links - t0,
    )
    if len(links) == 0:
        labels = np.full(knn.n, -1, dtype=np.int64)
        timings = {}
    else:
        labels = _infomap.run_infomap(
            links,
            knn.n,
            context=context,
            two_level=two_level,
            directed=directed,
            num_trials=num_trials,
            teleportation_probability=teleportation_probability,
            markov_time=markov_time,
            name="facemap",
        )
        timings = dict(_infomap.LAST_TIMINGS)
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(
        edge_score=t_links - t0,
        infomap_build=timings.get("build", 0.0),
        infomap_optimise=timings.get("optimise", 0.0),
    )
    return labels
