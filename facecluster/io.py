"""Reading and writing the on-disk formats, with validation and atomic writes.

Formats (learn-to-cluster compatible):

* features ``.bin``: raw little-endian float32, row-major, shape (N, D), no header.
* labels ``.meta`` / ``.labels``: text, one integer per line, line i is the label of row i.
* kNN ``.npz``: arrays ``nbrs`` int32 (N, k) and ``sims`` float32 (N, k), each row sorted by
  descending cosine similarity, self first where present, missing entries ``nbrs == -1``.
  The reader also accepts learn-to-cluster's ``data`` array of shape (N, 2, k) holding
  neighbour indices and ``1 - cosine`` distances.

Every reader raises :class:`InputError` naming the file and the problem; every writer writes
to a temporary file in the target directory and renames it into place, so an interrupted job
never leaves a partial file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "InputError",
    "Knn",
    "atomic_path",
    "read_features",
    "write_features",
    "read_labels",
    "write_labels",
    "read_knn",
    "write_knn",
    "l2_normalize",
]


class InputError(ValueError):
    """Bad input data: the message names the file (or config key) and the problem."""


@dataclass(frozen=True)
class Knn:
    """A k-nearest-neighbour graph.

    Attributes
    ----------
    nbrs : ndarray of int32, shape (N, k)
        Neighbour indices per query row, ``-1`` where fewer than k neighbours were found.
    sims : ndarray of float32, shape (N, k)
        Cosine similarities, each row sorted in descending order (self first where present).
    """

    nbrs: np.ndarray
    sims: np.ndarray

    @property
    def n(self) -> int:
        return int(self.nbrs.shape[0])

    @property
    def k(self) -> int:
        return int(self.nbrs.shape[1])

    def truncate(self, k: int) -> Knn:
        """The first ``k`` neighbours of every row (exact for an exact kNN of larger k)."""
        if k > self.k:
            raise ValueError(f"cannot truncate a k={self.k} graph to k={k}")
        return Knn(np.ascontiguousarray(self.nbrs[:, :k]), np.ascontiguousarray(self.sims[:, :k]))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed if the block raises, so ``path`` is either absent, its old
    content, or the complete new content, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; give the result the permissions of an ordinary new file
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def l2_normalize(
    x: np.ndarray, *, source: str = "features", chunk_rows: int = 1 << 18
) -> np.ndarray:
    """Divide each row of ``x`` (N, D) by its Euclidean norm, in place; return ``x``.

    Norms are computed in float64 (row chunks bound the extra memory), so large finite
    values do not overflow. Raises :class:`InputError` naming ``source`` if a row has zero
    norm.
    """
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        norms = np.linalg.norm(block.astype(np.float64), axis=1)
        bad = np.flatnonzero(norms == 0)
        if bad.size:
            raise InputError(
                f"{source}: row(s) with zero norm cannot be L2-normalised "
                f"(first rows: {(start + bad[:5]).tolist()})"
            )
        block /= norms[:, None]
    return x


def read_features(
    path: str | os.PathLike,
    dim: int,
    n_items: int | None = None,
    *,
    normalize: bool = True,
    labels_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Read a ``.bin`` feature file into a float32 array of shape (N, dim).

    Parameters
    ----------
    path : path of the raw float32 file.
    dim : feature dimension D.
    n_items : expected number of rows N (e.g. the number of labels); ``None`` infers it.
    normalize : L2-normalise every row (the convention of every reference system).
    labels_path : only used to name the label file in length-mismatch errors.

    Raises
    ------
    InputError
        Missing file, size not a multiple of ``dim`` float32 values (truncated file or wrong
        dimension), row count different from ``n_items``, NaN/Inf values, zero rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: feature file not found")
    size = path.stat().st_size
    row_bytes = 4 * dim
    if n_items is not None:
        expected = n_items * row_bytes
        if size != expected:
            other = f" in {labels_path}" if labels_path else ""
            hint = (
                f"it holds {size / 4 / n_items:.6g} float32 values per item"
                if n_items
                else "no items expected"
            )
            raise InputError(
                f"{path}: feature/label length mismatch or wrong dimension: {size} bytes, but "
                f"{n_items} labels{other} of dim {dim} need {expected} bytes ({hint})"
            )
    elif size == 0 or size % row_bytes:
        raise InputError(
            f"{path}: {size} bytes is not a whole number of dim-{dim} float32 rows "
            f"(truncated file or wrong dimension)"
        )
    n = size // row_bytes
    feats = np.fromfile(path, dtype="<f4", count=n * dim).reshape(n, dim)
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    finite = np.isfinite(feats).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{path}: {bad.size} row(s) contain NaN or Inf (first rows: {bad[:5].tolist()})"
        )
    if normalize:
        l2_normalize(feats, source=str(path))
    return feats


def write_features(path: str | os.PathLike, features: np.ndarray) -> None:
    """Write (N, D) features as raw little-endian float32, atomically."""
    arr = np.ascontiguousarray(features, dtype="<f4")
    if arr.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {arr.shape}")
    with atomic_path(path) as tmp:
        arr.tofile(tmp)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.meta``/``.labels`` text file: one integer per line -> int64 array (N,)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: label file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: label file is empty")
    try:
        frame = pd.read_csv(
            path, header=None, names=["label"], dtype=np.int64, engine="c", skip_blank_lines=False
        )
    except (ValueError, OverflowError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not one 64-bit integer per line ({exc})") from exc
    return frame["label"].to_numpy(dtype=np.int64)


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write int labels (N,) as text, one per line, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            if labels.size:
                fh.write("\n".join(map(str, labels.tolist())))
                fh.write("\n")


def write_knn(path: str | os.PathLike, knn: Knn) -> None:
    """Write a kNN graph as an ``.npz`` with ``nbrs`` (int32) and ``sims`` (float32)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                nbrs=np.ascontiguousarray(knn.nbrs, dtype=np.int32),
                sims=np.ascontiguousarray(knn.sims, dtype=np.float32),
            )


def _from_learn_to_cluster(data: np.ndarray, path: Path) -> Knn:
    """Convert learn-to-cluster's (N, 2, k) [indices, 1 - cos] array to a :class:`Knn`."""
    if data.dtype == object:  # hnsw rows of varying length
        k = max(len(row[0]) for row in data)
        nbrs = np.full((len(data), k), -1, dtype=np.int32)
        dists = np.ones((len(data), k), dtype=np.float32)
        for i, (idx, dist) in enumerate(data):
            nbrs[i, : len(idx)] = idx
            dists[i, : len(dist)] = dist
    else:
        if data.ndim != 3 or data.shape[1] != 2:
            raise InputError(f"{path}: 'data' must have shape (N, 2, k), got {data.shape}")
        nbrs = data[:, 0, :]
        if not np.all(np.isfinite(nbrs)) or np.any(nbrs != np.round(nbrs)):
            raise InputError(f"{path}: neighbour indices in data[:, 0, :] are not integers")
        nbrs = nbrs.astype(np.int32)
        dists = data[:, 1, :].astype(np.float32)
    sims = (1.0 - dists).astype(np.float32)
    sims[nbrs < 0] = -1.0
    order = np.argsort(-sims, axis=1, kind="stable")
    nbrs = np.take_along_axis(nbrs, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    return Knn(np.ascontiguousarray(nbrs), np.ascontiguousarray(sims))


def _index_array(raw: np.ndarray, path: Path) -> np.ndarray:
    """Neighbour indices as int32, checked before the cast so nothing wraps around."""
    if not np.issubdtype(raw.dtype, np.integer):
        raise InputError(f"{path}: 'nbrs' must hold integers, got {raw.dtype}")
    if raw.size and (raw.min() < -1 or raw.max() >= np.iinfo(np.int32).max):
        raise InputError(f"{path}: neighbour indices outside [-1, 2**31 - 1)")
    return raw.astype(np.int32)


def read_knn(path: str | os.PathLike, n_items: int | None = None) -> Knn:
    """Read a kNN ``.npz`` (ours, or learn-to-cluster's ``faiss_k_*.npz``) and validate it.

    Parameters
    ----------
    path : the ``.npz`` file.
    n_items : the number of feature rows it must describe; ``None`` skips that check.

    Only learn-to-cluster's ``data`` array may be an object array (its hnsw files, rows of
    varying length); it is the one case read with pickle enabled.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: kNN file not found")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: corrupt or unreadable kNN file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"nbrs", "sims"} <= keys:
                knn = Knn(_index_array(npz["nbrs"], path), npz["sims"].astype(np.float32))
            elif "data" in keys:
                try:
                    data = npz["data"]
                except ValueError:  # an object array: learn-to-cluster's hnsw rows
                    with np.load(path, allow_pickle=True) as npz_objects:
                        data = npz_objects["data"]
                knn = _from_learn_to_cluster(data, path)
            else:
                raise InputError(
                    f"{path}: expected arrays 'nbrs' and 'sims' (or learn-to-cluster's 'data'), "
                    f"found {sorted(keys)}"
                )
    except InputError:
        raise
    except Exception as exc:  # zlib, zipfile, pickle and numpy raise many types here
        raise InputError(f"{path}: corrupt or unreadable kNN file ({exc})") from exc
    _validate_knn(knn, path, n_items)
    return knn


def _validate_knn(knn: Knn, path: Path, n_items: int | None) -> None:
    if knn.nbrs.ndim != 2 or knn.nbrs.shape != knn.sims.shape:
        raise InputError(
            f"{path}: nbrs {knn.nbrs.shape} and sims {knn.sims.shape} must be equal 2-D shapes"
        )
    n = knn.n
    if n_items is not None and n != n_items:
        raise InputError(f"{path}: kNN graph has {n} rows, but the features have {n_items} items")
    if knn.nbrs.size and (knn.nbrs.min() < -1 or knn.nbrs.max() >= n):
        raise InputError(f"{path}: neighbour indices outside [-1, {n - 1}]")
    if not np.all(np.isfinite(knn.sims)):
        raise InputError(f"{path}: similarities contain NaN or Inf")
    unsorted = np.flatnonzero((np.diff(knn.sims, axis=1) > 1e-5).any(axis=1))
    if unsorted.size:
        raise InputError(
            f"{path}: rows not sorted by descending similarity (first rows: "
            f"{unsorted[:5].tolist()})"
        )
