"""Partition a labelled feature set into identity-disjoint benchmark splits.

Identities are shuffled with a seeded permutation and dealt into ``n_parts`` parts of equal
identity count (MS1M: 10 parts of 8,573). Part 0 is the train split ``part0``; the test split
``partN`` is the union of parts 1..N (MS1M's cumulative ``part1_test`` ... ``part9_test``).
Items keep their original relative order inside every split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..io import InputError, atomic_path, read_labels, write_labels

__all__ = ["assign_parts", "split_indices", "split_parts", "partition_files"]

_SPLIT = re.compile(r"^part(\d+)$")


def split_parts(split: str) -> list[int]:
    """Parts in a split: ``part0`` -> [0]; ``partN`` (N >= 1) -> [1, ..., N]."""
    m = _SPLIT.match(split)
    if not m:
        raise ValueError(f"split {split!r} is not of the form 'partN'")
    n = int(m.group(1))
    return [0] if n == 0 else list(range(1, n + 1))


def assign_parts(labels: np.ndarray, n_parts: int, seed: int) -> np.ndarray:
    """Part index (N,) int64 of every item: identities shuffled and dealt into ``n_parts``.

    Raises ``ValueError`` if there are fewer identities than parts or unknown labels (-1).
    """
    if (labels < 0).any():
        raise ValueError(
            f"{int((labels < 0).sum())} items have unknown labels (-1); partitioning needs a "
            "label for every item"
        )
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size < n_parts:
        raise ValueError(f"{ids.size} identities cannot fill {n_parts} parts")
    perm = np.random.default_rng(seed).permutation(ids.size)
    part_of_id = np.empty(ids.size, dtype=np.int64)
    part_of_id[perm] = np.arange(ids.size) * n_parts // ids.size
    return part_of_id[inverse]


def split_indices(parts: np.ndarray, split: str) -> np.ndarray:
    """Sorted item indices (int64) of ``split`` given the part of every item."""
    return np.flatnonzero(np.isin(parts, split_parts(split)))


def partition_files(
    features_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    out_features: dict[str, str | os.PathLike],
    out_labels: dict[str, str | os.PathLike],
    *,
    dim: int,
    n_parts: int = 10,
    seed: int = 0,
    chunk_rows: int = 262144,
) -> dict[str, int]:
    """Write every requested split of a labelled feature set in learn-to-cluster's layout.

    Parameters
    ----------
    features_path, labels_path : the full set (``.bin`` float32 (N, dim), ``.meta``).
    out_features, out_labels : split name -> output path (``.bin`` / ``.meta``); a split
        missing from ``out_labels`` gets no label file (committee feature sets).
    dim : feature dimension.
    n_parts : number of identity-disjoint parts.
    seed : seeds the identity shuffle.
    chunk_rows : rows copied at a time (memory stays O(chunk_rows * dim)).

    Returns the number of items of each split. Features are copied as stored (readers
    L2-normalise on load); NaN/Inf rows are rejected with the file name.
    """
    features_path = Path(features_path)
    labels = read_labels(labels_path)
    n = labels.size
    size = features_path.stat().st_size if features_path.is_file() else -1
    if size != n * dim * 4:
        raise InputError(
            f"{features_path}: feature/label length mismatch or wrong dimension: {size} bytes, "
            f"but {n} labels in {labels_path} of dim {dim} need {n * dim * 4} bytes"
        )
    try:
        parts = assign_parts(labels, n_parts, seed)
    except ValueError as exc:
        raise InputError(f"{labels_path}: {exc}") from exc
    feats = np.memmap(features_path, dtype="<f4", mode="r", shape=(n, dim))
    counts = {}
    for split, out in out_features.items():
        idx = split_indices(parts, split)
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            for start in range(0, idx.size, chunk_rows):
                block = np.asarray(feats[idx[start : start + chunk_rows]])
                if not np.isfinite(block).all():
                    bad = idx[start + np.flatnonzero(~np.isfinite(block).all(axis=1))]
                    raise InputError(
                        f"{features_path}: rows contain NaN or Inf (first rows: {bad[:5].tolist()})"
                    )
                block.tofile(fh)
        if split in out_labels:  # a committee member's split has the base split's labels
            write_labels(out_labels[split], labels[idx])
        counts[split] = int(idx.size)
    return counts
