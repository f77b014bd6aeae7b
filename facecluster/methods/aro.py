"""Approximate Rank-Order clustering (Otto, Wang and Jain, 2018) on the kNN graph.

learn-to-cluster's ``knn_aro`` (a port of varun-suresh/Clustering, also CDP's
``approx_rank_order`` baseline). Let ``L_i`` be i's kNN list (positions 0..k-1, self at
position 0). For every neighbour j of i at position ``O_i`` (1..k-1):

* ``b`` = the position of i in ``L_j``; if i is not in ``L_j`` the pair is not plausible
  (the reference gives it D = 9999);
* ``O_j = b + 1``;
* ``d_ij = |L_i[0:O_i] \\ L_j|``: i's entries *before* j (positions 0..O_i-1, self included,
  j excluded) that are not anywhere in j's list;
* ``d_ji = |L_j[0:O_j] \\ L_i|``: j's entries at positions 0..b, i.e. up to and *including*
  i, that are not in i's list;
* ``D = (d_ij + d_ji) / min(O_i, O_j)``.

This is our reading of the reference code (``f1[0:Oi]`` with ``Oi = idx + 1`` over
``f1[1:]``, and ``nbr[0:Oj]`` with ``Oj = position + 1``): the two slices are asymmetric by
one. The extra element of ``d_ji`` is i itself, which is in ``L_i`` whenever i is in its own
list, so it only shifts the denominator: ``D(i->j)`` and ``D(j->i)`` share a numerator but
divide by ``min(O_i, b + 1)`` and ``min(b, O_i + 1)``. A link i - j is plausible when
``D <= 1 - th`` in either direction (the reference collects plausible neighbours per row and
takes connected components of them as an undirected graph). Clusters are those connected
components; items with no plausible link are singletons (no item is discarded).

Vectorised: the numerator is computed once per directed mutual pair as
``d(i -> j) = O_i - #{x in L_j : position of x in L_i < O_i}`` by gathering j's list and
looking each entry up in a dense position table of i's list (chunks of rows bound the
memory); then ``d_ji`` of (i, j) is ``d(j -> i)`` of the reverse pair (plus one if i is not
in its own list). Lists are sets: entries ``-1`` (padding, at the end of a row) are ignored
and a row must not repeat an index (faiss results never do).

Reference settings (learn-to-cluster): th 0 on MS1M (k 80), YTF (k 200), DeepFashion (k 10).
CDP's script states its threshold on D directly (D <= 2, 10 or 100): ``th = 1 - that``.
"""

from __future__ import annotations

import logging

import numpy as np

from ..graph import components
from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

#: gathered list entries per chunk (bounds the chunk buffers to about 20 bytes each)
CHUNK_ENTRIES = 1 << 22


def estimate(n: int, dim: int, k: int, **_) -> Cost:
    """Peak memory of the job: features and kNN graph, the position lookups and per-pair
    arrays (about 60 bytes per kNN entry), the chunk buffers (about 120 MB) and the
    interpreter (measured peak RSS: 314 MB at 20K items, 562 MB at 60K, d 256, k 80).
    Time: the list scan is O(N k^2), about 10 ns per gathered entry (measured 1.3 s at 20K,
    3.7 s at 60K, k 80)."""
    return Cost(n * 4 * dim + 68.0 * n * k + 2.5e8, 1.0 + 1e-8 * n * k * k)


SPEC = FamilySpec(
    summary="Approximate Rank-Order (Otto et al. 2018) on the kNN graph, learn-to-cluster knn_aro",
    params={
        "th": {
            "type": "number",
            "minimum": -1000,
            "maximum": 1,
            "default": 0.0,
            "description": "Links with rank-order distance D <= 1 - th are plausible.",
        },
    },
    estimate=estimate,
)


def _positions(knn: Knn) -> tuple[np.ndarray, np.ndarray]:
    """``b`` (N, k): the position of i in the list of ``nbrs[i, a]`` (-1 if absent or if
    the entry is padding), and ``self_pos`` (N,): i's position in its own list (-1 if
    absent)."""
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs.astype(np.int64)
    order = np.argsort(nbrs, axis=1, kind="stable")
    ids = np.take_along_axis(nbrs, order, axis=1)
    # keys row * (n + 1) + id + 1 are globally sorted (padding -1 -> row * (n + 1))
    keys = (np.arange(n, dtype=np.int64)[:, None] * (n + 1) + ids + 1).ravel()
    pos_of_key = order.ravel()
    rows = np.arange(n, dtype=np.int64)
    query = nbrs * (n + 1) + rows[:, None] + 1
    b = np.full((n, k), -1, dtype=np.int64)
    step = max(1, CHUNK_ENTRIES // k)
    for s in range(0, n, step):
        q = query[s : s + step]
        hit = np.searchsorted(keys, q)
        hit = np.minimum(hit, keys.size - 1)
        found = (keys[hit] == q) & (nbrs[s : s + step] >= 0)
        b[s : s + step] = np.where(found, pos_of_key[hit], -1)
    is_self = nbrs == rows[:, None]
    self_pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), -1)
    return b, self_pos


def _prefix_outside(knn: Knn, mutual: np.ndarray) -> np.ndarray:
    """``d`` (N, k) int64: for every mutual entry (i, a) with j = nbrs[i, a], the number of
    i's entries at positions 0..a-1 that are not in j's list (0 elsewhere)."""
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs
    d = np.zeros((n, k), dtype=np.int64)
    dtype = np.uint8 if k < 255 else np.uint16 if k < 65535 else np.uint32
    rows_per_chunk = max(1, CHUNK_ENTRIES // (k * k))
    width = min(n + 1, rows_per_chunk * k + 1)
    dense = width == n + 1
    table = np.zeros(rows_per_chunk * width, dtype=dtype)
    slot = None if dense else np.full(n + 1, width - 1, dtype=np.int64)
    progress = Progress(n, "aro: rank-order distances", unit="items", logger=log)
    col = np.broadcast_to(np.arange(k, dtype=dtype), (rows_per_chunk, k))
    for s in range(0, n, rows_per_chunk):
        e = min(n, s + rows_per_chunk)
        m = e - s
        lists = nbrs[s:e].astype(np.int64)
        valid = lists >= 0
        loc_rows, loc_cols = np.nonzero(valid)
        if dense:
            cols = lists[valid]
        else:
            uniq = np.unique(lists[valid])
            slot[uniq] = np.arange(uniq.size)
            cols = slot[lists[valid]]
        # table[r, c] = position + 1 of item c in row r's list, 0 if absent
        flat_own = loc_rows * width + cols
        table[flat_own] = col[:m][valid] + 1
        er, ea = np.nonzero(mutual[s:e])
        if er.size:
            j = lists[er, ea]
            their = nbrs[j].astype(np.int64)  # (E, k) lists of the neighbours
            if dense:
                idx = np.where(their >= 0, their, n)
            else:
                idx = slot[their]  # -1 maps to slot[n] = the always-empty column
            idx += (er * width)[:, None]
            g = table[idx]  # position + 1 in i's list, 0 if absent
            g -= 1  # wraps absent entries to the dtype's maximum, above any position
            inside = np.count_nonzero(g < ea.astype(dtype)[:, None], axis=1)
            d[s + er, ea] = ea - inside
        table[flat_own] = 0
        if not dense:
            slot[uniq] = width - 1
        progress.update(m)
    progress.close()
    return d


def plausible_links(knn: Knn, th: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Directed plausible links i -> j (D(i->j) <= 1 - th), as int64 arrays (src, dst)."""
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs.astype(np.int64)
    rows = np.arange(n, dtype=np.int64)
    b, self_pos = _positions(knn)
    oi = np.broadcast_to(np.arange(k, dtype=np.int64), (n, k))
    mutual = (b >= 0) & (nbrs != rows[:, None]) & (oi >= 1)
    d = _prefix_outside(knn, mutual)
    i, a = np.nonzero(mutual)
    j = nbrs[i, a]
    bb = b[i, a]
    d_ij = d[i, a]
    d_ji = d[j, bb] + (self_pos[i] < 0)
    dist = (d_ij + d_ji).astype(np.float64) / np.minimum(a, bb + 1)
    keep = dist <= 1.0 - th
    log.info("aro: %d mutual kNN pairs, %d plausible links", i.size, int(keep.sum()))
    return i[keep], j[keep]


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    th: float = 0.0,
) -> np.ndarray:
    """Cluster with approximate rank-order distances on the kNN graph.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN lists carry everything ARO needs).
    knn : kNN graph over the N items (self first); the method's k is the graph's k.
    th : links with rank-order distance D <= 1 - th are plausible (th <= 1).

    Returns
    -------
    labels : int64 (N,), connected components of the plausible links (no item discarded).
    """
    if not (-1000.0 <= th <= 1.0):
        raise ValueError(f"th must be in [-1000, 1] (links need D <= 1 - th), got {th}")
    src, dst = plausible_links(knn, th)
    return components(knn.n, src, dst)
