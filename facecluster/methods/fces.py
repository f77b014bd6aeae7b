"""FC-ES: neighbour-based edge probability, early-stopped links, Infomap (Liu, 2024;
jumptoliujj/FC-ESER, the unsupervised part).

For every kNN entry j of item i (k = 80, self included, descending cosine):

1. transition probabilities over i's list: ``P_i(m) = softmax_m(-d(i, m) / sigma)`` with
   ``d = 2 - 2 cos`` (cosines clipped to [0, 1]; sigma 0.5, so a softmax of ``4 cos``);
2. the neighbour-based edge probability ``NEP(i, j) = 1/2 sum_{m in N(i) & N(j)}
   (P_i(m) + P_j(m))``, over the items both lists hold (i and j themselves included when
   they are in each other's list); NEP is in [0, 1] and NEP(i, i) = 1;
3. early stopping: walking i's list in cosine order (self skipped), each j with
   ``NEP(i, j) >= theta`` (0.22) is a directed link i -> j of weight NEP, until the first
   j below theta; later neighbours are dropped even above theta;
4. two-level directed Infomap on those links (as :mod:`facecluster.methods.infomap`);
5. items that emitted no link are singletons. The reference overwrites their Infomap
   module with a fresh label even when other items link to them
   (``singleton_override: true``, the default, for fidelity); ``false`` keeps the module
   such an item was placed in by the links it receives.

Vectorised: NEP is O(N k^2). Rows are processed in chunks: each chunk writes the positions
of its own lists into a small position table (the ids its lists hold, compressed to
columns), gathers its neighbours' lists (m, k, k) and looks each entry up, so memory is
bounded by the chunk whatever N, and no Python loop runs per item or per pair.

Differences from the reference code, deliberate: Infomap's modules are read from the leaf
nodes (its tree iteration can overwrite node 0's label, pitfall 1 of
``newer-methods.md`` §1.5); the self entry is skipped by id wherever it sits (the reference
assumes position 0); an entry ``-1`` (fewer than k items) is a failing neighbour; Infomap's
seed is the config's (the reference: 123). FC-ESER's learned edge recall is not built (a
transformer over ~1e8 candidate pairs at MS1M scale).

Reference settings: MS1M k 80, sigma 0.5, theta 0.22 for part1 to part9 (the repository's
one value set); none published for DeepFashion or YTF. Published MS1M part9: pairwise F
88.75, BCubed F 87.23.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec
from . import infomap as _infomap

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "transition", "edge_probability", "early_stop", "cluster"]

#: gathered neighbour-list entries per chunk (m * k * k); about 30 bytes each
CHUNK_ENTRIES = 4_000_000

#: seconds of the last :func:`cluster` call by stage (benchmarks/methods.py prints them)
LAST_TIMINGS: dict[str, float] = {}


def estimate(
    n: int, dim: int, k: int, *, params: dict | None = None, threads: int = 1, **_
) -> Cost:
    """Peak memory and wall time of :func:`cluster` on ``n`` items with ``k`` neighbours.

    Memory: the process (100 MB), features, the kNN graph (8 bytes per entry), P and NEP
    (8 bytes per entry), a chunk's gathered lists (about 30 bytes per entry of
    ``CHUNK_ENTRIES``), and Infomap on at most ``n (k - 1)`` links (130 bytes per link, the
    Infomap family's estimate; early stopping keeps far fewer). Time: 25 ns per gathered
    entry (``n k^2``) for NEP, measured on this machine, plus Infomap's estimate.
    """
    params = params or {}
    base = _infomap.estimate(n, dim, k, params=params, threads=threads)
    nep_bytes = 8.0 * n * k + 30.0 * min(CHUNK_ENTRIES, n * k * k)
    return Cost(base.memory_bytes + nep_bytes, base.seconds + 25e-9 * n * k * k)


_INFOMAP_KEYS = ("two_level", "directed", "num_trials", "teleportation_probability", "markov_time")

SPEC = FamilySpec(
    summary="FC-ES: neighbour-based edge probability, early-stopped kNN links, Infomap "
    "(Liu 2024, FC-ESER without its learned edge recall)",
    conda_env="infomap",
    threads=2,
    params={
        "sigma": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.5,
            "description": "Temperature of the transition probabilities over a kNN list, on "
            "the squared distance 2 - 2 cos (0.5: a softmax of 4 cos).",
        },
        "theta": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.22,
            "description": "Early stop: links follow a list while NEP >= theta and stop at "
            "the first neighbour below it (0.22, the reference).",
        },
        "singleton_override": {
            "type": "boolean",
            "default": True,
            "description": "Items that emit no link get a label of their own even when "
            "others link to them (the reference); false keeps their Infomap module.",
        },
        **{key: _infomap.SPEC.params[key] for key in _INFOMAP_KEYS},
    },
    estimate=estimate,
)


def transition(knn: Knn, sigma: float = 0.5) -> np.ndarray:
    """``P`` float32 (N, k): softmax over each list of ``-(2 - 2 cos) / sigma`` with cosines
    clipped to [0, 1]; entries ``-1`` get 0."""
    valid = knn.nbrs >= 0
    cos = np.clip(knn.sims.astype(np.float64), 0.0, 1.0)
    # exp(-(2 - 2c)/sigma) = exp(2(c - 1)/sigma): the largest term is at most 1, no overflow
    w = np.where(valid, np.exp(2.0 * (cos - 1.0) / sigma), 0.0)
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0).astype(np.float32)


def edge_probability(knn: Knn, sigma: float = 0.5) -> np.ndarray:
    """``NEP`` float32 (N, k): NEP(i, j) for every entry j = nbrs[i, a] (0 where j = -1).

    Parameters
    ----------
    knn : kNN graph over N items; a row must not repeat an id (faiss results never do).
    sigma : temperature of the transition probabilities (:func:`transition`).
    """
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs
    P = transition(knn, sigma)
    nep = np.zeros((n, k), dtype=np.float32)
    dtype = np.uint8 if k < 255 else np.uint16 if k < 65535 else np.uint32
    rows_per_chunk = max(1, min(n, CHUNK_ENTRIES // (k * k)))
    width = min(n + 1, rows_per_chunk * k + 1)
    dense = width == n + 1
    table = np.zeros(rows_per_chunk * width, dtype=dtype)
    # compressed columns: id -> column of the chunk's table; the last column stays empty
    slot = None if dense else np.full(n + 1, width - 1, dtype=np.int64)
    col = np.broadcast_to(np.arange(1, k + 1, dtype=dtype), (rows_per_chunk, k))
    P_pad = np.vstack([P, np.zeros((1, k), dtype=np.float32)])  # row n: for entries -1
    nbrs_pad = np.vstack([nbrs, np.full((1, k), -1, dtype=nbrs.dtype)])
    progress = Progress(n, "fces: edge probabilities", unit="items", logger=log)
    for s in range(0, n, rows_per_chunk):
        e = min(n, s + rows_per_chunk)
        m = e - s
        lists = nbrs[s:e].astype(np.int64)
        valid = lists >= 0
        ids = np.where(valid, lists, n)
        if dense:
            cols = ids
        else:
            uniq = np.unique(lists[valid])
            slot[uniq] = np.arange(uniq.size)
            cols = slot[ids]
        own = (np.arange(m, dtype=np.int64) * width)[:, None] + cols  # (m, k)
        table[own[valid]] = col[:m][valid]  # position + 1 of each id in its row's list
        their = nbrs_pad[ids].astype(np.int64)  # (m, k, k): the neighbours' lists
        their = np.where(their >= 0, their, n)
        look = (slot[their] if not dense else their) + (np.arange(m) * width)[:, None, None]
        pos = table[look].astype(np.int64)  # (m, k, k): position + 1 in i's list, 0 if absent
        hit = pos > 0
        p_own = P[s:e]
        p_i = np.take_along_axis(
            p_own[:, None, :], np.maximum(pos - 1, 0), axis=2
        )  # P_i(m) of each shared item
        p_j = P_pad[ids]  # (m, k, k): P_j(m) of each of j's entries
        nep[s:e] = np.where(valid, 0.5 * np.sum(np.where(hit, p_i + p_j, 0.0), axis=2), 0.0)
        table[own[valid]] = 0
        if not dense:
            slot[uniq] = width - 1
        progress.update(m)
    progress.close()
    return nep


def early_stop(knn: Knn, nep: np.ndarray, theta: float) -> np.ndarray:
    """Links kept by the early stop: bool (N, k), True for each entry j != i of i's list
    that comes before i's first non-self neighbour with ``NEP < theta`` (an entry ``-1``
    fails) and has ``NEP >= theta``."""
    n = knn.n
    is_self = knn.nbrs == np.arange(n, dtype=knn.nbrs.dtype)[:, None]
    passing = ((nep >= theta) & (knn.nbrs >= 0)) | is_self
    return np.logical_and.accumulate(passing, axis=1) & ~is_self


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    sigma: float = 0.5,
    theta: float = 0.22,
    singleton_override: bool = True,
    two_level: bool = True,
    directed: bool = True,
    num_trials: int = 1,
    teleportation_probability: float = 0.15,
    markov_time: float = 1.0,
) -> np.ndarray:
    """Cluster with FC-ES.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graph carries the similarities).
    knn : kNN graph over the N items (self first, descending cosine).
    context : seeds Infomap (``max(1, seed)``) and sets its threads.
    sigma, theta, singleton_override : see the module docstring.
    two_level, directed, num_trials, teleportation_probability, markov_time : Infomap's
        settings (:func:`facecluster.methods.infomap.cluster`; the reference: two-level,
        directed, 1 trial, 0.15, 1).

    Returns
    -------
    labels : int64 (N,): Infomap modules, ``-1`` for singletons.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    t0 = time.perf_counter()
    nep = edge_probability(knn, sigma)
    t_nep = time.perf_counter()
    keep = early_stop(knn, nep, theta)
    links = _infomap.masked_links(knn.nbrs, keep, nep)
    emitted = keep.any(axis=1)
    del nep, keep
    t_links = time.perf_counter()
    log.info(
        "fces: %d links (%.1f per item), %d items emit none; NEP %.2f s, link selection %.2f s",
        len(links),
        len(links) / max(1, knn.n),
        int((~emitted).sum()),
        t_nep - t0,
        t_links - t_nep,
    )
    if len(links) == 0:
        labels = np.full(knn.n, -1, dtype=np.int64)
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
            name="fces",
        )
    if singleton_override:
        labels[~emitted] = -1
    timings = dict(_infomap.LAST_TIMINGS) if len(links) else {}
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(
        edge_score=t_nep - t0,
        link_selection=t_links - t_nep,
        infomap_build=timings.get("build", 0.0),
        infomap_optimise=timings.get("optimise", 0.0),
    )
    return labels
