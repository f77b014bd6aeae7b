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

from .io import InputError, atomic_path

__all__ = ["Proposals"]


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
