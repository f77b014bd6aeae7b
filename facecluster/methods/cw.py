"""Chinese Whispers (Biemann, 2006) on the kNN graph, as learn-to-cluster's baseline.

The graph is undirected: an edge i - j for every kNN entry j of i (j != i) with cosine
similarity >= ``th``, weighted by that similarity (the larger of the two directions' values
when both lists hold the pair; they differ only by rounding). Every item starts in its own
cluster (label = its index). Each of ``iters`` rounds visits all items in a random order
(seeded by ``context.seed``) and sets each item's label to the neighbouring label with the
largest summed edge weight; items without edges keep their own label.

Our implementation computes exactly that sequential algorithm, but level by level: in a
given visiting order, let level(v) = 1 + the largest level of v's neighbours visited
before v (0 if none). Two items of one level are never adjacent (the later one would have a
higher level), every neighbour visited before v lies in a lower level and every neighbour
visited after v in a higher one. So updating a whole level at once, from the labels left by
the lower levels, gives each item exactly the neighbour labels the sequential sweep shows it;
the levels are the layers of Kahn's topological sort of the edges oriented by the order.
Each level is one vectorised weighted vote (gather, sort by (item, label), segment sums).

Differences from learn-to-cluster's ``chinese_whispers``:

* its returned label list is ordered by cluster iteration
  (``list(clusters2labels(...).values())``), not by item index, so it is only aligned with
  the items when they are sorted by label: ours is aligned with the items;
* ties between labels go to the smallest label (the reference takes the first one met in
  the neighbour order); vote sums are accumulated exactly in 2**-40 fixed point (exact for
  every float32 weight of magnitude >= 2**-16), so ties are real ties and the result does not
  depend on summation order;
* it uses Python's ``random`` (seed 42) for the orders, ours ``numpy.random.default_rng``;
* it always runs ``iters`` rounds; we stop early after a round that changes no label, which
  gives the same labels (such a state is a fixed point for every visiting order).

Reference settings (learn-to-cluster): MS1M k 80, th 0.6, iters 20; YTF k 160, th 0.75;
DeepFashion k 5, th 0.7.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

#: vote weights are summed as integers in units of 2**-FIXED_BITS
FIXED_BITS = 40


def estimate(n: int, dim: int, k: int, *, params: dict, **_) -> Cost:
    """Peak memory of the job: features and kNN graph, the symmetric graph (up to ``2 k``
    entries per item), the per-round oriented copy and level buffers (about 40 bytes per kNN
    entry) and the interpreter; measured peak RSS 198 MB at 20K items, 406 MB at 60K (d 256,
    k 80); the formula leaves a margin (about 70 bytes per entry). Time: building the graph
    (about 0.3 microsecond per kNN entry, with margin) and ``iters`` rounds of about 0.1
    microsecond per kNN entry each (measured 0.1 s per round at 20K, 0.3 s at 60K; whole
    runs 0.6 s and 3.1 s, as rounds stop early once nothing changes)."""
    iters = int(params.get("iters", 20))
    return Cost(
        n * 4 * dim + 78.0 * n * k + 1.2e8, 1.0 + 3e-7 * n * k + 1e-7 * n * k * max(1, iters)
    )


SPEC = FamilySpec(
    summary="Chinese Whispers (Biemann 2006) on the kNN graph, learn-to-cluster baseline",
    thresholds={"th": "similarity"},
    params={
        "th": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.6,
            "description": "Keep kNN edges with cosine similarity >= th (weight = similarity).",
        },
        "iters": {
            "type": "integer",
            "minimum": 1,
            "default": 20,
            "description": "Rounds, each visiting every item once in a seeded random order.",
        },
    },
    estimate=estimate,
)


def symmetric_graph(knn: Knn, th: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The undirected kNN graph of edges with similarity >= ``th``, as CSR arrays.

    Returns ``indptr`` (N+1,), ``indices`` (nnz,) sorted within each row, and ``weights``
    float64 (nnz,): both directions of every edge, no self-loops; a pair listed in both kNN
    lists keeps the larger similarity (rounded to a multiple of 2**-40, the vote unit).
    Zero-weight edges are kept.
    """
    n, k = knn.nbrs.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn.nbrs.ravel()
    sims = knn.sims.ravel()
    keep = (sims >= th) & (cols >= 0) & (cols != rows)
    # weights in fixed point, offset to stay positive: scipy drops explicit zeros
    offset = np.int64(1) << (FIXED_BITS + 2)
    fixed = _to_fixed(sims[keep]) + offset
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=n), out=indptr[1:])
    a = sp.csr_matrix((fixed, cols[keep], indptr), shape=(n, n))
    a = a.maximum(a.T.tocsr()).tocsr()
    a.sort_indices()
    weights = np.ldexp((a.data - offset).astype(np.float64), -FIXED_BITS)
    return a.indptr.astype(np.int64), a.indices.astype(np.int64), weights


def _to_fixed(weights: np.ndarray) -> np.ndarray:
    """Weights as int64 multiples of 2**-FIXED_BITS (exact for float32 |w| >= 2**-16)."""
    return np.rint(np.ldexp(np.asarray(weights, dtype=np.float64), FIXED_BITS)).astype(np.int64)


def _gather_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR entries of ``rows`` (concatenated) and their counts per row."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.arange(total, dtype=np.int64) + shift, counts


def levels(indptr: np.ndarray, indices: np.ndarray, rank: np.ndarray) -> list[np.ndarray]:
    """Kahn layers of the undirected graph oriented by the visiting order.

    Parameters
    ----------
    indptr, indices : symmetric CSR structure over N items (no self-loops).
    rank : int (N,), the position of each item in the visiting order (a permutation).

    Returns
    -------
    list of int64 arrays: level 0, 1, ...; level(v) = 1 + max level of v's neighbours of
    lower rank (0 if none). Every item is in exactly one level.
    """
    n = indptr.size - 1
    deg = np.diff(indptr)
    row = np.repeat(np.arange(n, dtype=np.int64), deg)
    later = rank[indices] > rank[row]
    succ = indices[later]
    succ_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[later], minlength=n), out=succ_ptr[1:])
    indeg = np.bincount(succ, minlength=n)
    frontier = np.flatnonzero(indeg == 0)
    out = []
    while frontier.size:
        out.append(frontier)
        pos, _ = _gather_rows(succ_ptr, frontier)
        v = succ[pos]
        np.subtract.at(indeg, v, 1)
        frontier = np.unique(v[indeg[v] == 0])
    return out


def _vote(
    level: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    fixed: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Set ``labels[v]`` for v in ``level`` (mutually non-adjacent) to its neighbours'
    label of largest summed weight, ties to the smallest label; in place."""
    pos, counts = _gather_rows(indptr, level)
    if pos.size == 0:
        return
    n = labels.size
    row = np.repeat(np.arange(level.size, dtype=np.int64), counts)
    key = row * n + labels[indices[pos]]
    order = np.argsort(key)
    key = key[order]
    start = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    sums = np.add.reduceat(fixed[pos[order]], start)
    gkey = key[start]
    grow = gkey // n
    rstart = np.flatnonzero(np.concatenate(([True], grow[1:] != grow[:-1])))
    best = np.maximum.reduceat(sums, rstart)
    is_best = sums == np.repeat(best, np.diff(np.append(rstart, grow.size)))
    cand = np.flatnonzero(is_best)
    first = cand[np.concatenate(([True], grow[cand[1:]] != grow[cand[:-1]]))]
    labels[level[grow[first]]] = gkey[first] % n


def whispers(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    orders: Iterable[np.ndarray],
    *,
    progress: Progress | None = None,
) -> np.ndarray:
    """Chinese Whispers rounds over a symmetric weighted graph, one round per order.

    Parameters
    ----------
    indptr, indices, weights : symmetric CSR graph over N items (see :func:`symmetric_graph`).
    orders : visiting orders, each a permutation of ``range(N)``; one round per order.
    progress : counts rounds.

    Returns
    -------
    labels : int64 (N,), each a representative item index; the labels of the sequential
    algorithm run round by round in the given orders (ties to the smallest label). Stops
    after a round that changes nothing (the remaining rounds would change nothing either).
    """
    n = indptr.size - 1
    labels = np.arange(n, dtype=np.int64)
    fixed = _to_fixed(weights)
    rank = np.empty(n, dtype=np.int64)
    for it, order in enumerate(orders):
        order = np.asarray(order)
        if order.shape != (n,):
            raise ValueError(f"order {it} has shape {order.shape}, expected ({n},)")
        rank[order] = np.arange(n)
        before = labels.copy()
        layers = levels(indptr, indices, rank)
        for level in layers:
            _vote(level, indptr, indices, fixed, labels)
        changed = int(np.count_nonzero(labels != before))
        log.debug(
            "chinese whispers round %d: %d levels, %d labels changed", it, len(layers), changed
        )
        if progress is not None:
            progress.update(1)
        if changed == 0:
            log.info("chinese whispers: converged after %d rounds", it + 1)
            break
    return labels


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    th: float = 0.6,
    iters: int = 20,
) -> np.ndarray:
    """Cluster with Chinese Whispers on the kNN graph.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graph carries the similarities).
    knn : kNN graph over the N items (self first); the method's k is the graph's k.
    context : :class:`facecluster.methods.Context`; ``context.seed`` seeds the orders.
    th : keep kNN edges with cosine similarity >= th.
    iters : rounds (each visits every item once).

    Returns
    -------
    labels : int64 (N,), aligned with the items (no item is discarded).
    """
    if not -1.0 <= th <= 1.0:
        raise ValueError(f"th must be in [-1, 1], got {th}")
    if int(iters) != iters or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters}")
    seed = context.seed if context is not None else 0
    indptr, indices, weights = symmetric_graph(knn, th)
    log.info("chinese whispers: %d items, %d undirected edges", knn.n, indices.size // 2)
    rng = np.random.default_rng(seed)
    progress = Progress(int(iters), "chinese whispers", unit="rounds", logger=log)
    orders = (rng.permutation(knn.n) for _ in range(int(iters)))
    labels = whispers(indptr, indices, weights, orders, progress=progress)
    progress.close()
    return labels
