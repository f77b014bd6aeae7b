"""Cluster proposals (GCN-D/S, CVPR 2019): candidate clusters that may overlap.

A proposal set is what one named entry of the config's ``proposals`` block generates on one
split (learn-to-cluster's list of proposal folders): every proposal of every iteration-0 and
iteration-1 parameter set of the entry, in order. It is stored as one ``.npz``:

* ``items`` int64 (M,): the members of every proposal, concatenated;
* ``offsets`` int64 (P + 1,): proposal p is ``items[offsets[p]:offsets[p + 1]]``;
* ``folder`` int32 (P,): the parameter set (learn-to-cluster's proposal folder) of each;
* ``folders``: the names of the parameter sets, in order.

A proposal's edges are not stored: they are all kNN edges with both ends inside it
(learn-to-cluster's ``*_edge.npz``, no threshold), recomputed from the split's kNN graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .graph import finalize_labels, knn_pairs, propagate, unique_pairs
from .io import InputError, Knn, atomic_path

__all__ = [
    "Proposals",
    "SET_SCHEMA",
    "set_ks",
    "iteration0",
    "super_vertices",
    "iteration1",
    "generate",
    "intra_edges",
]

#: JSON schema of one entry of the config's ``proposals`` block (a proposal set); the
#: parameter names and defaults are learn-to-cluster's (``generate_proposals``)
SET_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["iter0"],
    "properties": {
        "knn_backend": {
            "type": "string",
            "default": "flat",
            "description": "kNN backend of the instance graph (a key of knn_backends).",
        },
        "k": {
            "type": "integer",
            "minimum": 2,
            "default": 80,
            "description": "Neighbours of the instance kNN (an iter0 entry may set its own).",
        },
        "step": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.05,
            "description": "Threshold step of the size-capped components (th_step).",
        },
        "minsz": {
            "type": "integer",
            "minimum": 1,
            "default": 3,
            "description": "Smallest proposal kept (items).",
        },
        "maxsz": {
            "type": "integer",
            "minimum": 1,
            "default": 300,
            "description": "Largest component of iteration 0 (items; an entry may override).",
        },
        "iter0": {
            "type": "array",
            "minItems": 1,
            "description": "Iteration-0 parameter sets: kNN pairs with similarity >= th.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["th"],
                "properties": {
                    "th": {"type": "number", "minimum": -1, "maximum": 1},
                    "k": {"type": "integer", "minimum": 2},
                    "maxsz": {"type": "integer", "minimum": 1},
                    "keep": {
                        "type": "boolean",
                        "default": True,
                        "description": "Include this iteration-0 folder (learn-to-cluster's "
                        "iter0); its iteration-1 folders are generated either way.",
                    },
                },
            },
        },
        "iter1": {
            "type": "array",
            "default": [],
            "description": "Iteration-1 parameter sets, applied to every iteration-0 set: "
            "super-vertices (the iteration-0 clusters) linked over a kNN of their mean "
            "features.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["k", "sv_maxsz"],
                "properties": {
                    "k": {"type": "integer", "minimum": 2},
                    "sv_maxsz": {"type": "integer", "minimum": 1},
                },
            },
        },
        "iter1_maxsz": {
            "type": "integer",
            "minimum": 1,
            "default": 500,
            "description": "Largest iteration-1 proposal (items).",
        },
        "sv_th": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.4,
            "description": "Similarity threshold of the super-vertex pairs.",
        },
        "sv_step": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.05,
            "description": "Threshold step of the super-vertex components.",
        },
        "sv_minsz": {
            "type": "integer",
            "minimum": 1,
            "default": 2,
            "description": "Fewest super-vertices in an iteration-1 proposal.",
        },
    },
}


@dataclass(frozen=True)
class Proposals:
    """P proposals over N items (see the module docstring for the arrays)."""

    items: np.ndarray
    offsets: np.ndarray
    folder: np.ndarray
    folders: tuple[str, ...] = ()

    @property
    def n_proposals(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def sizes(self) -> np.ndarray:
        """int64 (P,) number of items of each proposal."""
        return np.diff(self.offsets)

    def members(self, p: int) -> np.ndarray:
        """Items of proposal ``p``, int64."""
        return self.items[self.offsets[p] : self.offsets[p + 1]]

    def owner(self) -> np.ndarray:
        """int64 (M,): the proposal of each entry of ``items``."""
        return np.repeat(np.arange(self.n_proposals, dtype=np.int64), self.sizes)

    @classmethod
    def from_lists(cls, groups, folder=None, folders=()) -> Proposals:
        """Proposals from a sequence of index arrays (one per proposal)."""
        groups = [np.asarray(g, dtype=np.int64).ravel() for g in groups]
        sizes = np.array([g.size for g in groups], dtype=np.int64)
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        items = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
        if folder is None:
            folder = np.zeros(len(groups), dtype=np.int32)
        return cls(items, offsets, np.asarray(folder, dtype=np.int32), tuple(folders))

    @classmethod
    def concat(cls, parts: list[Proposals]) -> Proposals:
        """The proposals of ``parts`` in order; folder numbers are renumbered to stay distinct."""
        if not parts:
            return cls.from_lists([])
        items, offsets, folder, folders = [], [np.zeros(1, dtype=np.int64)], [], []
        base = 0
        for part in parts:
            items.append(part.items)
            offsets.append(part.offsets[1:] + base)
            base += part.items.size
            folder.append(part.folder + len(folders))
            folders.extend(
                part.folders or [str(i) for i in range(int(part.folder.max(initial=-1)) + 1)]
            )
        return cls(
            np.concatenate(items).astype(np.int64),
            np.concatenate(offsets),
            np.concatenate(folder).astype(np.int32),
            tuple(folders),
        )

    def write(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (``.npz``) atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    items=self.items.astype(np.int64),
                    offsets=self.offsets.astype(np.int64),
                    folder=self.folder.astype(np.int32),
                    folders=np.array(self.folders, dtype=str),
                )

    @classmethod
    def read(cls, path: str | os.PathLike, n_items: int | None = None) -> Proposals:
        """Read and check a file written by :meth:`write`; :class:`InputError` names the
        file and the problem (missing arrays, offsets not increasing, items out of range)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                items, offsets, folder = z["items"], z["offsets"], z["folder"]
                folders = tuple(str(f) for f in z["folders"])
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise InputError(f"{path}: not a readable proposals file ({exc})") from exc
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != items.size:
            raise InputError(f"{path}: offsets do not cover the {items.size} items")
        if np.any(np.diff(offsets) < 0) or folder.size != offsets.size - 1:
            raise InputError(f"{path}: offsets not increasing or folder of the wrong length")
        if items.size and (items.min() < 0 or (n_items is not None and items.max() >= n_items)):
            raise InputError(f"{path}: item indices outside 0..{n_items}")
        return cls(
            items.astype(np.int64), offsets.astype(np.int64), folder.astype(np.int32), folders
        )


# ----------------------------------------------------------------------------- generation


def _with_defaults(spec: dict) -> dict:
    out = {n: p["default"] for n, p in SET_SCHEMA["properties"].items() if "default" in p}
    out.update(spec)
    return out


def set_ks(spec: dict) -> list[int]:
    """The instance-kNN k of every iteration-0 entry of a proposal set."""
    spec = _with_defaults(spec)
    return [int(e.get("k", spec["k"])) for e in spec["iter0"]]


def _capped_components(n: int, knn: Knn, th: float, *, max_sz: int, step: float) -> np.ndarray:
    """learn-to-cluster's ``filter_knns`` + ``graph_clustering_dynamic_th``: the kNN pairs
    with similarity >= ``th`` (self and padding dropped, undirected, the first occurrence's
    score), split into components of at most ``max_sz`` by raising the threshold. int64 (N,)
    labels, -1 for items in no pair."""
    pairs, scores = knn_pairs(knn, th, strict=False)
    pairs, scores = unique_pairs(pairs, scores, pool="first")
    return propagate(n, pairs, scores, max_sz=max_sz, step=step)


def _groups(labels: np.ndarray, min_size: int, max_size: int | None = None) -> Proposals:
    """The clusters of ``labels`` (-1 ignored) with min_size <= size <= max_size, in order
    of their label, members in ascending item order."""
    items = np.flatnonzero(labels >= 0)
    lab = labels[items]
    order = np.argsort(lab, kind="stable")
    items, lab = items[order], lab[order]
    uniq, start, sizes = np.unique(lab, return_index=True, return_counts=True)
    keep = sizes >= min_size
    if max_size is not None:
        keep &= sizes <= max_size
    groups = [items[a : a + c] for a, c in zip(start[keep], sizes[keep], strict=True)]
    return Proposals.from_lists(groups)


def iteration0(
    knn: Knn, *, th: float, step: float, minsz: int, maxsz: int
) -> tuple[np.ndarray, Proposals]:
    """Iteration-0 proposals (learn-to-cluster's ``generate_basic_proposals``).

    Parameters
    ----------
    knn : the instance kNN graph (N rows), cut to the set's k.
    th : pairs with similarity >= th enter; step : threshold step; components of more than
        ``maxsz`` items are split at rising thresholds.
    minsz : smallest component kept as a proposal.

    Returns
    -------
    labels : int64 (N,), the iteration-0 clustering with uncovered items as singletons
        (the ``pred_labels.txt`` of the proposal folder, the input of iteration 1).
    proposals : the components with at least ``minsz`` items.
    """
    comp = _capped_components(knn.n, knn, th, max_sz=maxsz, step=step)
    return finalize_labels(comp), _groups(comp, minsz)


def super_vertices(
    features: np.ndarray,
    labels0: np.ndarray,
    k: int,
    *,
    backend: dict | None = None,
    threads: int = 1,
    seed: int = 0,
) -> Knn | None:
    """The kNN graph (``k`` neighbours) over the super-vertices of ``labels0``.

    Every iteration-0 cluster (singletons included) is a super-vertex whose feature is the
    mean of its members' L2-normalised features, not re-normalised (as the reference, so
    super-vertex similarities are inner products of means). None when there are too few
    super-vertices for a kNN of ``k`` (the reference would fail).
    """
    from .knn import build_knn_from_spec

    n_sv = int(labels0.max()) + 1 if labels0.size else 0
    if n_sv <= k:
        return None
    counts = np.bincount(labels0, minlength=n_sv).astype(np.float32)
    member = sp.csr_matrix(
        (np.ones(labels0.size, dtype=np.float32), (labels0, np.arange(labels0.size))),
        shape=(n_sv, labels0.size),
    )
    means = np.asarray(member @ features, dtype=np.float32) / counts[:, None]
    return build_knn_from_spec(
        means, k, backend or {"index": "flat"}, threads=threads, seed=seed, source="super-vertices"
    )


def iteration1(
    sv_knn: Knn | None,
    labels0: np.ndarray,
    *,
    k: int,
    sv_maxsz: int,
    sv_th: float = 0.4,
    sv_step: float = 0.05,
    sv_minsz: int = 2,
    minsz: int = 3,
    maxsz: int = 500,
) -> Proposals:
    """Iteration-1 proposals over super-vertices (``generate_iter_proposals``).

    Super-vertices (:func:`super_vertices`) are linked by their kNN cut to ``k`` (pairs with
    inner product >= ``sv_th``) and split into components of at most ``sv_maxsz``
    super-vertices; components of at least ``sv_minsz`` super-vertices (so a single
    super-vertex is never repeated) are expanded to their items and kept when they have
    ``minsz`` to ``maxsz`` items.

    Parameters
    ----------
    sv_knn : the super-vertex kNN graph, with at least ``k`` neighbours (None: too few
        super-vertices, no proposals).
    labels0 : int64 (N,) iteration-0 clusters numbered 0..S-1 (no -1).

    Returns
    -------
    Proposals of items, members in ascending item order.
    """
    if sv_knn is None or sv_knn.k < k:
        return Proposals.from_lists([])
    n_sv = sv_knn.n
    sv_comp = _capped_components(n_sv, sv_knn.truncate(k), sv_th, max_sz=sv_maxsz, step=sv_step)
    # components of >= sv_minsz super-vertices, expanded to items
    sv_sizes = np.bincount(sv_comp[sv_comp >= 0], minlength=max(1, int(sv_comp.max()) + 1))
    ok = (sv_comp >= 0) & (sv_sizes[np.maximum(sv_comp, 0)] >= sv_minsz)
    item_comp = np.where(ok[labels0], sv_comp[labels0], -1)
    return _groups(item_comp, minsz, maxsz)


def generate(
    features: np.ndarray,
    knn: Knn,
    spec: dict,
    *,
    backend: dict | None = None,
    threads: int = 1,
    seed: int = 0,
) -> Proposals:
    """Every proposal of one proposal set (a config ``proposals`` entry) on one split.

    For each iteration-0 entry (its own ``k``, ``maxsz`` or the set's): the iteration-0
    proposals (a folder, unless ``keep`` is false), then one folder per iteration-1 entry
    built on its clusters. Folders are named like learn-to-cluster's
    (``k_80_th_0.7_step_0.05_minsz_3_maxsz_300_iter_0``, ``..._sv_minsz_2_maxsz_8_iter_1``).

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.
    knn : the instance kNN graph of the split, with k >= every k of the set (it is cut).
    spec : the proposal set (:data:`SET_SCHEMA`; defaults are filled in here).
    backend : kNN backend spec of the super-vertex kNN.
    """
    spec = _with_defaults(spec)
    parts = []
    for entry in spec["iter0"]:
        k = int(entry.get("k", spec["k"]))
        maxsz = int(entry.get("maxsz", spec["maxsz"]))
        if knn.k < k:
            raise ValueError(f"proposal set needs a kNN of k={k}, got k={knn.k}")
        labels0, props = iteration0(
            knn.truncate(k), th=entry["th"], step=spec["step"], minsz=spec["minsz"], maxsz=maxsz
        )
        name0 = f"k_{k}_th_{entry['th']}_step_{spec['step']}_minsz_{spec['minsz']}_maxsz_{maxsz}"
        if entry.get("keep", True):
            parts.append(Proposals(props.items, props.offsets, props.folder, (f"{name0}_iter_0",)))
        # one super-vertex kNN at the largest k of iteration 1, cut for the others
        sv_knn = None
        if spec["iter1"]:
            sv_k = max(it1["k"] for it1 in spec["iter1"])
            sv_knn = super_vertices(
                features, labels0, sv_k, backend=backend, threads=threads, seed=seed
            )
        for it1 in spec["iter1"]:
            props1 = iteration1(
                sv_knn,
                labels0,
                k=it1["k"],
                sv_maxsz=it1["sv_maxsz"],
                sv_th=spec["sv_th"],
                sv_step=spec["sv_step"],
                sv_minsz=spec["sv_minsz"],
                minsz=spec["minsz"],
                maxsz=spec["iter1_maxsz"],
            )
            name1 = (
                f"{name0}_iter_0/k_{it1['k']}_th_{spec['sv_th']}_step_{spec['sv_step']}"
                f"_minsz_{spec['minsz']}_maxsz_{spec['iter1_maxsz']}"
                f"_sv_minsz_{spec['sv_minsz']}_maxsz_{it1['sv_maxsz']}_iter_1"
            )
            parts.append(Proposals(props1.items, props1.offsets, props1.folder, (name1,)))
    return Proposals.concat(parts)


def intra_edges(
    proposals: Proposals, knn: Knn
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every kNN edge with both ends inside a proposal (learn-to-cluster's ``*_edge.npz``).

    Returns ``owner`` int64 (E,) the proposal, ``src``/``dst`` int64 (E,) the positions of
    the two ends within the proposal's member list, and ``sims`` float32 (E,), for the
    directed kNN edges i -> j (i != j); callers symmetrise. Vectorised over all proposals:
    each entry's neighbours are looked up by the sorted key ``proposal * N + item``.
    """
    n = knn.n
    owner = proposals.owner()
    keys = owner * n + proposals.items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos_in = np.arange(proposals.items.size) - proposals.offsets[owner]
    nb = knn.nbrs[proposals.items].astype(np.int64)  # (M, k)
    valid = (nb >= 0) & (nb != proposals.items[:, None])
    qkeys = owner[:, None] * n + np.where(valid, nb, 0)
    loc = np.searchsorted(sorted_keys, qkeys)
    loc = np.minimum(loc, max(0, sorted_keys.size - 1))
    hit = valid & (sorted_keys[loc] == qkeys) if sorted_keys.size else valid & False
    rows, cols = np.nonzero(hit)
    sims = knn.sims[proposals.items][rows, cols].astype(np.float32)
    return owner[rows], pos_in[rows], pos_in[order[loc[rows, cols]]], sims
