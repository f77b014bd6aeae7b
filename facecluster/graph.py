"""The graph layer every method shares: kNN -> sparse affinity, pairs, components, propagation.

All functions are vectorised over edges (numpy, scipy.sparse, scipy.sparse.csgraph).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from .io import Knn

log = logging.getLogger(__name__)

__all__ = [
    "knn_to_csr",
    "symmetric_normalized_adjacency",
    "adjacency_rows",
    "knn_pairs",
    "unique_pairs",
    "components",
    "propagate",
    "finalize_labels",
]


def knn_to_csr(knn: Knn, th_sim: float = 0.0, *, drop_self: bool = True) -> sp.csr_matrix:
    """Directed kNN affinity: A[i, j] = sim(i, j) for j in kNN(i) with sim >= ``th_sim``.

    Parameters
    ----------
    knn : graph with N rows.
    th_sim : keep entries with similarity >= th_sim (learn-to-cluster's ``fast_knns2spmat``).
    drop_self : drop i -> i entries.

    Returns
    -------
    csr_matrix of float32, shape (N, N), int32 indices where they fit.
    """
    n, k = knn.nbrs.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn.nbrs.reshape(-1).astype(np.int64)
    vals = knn.sims.reshape(-1)
    keep = (cols >= 0) & (vals >= th_sim)
    if drop_self:
        keep &= cols != rows
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)


def symmetric_normalized_adjacency(knn: Knn, th_sim: float = 0.0) -> sp.csr_matrix:
    """GCN adjacency of learn-to-cluster: max(A, A^T) + I, then row-normalised (D^-1 A).

    Returns a float32 CSR matrix (N, N) whose rows sum to 1.
    """
    a = knn_to_csr(knn, th_sim)
    a = a.maximum(a.T).tocsr()
    a = (a + sp.identity(a.shape[0], dtype=np.float32, format="csr")).tocsr()
    deg = np.asarray(a.sum(axis=1)).ravel()
    deg[deg <= 0] = 1.0
    a = sp.diags((1.0 / deg).astype(np.float32)) @ a
    a = a.astype(np.float32).tocsr()
    a.sort_indices()
    return a


def adjacency_rows(
    knn: Knn, rows: np.ndarray, th_sim: float = 0.0, *, scan_rows: int = 1 << 20
) -> sp.csr_matrix:
    """Rows ``rows`` of :func:`symmetric_normalized_adjacency` without building the whole
    matrix: memory O(len(rows) * k) beyond the kNN graph, for GCN inference in chunks.

    Row i of max(A, A^T) + I holds i's own kNN entries (row i of A) and the entries of the
    nodes that have i among their neighbours (column i of A), found by a scan of the kNN
    graph in blocks of ``scan_rows`` rows; both are placed, maxed, summed and normalised
    exactly as the whole-matrix function does, so the values are the same bits.

    Parameters
    ----------
    knn : graph with N rows.  rows : sorted, distinct int row indices (m,).
    th_sim : keep kNN entries with similarity >= th_sim (as :func:`knn_to_csr`).

    Returns
    -------
    float32 CSR matrix (m, N), sorted indices, each row summing to 1.
    """
    n, k = knn.nbrs.shape
    rows = np.asarray(rows, dtype=np.int64)
    m = rows.size
    first = int(rows[0]) if m else 0
    contiguous = m > 0 and int(rows[-1]) - first + 1 == m
    if not contiguous:  # node -> its position in rows (a range needs only a subtraction)
        local = np.full(n, -1, dtype=np.int64 if m >= 2**31 else np.int32)
        local[rows] = np.arange(m)
    # row i of A: i's own entries
    own = knn.nbrs[rows].astype(np.int64)
    vals = knn.sims[rows]
    keep = (own >= 0) & (vals >= th_sim) & (own != rows[:, None])
    r = np.broadcast_to(np.arange(m)[:, None], own.shape)[keep]
    direct = sp.csr_matrix((vals[keep], (r, own[keep])), shape=(m, n), dtype=np.float32)
    # column i of A: the nodes j with i in kNN(j), entry (i, j) = A[j, i]
    r_parts, c_parts, v_parts = [], [], []
    for start in range(0, n, scan_rows):
        nb = knn.nbrs[start : start + scan_rows]
        if contiguous:
            hit = (nb >= first) & (nb < first + m)
        else:
            hit = local[np.where(nb >= 0, nb, 0)] >= 0
            hit &= nb >= 0
        i, j = np.nonzero(hit)
        sims = knn.sims[start + i, j]
        dst = nb[i, j].astype(np.int64)
        keep = (sims >= th_sim) & (dst != i + start)
        i, dst, sims = i[keep], dst[keep], sims[keep]
        r_parts.append(dst - first if contiguous else local[dst].astype(np.int64))
        c_parts.append(i.astype(np.int64) + start)
        v_parts.append(sims)
    reverse = sp.csr_matrix(
        (np.concatenate(v_parts), (np.concatenate(r_parts), np.concatenate(c_parts))),
        shape=(m, n),
        dtype=np.float32,
    )
    a = direct.maximum(reverse).tocsr()
    eye = sp.csr_matrix(
        (np.ones(m, dtype=np.float32), (np.arange(m), rows)), shape=(m, n), dtype=np.float32
    )
    a = (a + eye).tocsr()
    deg = np.asarray(a.sum(axis=1)).ravel()
    deg[deg <= 0] = 1.0
    a = sp.diags((1.0 / deg).astype(np.float32)) @ a
    a = a.astype(np.float32).tocsr()
    a.sort_indices()
    return a


def knn_pairs(knn: Knn, th_sim: float, *, strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All directed kNN edges i -> j (j != i, j != -1) with sim > th_sim (or >= if not strict).

    Returns ``pairs`` int64 (E, 2) in row-major kNN order and ``scores`` float32 (E,).
    """
    n, k = knn.nbrs.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn.nbrs.reshape(-1).astype(np.int64)
    vals = knn.sims.reshape(-1)
    above = vals > th_sim if strict else vals >= th_sim
    keep = above & (cols >= 0) & (cols != rows)
    return np.stack([rows[keep], cols[keep]], axis=1), vals[keep]


def unique_pairs(
    pairs: np.ndarray, scores: np.ndarray, *, pool: str = "first"
) -> tuple[np.ndarray, np.ndarray]:
    """Undirected de-duplication: sort each pair to (min, max) and keep one per pair.

    Parameters
    ----------
    pairs : int (E, 2).  scores : float (E,).
    pool : ``"first"`` keeps the score of the first occurrence (CDP, GCN-D proposals),
        ``"avg"`` averages duplicates (L-GCN), ``"max"`` keeps the largest.

    Returns ``pairs`` int64 (U, 2) sorted lexicographically and ``scores`` float32 (U,).
    """
    if pairs.size == 0:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float32)
    lo = np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    hi = np.maximum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    n = int(hi.max()) + 1
    code = lo * n + hi
    uniq, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    if pool == "first":
        out = scores[first]
    elif pool == "avg":
        out = np.bincount(inverse, weights=scores) / np.bincount(inverse)
    elif pool == "max":
        out = np.full(uniq.size, -np.inf)
        np.maximum.at(out, inverse, scores)
    else:
        raise ValueError(f"unknown pool {pool!r}; use 'first', 'avg' or 'max'")
    return np.stack([uniq // n, uniq % n], axis=1), out.astype(np.float32)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component labels (N,) int64 of the undirected graph with edges src-dst."""
    g = sp.csr_matrix(
        (np.ones(src.size, dtype=np.int8), (src.astype(np.int64), dst.astype(np.int64))),
        shape=(n, n),
    )
    _, labels = csgraph.connected_components(g, directed=False)
    return labels.astype(np.int64)


def propagate(
    n: int,
    pairs: np.ndarray,
    scores: np.ndarray,
    *,
    max_sz: int,
    step: float,
    max_iter: int = 100,
) -> np.ndarray:
    """Size-capped pair-to-cluster propagation (CDP's ``graph_propagation``).

    Pass 0 takes the connected components of all pairs; components of at most ``max_sz``
    nodes are final, the others "remain". Each later pass raises the threshold
    ``th <- th + (1 - th) * step`` (starting from the minimum score) and re-splits the
    remaining nodes using only edges with score >= th among them; components of at most
    ``max_sz`` become final. After ``max_iter`` passes, what remains becomes one cluster.

    The reference's BFS may follow edges out of the remaining set; those edges only reach
    finalised components, which are closed under every edge of score >= the earlier
    threshold, so restricting each pass to edges inside the remaining set gives the same
    components.

    Parameters
    ----------
    n : number of items.
    pairs : int (E, 2) undirected edges (any orientation, duplicates allowed).
    scores : float (E,) edge scores.
    max_sz : largest cluster size accepted.
    step : threshold step fraction in (0, 1].
    max_iter : passes after the first.

    Returns
    -------
    labels : int64 (N,), ``-1`` for items that appear in no pair.
    """
    labels = np.full(n, -1, dtype=np.int64)
    if pairs.size == 0:
        return labels
    src = pairs[:, 0].astype(np.int64)
    dst = pairs[:, 1].astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    remain = np.zeros(n, dtype=bool)
    remain[src] = True
    remain[dst] = True
    th = float(scores.min())
    next_label = 0
    for it in range(max_iter + 1):
        if it > 0:
            th = th + (1.0 - th) * step
            keep = remain[src] & remain[dst] & (scores >= th)
            src, dst, scores = src[keep], dst[keep], scores[keep]
        comp = components(n, src, dst)
        nodes = np.flatnonzero(remain)
        comp_of = comp[nodes]
        _, inv, sizes = np.unique(comp_of, return_inverse=True, return_counts=True)
        final = sizes[inv] <= max_sz
        done = nodes[final]
        # new labels for the final components, numbered in order of their first member
        _, first_inv = np.unique(comp_of[final], return_inverse=True)
        labels[done] = next_label + first_inv
        next_label += int(first_inv.max()) + 1 if done.size else 0
        remain[done] = False
        if not remain.any():
            return labels
        if it == 0:
            keep = remain[src] & remain[dst]
            src, dst, scores = src[keep], dst[keep], scores[keep]
    left = np.flatnonzero(remain)
    log.warning(
        "propagate: %d items still in components above max_sz=%d after %d passes; "
        "merged into one cluster",
        left.size,
        max_sz,
        max_iter,
    )
    labels[left] = next_label
    return labels


def finalize_labels(labels: np.ndarray) -> np.ndarray:
    """Turn discarded items (label -1) into singletons and renumber clusters 0..C-1.

    Clusters are numbered in order of first appearance by item index (learn-to-cluster's
    ``write_meta``). Returns int64 (N,).
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    missing = labels < 0
    if missing.any():
        base = labels.max() + 1 if (~missing).any() else 0
        labels[missing] = base + np.arange(int(missing.sum()))
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse]
