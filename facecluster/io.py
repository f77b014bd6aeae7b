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
import json
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
    "FeatureFile",
    "inspect_features",
    "feature_mean",
    "read_features",
    "read_ids",
    "scan_features",
    "write_features",
    "write_json",
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
    x: np.ndarray, *, source: str = "features", chunk_rows: int = 1 << 16, first_row: int = 0
) -> np.ndarray:
    """Divide each row of ``x`` (N, D) by its Euclidean norm, in place; return ``x``.

    Norms are computed in float64 (row chunks bound the extra memory), so large finite
    values do not overflow. Raises :class:`InputError` naming ``source`` if a row has zero
    norm (no direction), numbering rows from ``first_row``.
    """
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        # accumulated in float64 without a float64 copy of the block
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        bad = np.flatnonzero(norms == 0)
        if bad.size:
            raise InputError(
                f"{source}: row(s) with zero norm (all zero: no direction) cannot be "
                f"L2-normalised (first rows: {(first_row + start + bad[:5]).tolist()})"
            )
        block /= norms[:, None]
    return x


#: feature dimensions offered when a ``.bin`` file's size does not fit the configured one
COMMON_DIMS = (64, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096)

#: rows read (and converted to float32) at a time: bounds the memory beyond the result
CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class FeatureFile:
    """Where the rows of a feature file lie, read from its header or size, not its values.

    Attributes
    ----------
    path : the file (``.npy``, or a headerless float32 ``.bin``).
    n, dim : its shape (N, D).
    dtype : the stored dtype (float16/32/64; ``.bin`` is little-endian float32).
    offset : bytes before the first row (the ``.npy`` header).
    """

    path: Path
    n: int
    dim: int
    dtype: np.dtype
    offset: int


def _fitting_dims(values: int) -> str:
    fits = [f"{d} (N={values // d:,})" for d in COMMON_DIMS if values % d == 0]
    return "dims that fit: " + ", ".join(fits) if fits else "no common dim fits it"


def _npy_header(fh) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``fh``, left at its data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def inspect_features(path: str | os.PathLike, dim: int | None = None) -> FeatureFile:
    """Shape and dtype of a feature file from its ``.npy`` header, or for a ``.bin`` from its
    size and ``dim``; reads no values.

    Raises
    ------
    InputError
        Missing or empty file; a ``.npy`` that is not 2-D floating point (float16/32/64), is
        stored in Fortran order, is shorter than its header says (truncated) or whose
        width differs from ``dim``; a ``.bin`` without ``dim`` or whose size is not a whole
        number of dim-wide float32 rows (the message names the dims that would fit).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: feature file not found")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: feature file is empty")
    if path.suffix == ".npy":
        try:
            with open(path, "rb") as fh:
                shape, fortran, dtype = _npy_header(fh)
                offset = fh.tell()
        except (ValueError, OSError, SyntaxError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from exc
        if len(shape) != 2:
            raise InputError(f"{path}: features must be a 2-D array (N, D), got shape {shape}")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise InputError(f"{path}: features must be float16, float32 or float64, got {dtype}")
        if fortran and shape[0] > 1 and shape[1] > 1:
            raise InputError(
                f"{path}: stored in Fortran (column-major) order; save it with "
                f"np.save(path, np.ascontiguousarray(x))"
            )
        n, d = int(shape[0]), int(shape[1])
        if n == 0 or d == 0:
            raise InputError(f"{path}: no features (shape {shape})")
        if dim is not None and d != dim:
            raise InputError(f"{path}: features of dim {d}, but the configured dim is {dim}")
        need = offset + n * d * dtype.itemsize
        if size < need:
            raise InputError(
                f"{path}: truncated: its header says {n:,} rows of dim {d} ({need:,} bytes), "
                f"the file has {size:,} bytes"
            )
        return FeatureFile(path, n, d, dtype, offset)
    if dim is None:
        raise InputError(f"{path}: a headerless .bin needs its dim (the config's `dim`)")
    row_bytes = 4 * dim
    if size % row_bytes:
        hint = "not a whole number of float32 values" if size % 4 else _fitting_dims(size // 4)
        raise InputError(
            f"{path}: {size:,} bytes is not a whole number of dim-{dim} float32 rows "
            f"(truncated file or wrong dimension; {hint})"
        )
    return FeatureFile(path, size // row_bytes, dim, np.dtype("<f4"), 0)


def _row_chunks(src: FeatureFile, chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 block) for consecutive blocks of rows, read with plain file reads
    (a memory map would count the whole file in the job's resident memory)."""
    row_bytes = src.dim * src.dtype.itemsize
    with open(src.path, "rb") as fh:
        fh.seek(src.offset)
        for start in range(0, src.n, chunk_rows):
            rows = min(chunk_rows, src.n - start)
            raw = fh.read(rows * row_bytes)
            if len(raw) != rows * row_bytes:
                raise InputError(f"{src.path}: truncated at row {start + len(raw) // row_bytes:,}")
            block = np.frombuffer(raw, dtype=src.dtype).reshape(rows, src.dim)
            yield start, block.astype(np.float32)


def _nonfinite_rows(block: np.ndarray, start: int) -> np.ndarray:
    """Indices (numbered from ``start``) of the rows of ``block`` holding NaN or Inf."""
    return start + np.flatnonzero(~np.isfinite(block).all(axis=1))


def feature_mean(path: str | os.PathLike, dim: int | None = None) -> np.ndarray:
    """The mean row of a feature file (float64, (D,)), read in blocks of rows; for the
    ``normalise: centre`` convention."""
    src = inspect_features(path, dim)
    total = np.zeros(src.dim, dtype=np.float64)
    for start, block in _row_chunks(src, CHUNK_ROWS):
        bad = _nonfinite_rows(block, start)
        if bad.size:
            _raise_not_finite(src.path, bad, None)
        total += block.sum(axis=0, dtype=np.float64)
    return total / src.n


def _raise_not_finite(path, bad: np.ndarray, count: int | None) -> None:
    count = bad.size if count is None else count
    raise InputError(f"{path}: {count} row(s) contain NaN or Inf (first rows: {bad[:5].tolist()})")


def scan_features(path: str | os.PathLike, dim: int | None = None) -> FeatureFile:
    """Check every value of a feature file without keeping it: no NaN/Inf, no all-zero row
    (nothing to normalise). Returns its :class:`FeatureFile`; raises :class:`InputError`
    naming the file, the problem and the first offending rows."""
    src = inspect_features(path, dim)
    for start, block in _row_chunks(src, CHUNK_ROWS):
        bad = _nonfinite_rows(block, start)
        if bad.size:
            raise InputError(f"{src.path}: row(s) with NaN or Inf (first rows: {bad[:5].tolist()})")
        zero = np.flatnonzero(~block.any(axis=1))
        if zero.size:
            raise InputError(
                f"{src.path}: all-zero row(s) (no direction to normalise; first rows: "
                f"{(start + zero[:5]).tolist()})"
            )
    return src


def read_features(
    path: str | os.PathLike,
    dim: int,
    n_items: int | None = None,
    *,
    normalize: bool = True,
    labels_path: str | os.PathLike | None = None,
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """Read a feature file into a float32 array of shape (N, dim).

    Parameters
    ----------
    path : a raw little-endian float32 ``.bin``, or a ``.npy`` of float16/32/64 (N, dim).
    dim : feature dimension D.
    n_items : expected number of rows N (e.g. the number of labels); ``None`` infers it.
    normalize : L2-normalise every row (the convention of every reference system).
    labels_path : only used to name the label file in length-mismatch errors.
    centre : a (D,) vector subtracted from every row before normalising (``normalise:
        centre``: embeddings whose directions share a large common component).

    Rows are read and converted in blocks, so the peak memory is the float32 result plus
    one block, whatever the stored dtype.

    Raises
    ------
    InputError
        Missing, empty or truncated file, wrong dimension (a ``.bin`` whose size fits no
        whole number of rows names the dims that would), row count different from
        ``n_items``, NaN/Inf values, zero rows, each naming the file and the first rows.
    """
    path = Path(path)
    other = f" in {labels_path}" if labels_path else ""
    if n_items is not None and path.suffix != ".npy" and path.is_file():
        size, expected = path.stat().st_size, n_items * 4 * dim
        if size != expected:
            hint = f"it holds {size / 4 / n_items:.6g} float32 values per item" if n_items else ""
            raise InputError(
                f"{path}: feature/label length mismatch or wrong dimension: {size:,} bytes, "
                f"but {n_items:,} labels{other} of dim {dim} need {expected:,} bytes ({hint})"
            )
    src = inspect_features(path, dim)
    if n_items is not None and src.n != n_items:
        raise InputError(
            f"{path}: feature/label length mismatch: {src.n:,} rows, but {n_items:,} labels{other}"
        )
    feats = np.empty((src.n, src.dim), dtype=np.float32)
    bad, n_bad = [], 0
    shift = None if centre is None else np.asarray(centre, dtype=np.float32)
    for start, block in _row_chunks(src, CHUNK_ROWS):
        rows = _nonfinite_rows(block, start)
        if rows.size:
            n_bad += rows.size
            bad.extend(rows[: max(0, 5 - len(bad))].tolist())
            continue
        if n_bad:
            continue
        if shift is not None:
            block -= shift
        if normalize:
            l2_normalize(block, source=str(src.path), first_row=start)
        feats[start : start + block.shape[0]] = block
    if n_bad:
        _raise_not_finite(src.path, np.asarray(bad), n_bad)
    return feats


def read_ids(path: str | os.PathLike, n_items: int, features: str | os.PathLike) -> np.ndarray:
    """The ids of a feature file's rows (``ids``: one string per line, e.g. the image path)
    -> object array (N,).

    Raises
    ------
    InputError
        Missing file, a line count other than the ``n_items`` rows of ``features``, empty
        ids, duplicate ids (naming the first ones and their lines).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ids file not found")
    text = path.read_text(encoding="utf-8", errors="strict")
    ids = pd.Series(text.splitlines(), dtype=object)
    if ids.size != n_items:
        raise InputError(
            f"{path}: {ids.size:,} ids, but {features} has {n_items:,} rows (one id per line, "
            f"line i naming row i)"
        )
    empty = np.flatnonzero((ids.str.strip() == "").to_numpy())
    if empty.size:
        raise InputError(
            f"{path}: {empty.size} empty id(s) (first lines: {(empty[:5] + 1).tolist()})"
        )
    dup = np.flatnonzero(ids.duplicated(keep=False).to_numpy())
    if dup.size:
        first = ", ".join(f"{ids.iat[i]!r} (line {i + 1})" for i in dup[:5])
        raise InputError(f"{path}: {dup.size} lines hold duplicate ids: {first}")
    return ids.to_numpy()


def write_json(path: str | os.PathLike, obj, *, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON (keys sorted unless ``sort_keys`` is False) with a
    final newline, atomically: run records, kNN reports, calibrations."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


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
    return raw.astype(np.int32, copy=False)


#: rows of a kNN file's arrays read at once (:func:`_read_columns`)
KNN_READ_ROWS = 1 << 18


def _read_columns(npz, name: str, k: int | None, path: Path) -> np.ndarray:
    """Member ``name`` of an open ``.npz``, a 2-D array, read in blocks of
    :data:`KNN_READ_ROWS` rows keeping its first ``k`` columns (all when None): memory is
    the result plus one block, not the whole member (a k=257 graph shared by several
    methods is 10.7 GB at 5.21M items; GCN-V reads its first 80 columns)."""
    with npz.zip.open(f"{name}.npy") as fh:
        shape, fortran, dtype = _npy_header(fh)
        if len(shape) != 2 or fortran or dtype.hasobject:
            return npz[name] if k is None else npz[name][:, :k]
        n, width = shape
        keep = width if k is None else min(k, width)
        out = np.empty((n, keep), dtype=dtype)
        for start in range(0, n, KNN_READ_ROWS):
            rows = min(KNN_READ_ROWS, n - start)
            raw = fh.read(rows * width * dtype.itemsize)
            if len(raw) != rows * width * dtype.itemsize:
                raise InputError(f"{path}: '{name}' is truncated")
            out[start : start + rows] = np.frombuffer(raw, dtype).reshape(rows, width)[:, :keep]
    return out


def read_knn(path: str | os.PathLike, n_items: int | None = None, k: int | None = None) -> Knn:
    """Read a kNN ``.npz`` (ours, or learn-to-cluster's ``faiss_k_*.npz``) and validate it.

    Parameters
    ----------
    path : the ``.npz`` file.
    n_items : the number of feature rows it must describe; ``None`` skips that check.
    k : keep the first ``k`` neighbours of each row (a file of larger k shared by several
        methods), read block by block so that the whole file is never in memory; None:
        all. A file with fewer than ``k`` columns is returned whole (the caller checks).

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
                knn = Knn(
                    _index_array(_read_columns(npz, "nbrs", k, path), path),
                    _read_columns(npz, "sims", k, path).astype(np.float32, copy=False),
                )
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
