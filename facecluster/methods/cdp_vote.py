"""CDP with a committee, "vote" strategy (Zhan et al., ECCV 2018; XiaohangZhan/cdp).

The base model's kNN graph proposes pairs; a committee of other embedding models of the same
images votes on them. For a base kNN entry j of item i with similarity s,

    vote(i, j) = the number of committee members whose kNN list OF i contains j

(directional, as the reference: member c's list of j is not consulted). The pair is kept if
s > th (strict), vote >= accept, j != i and j != -1. Kept pairs are de-duplicated as
undirected pairs keeping the score (base similarity) of their first occurrence in row-major
kNN order, and turned into clusters by CDP's size-capped propagation
(:func:`facecluster.graph.propagate`). Items in no kept pair are discarded (-1).

With an empty committee and ``accept = 0`` this is the single-model CDP of
:mod:`facecluster.methods.cdp`.

Reference differences: the reference's multi-model API (``multi_api.py``) does not run: it
asserts that the input is a list and then calls ``.shape`` on it, and it passes
``accept = number of models`` although at most ``models - 1`` committee members can vote, so
no pair could ever be accepted. We follow the config-driven path that produced the README
numbers (``cdp.sample`` with ``vote.accept_num``), default ``accept`` to the committee size
(every member must agree) and reject an ``accept`` above the committee size as a
configuration error instead of silently producing no pair.

Reference settings (k=15, max_sz=600, step=0.05, base + 4 committee members): emore_u200k
and u600k ``accept 4, th 0.605`` (pairwise F 93.13 / 90.05), u1.4m ``accept 4, th 0.62``.
"""

from __future__ import annotations

import logging

import numpy as np

from ..graph import knn_pairs, propagate, unique_pairs
from ..io import Knn
from . import Cost, FamilySpec
from .cdp import PROPAGATION_PARAMS

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "estimate",
    "check_propagation",
    "committee_from_context",
    "knn_contains",
    "votes",
    "cluster",
]


def estimate(n: int, dim: int, k: int, *, params: dict | None = None, **_) -> Cost:
    """Peak memory and time of :func:`cluster` for a committee of 4 (the reference's).

    Memory: the base and the 4 committee feature sets (read, 4 bytes x dim each) and kNN
    graphs (8 bytes per entry each), the sorted int64 (item, neighbour) codes of one member
    and the per-pair work arrays (about 60 bytes per base kNN edge). Time: about 0.15
    microseconds per kNN edge per member for the membership tests (a sort of the member's
    codes and a binary search), plus the single-model CDP pair selection and propagation
    (0.3 microseconds per edge), measured on this machine.
    """
    members = 4
    edges = n * k
    memory = 100e6 + n * (members + 1) * (4.0 * dim + 8.0 * k) + edges * 60.0
    seconds = 1.0 + edges * (3e-7 + members * 1.5e-7)
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="CDP committee vote (Zhan et al., ECCV 2018): base kNN pairs above th that at "
    "least `accept` committee kNN lists confirm, size-capped propagation",
    needs=("committee",),
    params={
        "th": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.605,
            "description": "Keep base kNN pairs with cosine similarity > th (strict); 0.605 on "
            "emore_u200k and u600k.",
        },
        "accept": {
            "type": ["integer", "null"],
            "minimum": 0,
            "default": None,
            "description": "Committee votes a pair needs, 0 to committee size; null for the "
            "committee size (all agree).",
        },
        **PROPAGATION_PARAMS,
    },
    estimate=estimate,
)


def check_propagation(max_sz: int, step: float, max_iter: int) -> None:
    """``ValueError`` naming the first out-of-range propagation parameter."""
    if int(max_sz) != max_sz or max_sz < 1:
        raise ValueError(f"max_sz must be an integer >= 1, got {max_sz}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    if int(max_iter) != max_iter or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter}")


def committee_from_context(context, n: int) -> list[tuple[np.ndarray, Knn]]:
    """The committee of ``context.extra["committee"]``, checked against ``n`` items.

    Raises ``ValueError`` if it is missing or a member does not cover the same ``n`` items.
    """
    extra = getattr(context, "extra", None) or {}
    if "committee" not in extra:
        raise ValueError(
            "this CDP family needs a committee: context.extra['committee'] must be a list of "
            "(features, Knn) pairs of the same items"
        )
    committee = list(extra["committee"])
    for c, member in enumerate(committee):
        try:
            feats, mknn = member
        except (TypeError, ValueError):
            raise ValueError(f"committee member {c} must be a (features, Knn) pair") from None
        if feats is not None and np.shape(feats)[0] != n:
            raise ValueError(
                f"committee member {c} has {np.shape(feats)[0]} feature rows, expected {n}"
            )
        if mknn.n != n:
            raise ValueError(f"committee member {c}'s kNN graph has {mknn.n} rows, expected {n}")
    return committee


def knn_contains(knn: Knn, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether ``cols[p]`` is in the kNN list of ``rows[p]``, for every p.

    Vectorised: the graph's valid entries become sorted int64 codes ``row * N + nbr`` and
    the queries are binary-searched among them (O((Nk + P) log Nk), no N x N matrix).

    Parameters
    ----------
    knn : graph over N items (``-1`` entries are ignored).
    rows, cols : int (P,) item indices in [0, N).

    Returns
    -------
    bool (P,).
    """
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs.astype(np.int64)
    codes = (np.arange(n, dtype=np.int64)[:, None] * n + nbrs)[nbrs >= 0]
    codes.sort()
    query = np.asarray(rows, dtype=np.int64) * n + np.asarray(cols, dtype=np.int64)
    if codes.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(codes, query)
    pos[pos == codes.size] = codes.size - 1
    return codes[pos] == query


def votes(committee_knns: list[Knn], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """vote(i, j) for every pair: the number of member graphs whose list of i holds j.

    Returns int64 (P,).
    """
    out = np.zeros(np.shape(rows), dtype=np.int64)
    for mknn in committee_knns:
        out += knn_contains(mknn, rows, cols)
    return out


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    th: float = 0.605,
    accept: int | None = None,
    max_sz: int = 600,
    step: float = 0.05,
    max_iter: int = 100,
) -> np.ndarray:
    """Cluster with CDP's committee vote and size-capped propagation.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graphs carry everything the vote needs).
    knn : the base model's kNN graph over the N items.
    context : :class:`facecluster.methods.Context` whose ``extra["committee"]`` is a list of
        ``(features (N, D_c) float32, Knn)`` of the committee members (same items, same
        order).
    th : base similarity threshold for a pair (strict).
    accept : votes a pair needs, 0..len(committee); ``None`` = len(committee) (all agree).
    max_sz, step, max_iter : CDP's propagation (see :func:`facecluster.graph.propagate`).

    Returns
    -------
    labels : int64 (N,), -1 for discarded items.
    """
    committee = committee_from_context(context, knn.n)
    size = len(committee)
    if accept is None:
        accept = size
    if int(accept) != accept or not 0 <= accept <= size:
        raise ValueError(
            f"accept must be an integer in [0, {size}] (the committee has {size} members), "
            f"got {accept}"
        )
    if not -1.0 <= th <= 1.0:
        raise ValueError(f"th must be in [-1, 1], got {th}")
    check_propagation(max_sz, step, max_iter)
    pairs, scores = knn_pairs(knn, th, strict=True)
    n_above = pairs.shape[0]
    if accept > 0 and n_above:
        v = votes([mknn for _, mknn in committee], pairs[:, 0], pairs[:, 1])
        keep = v >= accept
        pairs, scores = pairs[keep], scores[keep]
    pairs, scores = unique_pairs(pairs, scores, pool="first")
    log.info(
        "cdp vote: %d kNN pairs above th=%.3f, %d with >= %d of %d votes, %d undirected",
        n_above,
        th,
        int(keep.sum()) if accept > 0 and n_above else n_above,
        accept,
        size,
        pairs.shape[0],
    )
    return propagate(knn.n, pairs, scores, max_sz=max_sz, step=step, max_iter=max_iter)
