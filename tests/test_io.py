"""Tests of facecluster.io: round trips, learn-to-cluster conversion, validation, atomic writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from facecluster.io import (
    InputError,
    Knn,
    atomic_path,
    l2_normalize,
    read_features,
    read_knn,
    read_labels,
    write_features,
    write_knn,
    write_labels,
)


def _names(path: Path):
    """``pytest.raises(..., match=...)`` pattern: the message must contain the file path."""
    return re.escape(str(path))


def _features(n: int = 50, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32)


def _knn(n: int = 20, k: int = 5, seed: int = 0) -> Knn:
    x = l2_normalize(_features(n, 8, seed))
    sims = x @ x.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return Knn(order.astype(np.int32), np.take_along_axis(sims, order, axis=1).astype(np.float32))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- round trips


def test_features_round_trip_raw(tmp_path):
    x = _features(37, 12)
    path = tmp_path / "feats.bin"
    write_features(path, x)
    assert path.stat().st_size == x.size * 4
    # raw little-endian float32, row-major, no header
    np.testing.assert_array_equal(np.fromfile(path, dtype="<f4").reshape(37, 12), x)
    got = read_features(path, 12, normalize=False)
    assert got.dtype == np.float32 and got.shape == (37, 12)
    np.testing.assert_array_equal(got, x)
    got = read_features(path, 12, n_items=37, normalize=False)
    np.testing.assert_array_equal(got, x)


def test_features_write_converts_dtype(tmp_path):
    x = _features(5, 4).astype(np.float64)
    path = tmp_path / "feats.bin"
    write_features(path, x)
    np.testing.assert_array_equal(read_features(path, 4, normalize=False), x.astype(np.float32))


def test_write_features_rejects_non_2d(tmp_path):
    with pytest.raises(ValueError):
        write_features(tmp_path / "f.bin", np.zeros(4, dtype=np.float32))
    assert _leftovers(tmp_path) == []


def test_read_features_l2_normalises(tmp_path):
    x = _features(40, 16) * 7.5
    path = tmp_path / "feats.bin"
    write_features(path, x)
    got = read_features(path, 16)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)


def test_labels_round_trip(tmp_path):
    labels = np.array([3, 0, 0, 12, -1, 7, 2**40], dtype=np.int64)
    path = tmp_path / "labels.meta"
    write_labels(path, labels)
    assert path.read_text().splitlines() == [str(v) for v in labels.tolist()]
    got = read_labels(path)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, labels)


def test_labels_round_trip_int32(tmp_path):
    labels = np.arange(100, dtype=np.int32) % 7
    path = tmp_path / "labels.labels"
    write_labels(path, labels)
    np.testing.assert_array_equal(read_labels(path), labels)


def test_write_labels_rejects_floats(tmp_path):
    with pytest.raises(ValueError):
        write_labels(tmp_path / "l.meta", np.array([1.0, 2.0]))
    assert _leftovers(tmp_path) == []


def test_knn_round_trip(tmp_path):
    knn = _knn(30, 6)
    path = tmp_path / "knn.npz"
    write_knn(path, knn)
    with np.load(path) as npz:
        assert set(npz.files) == {"nbrs", "sims"}
        assert npz["nbrs"].dtype == np.int32 and npz["sims"].dtype == np.float32
    got = read_knn(path, n_items=30)
    assert got.nbrs.dtype == np.int32 and got.sims.dtype == np.float32
    assert (got.n, got.k) == (30, 6)
    np.testing.assert_array_equal(got.nbrs, knn.nbrs)
    np.testing.assert_array_equal(got.sims, knn.sims)
    assert np.all(got.nbrs[:, 0] == np.arange(30))  # self first
    assert np.all(np.diff(got.sims, axis=1) <= 0)


def test_knn_round_trip_with_missing_entries(tmp_path):
    nbrs = np.array([[0, 1, -1], [1, 0, -1], [2, -1, -1]], dtype=np.int32)
    sims = np.array([[1.0, 0.5, -1.0], [1.0, 0.5, -1.0], [1.0, -1.0, -1.0]], dtype=np.float32)
    path = tmp_path / "knn.npz"
    write_knn(path, Knn(nbrs, sims))
    got = read_knn(path, n_items=3)
    np.testing.assert_array_equal(got.nbrs, nbrs)
    np.testing.assert_array_equal(got.sims, sims)


def test_knn_truncate():
    knn = _knn(20, 6)
    t = knn.truncate(3)
    assert t.k == 3 and t.nbrs.flags.c_contiguous
    np.testing.assert_array_equal(t.nbrs, knn.nbrs[:, :3])
    with pytest.raises(ValueError):
        knn.truncate(7)


# --------------------------------------------------------------------------- learn-to-cluster


def _l2c_data(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """learn-to-cluster's faiss_k_*.npz ``data``: (N, 2, k) float64, [indices, 1 - cos]."""
    sims = (x @ x.T).astype(np.float64)
    np.fill_diagonal(sims, 1.0)  # self first with distance 0
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, order, axis=1)
    data = np.stack([order.astype(np.float64), 1.0 - top], axis=1)
    assert data.shape == (x.shape[0], 2, k) and data.dtype == np.float64
    return data, order, top


def test_read_learn_to_cluster_format(tmp_path):
    x = l2_normalize(_features(40, 8, seed=3))
    data, order, top = _l2c_data(x, 7)
    assert np.all(np.diff(data[:, 1, :], axis=1) >= 0)  # ascending distance
    path = tmp_path / "faiss_k_7.npz"
    np.savez(path, data=data)
    knn = read_knn(path, n_items=40)
    assert knn.nbrs.dtype == np.int32 and knn.sims.dtype == np.float32
    assert knn.nbrs.shape == knn.sims.shape == (40, 7)
    np.testing.assert_array_equal(knn.nbrs, order.astype(np.int32))
    np.testing.assert_allclose(knn.sims, top.astype(np.float32), atol=1e-6)
    assert np.all(knn.nbrs[:, 0] == np.arange(40))  # self first
    assert np.all(np.diff(knn.sims, axis=1) <= 0)  # descending similarity


def test_read_learn_to_cluster_sorts_by_descending_similarity(tmp_path):
    x = l2_normalize(_features(30, 8, seed=4))
    data, order, top = _l2c_data(x, 6)
    rng = np.random.default_rng(0)
    shuffled = data.copy()
    for i in range(len(shuffled)):
        perm = rng.permutation(6)
        shuffled[i] = shuffled[i][:, perm]
    path = tmp_path / "faiss_k_6.npz"
    np.savez(path, data=shuffled)
    knn = read_knn(path)
    np.testing.assert_array_equal(knn.nbrs, order.astype(np.int32))
    np.testing.assert_allclose(knn.sims, top.astype(np.float32), atol=1e-6)
    assert np.all(np.diff(knn.sims, axis=1) <= 0)


def test_read_learn_to_cluster_bad_shape(tmp_path):
    path = tmp_path / "faiss_k_5.npz"
    np.savez(path, data=np.zeros((10, 3, 5)))
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


def test_read_learn_to_cluster_non_integer_indices(tmp_path):
    data, _, _ = _l2c_data(l2_normalize(_features(10, 4)), 3)
    data[2, 0, 1] = 1.5
    path = tmp_path / "faiss_k_3.npz"
    np.savez(path, data=data)
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


# --------------------------------------------------------------------------- bad features


def test_feature_label_length_mismatch(tmp_path):
    feats = tmp_path / "feats.bin"
    labels = tmp_path / "labels.meta"
    write_features(feats, _features(20, 16))
    write_labels(labels, np.zeros(21, dtype=np.int64))
    n_items = len(read_labels(labels))
    with pytest.raises(InputError, match=_names(feats)) as info:
        read_features(feats, 16, n_items=n_items, labels_path=labels)
    assert str(labels) in str(info.value)


def test_feature_wrong_dimension(tmp_path):
    feats = tmp_path / "feats.bin"
    labels = tmp_path / "labels.meta"
    write_features(feats, _features(10, 128))
    write_labels(labels, np.arange(10))
    with pytest.raises(InputError, match=_names(feats)):
        read_features(feats, 256, n_items=len(read_labels(labels)), labels_path=labels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_feature_non_finite_row(tmp_path, bad):
    x = _features(12, 8)
    x[5, 3] = bad
    path = tmp_path / "feats.bin"
    write_features(path, x)
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 8)
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 8, normalize=False)


def test_feature_truncated_file(tmp_path):
    path = tmp_path / "feats.bin"
    write_features(path, _features(10, 32))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 32)
    path.write_bytes(data[:-4])  # a whole float32 missing, still not a whole row
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 32)


def test_feature_empty_file(tmp_path):
    path = tmp_path / "feats.bin"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 8)


def test_feature_all_zero_row(tmp_path):
    x = _features(9, 8)
    x[4] = 0.0
    path = tmp_path / "feats.bin"
    write_features(path, x)
    with pytest.raises(InputError, match=_names(path)):
        read_features(path, 8)
    # without normalisation a zero row is legal
    np.testing.assert_array_equal(read_features(path, 8, normalize=False), x)


def test_missing_files(tmp_path):
    for reader in (lambda p: read_features(p, 8), read_labels, read_knn):
        path = tmp_path / "does_not_exist.dat"
        with pytest.raises(InputError, match=_names(path)):
            reader(path)


# --------------------------------------------------------------------------- bad labels


@pytest.mark.parametrize(
    "text",
    [
        "1\n2\nabc\n3\n",  # not a number
        "1\n2.5\n3\n",
        "1\n2,5\n3\n",
        "1\n\n3\n",  # an empty line
        "",  # an empty file
        "1\n99999999999999999999\n",  # overflows int64
    ],
)
def test_bad_labels_name_the_file(tmp_path, text):
    path = tmp_path / "labels.meta"
    path.write_text(text)
    with pytest.raises(InputError, match=_names(path)):
        read_labels(path)


# --------------------------------------------------------------------------- bad kNN files


def test_knn_zip_magic_then_garbage(tmp_path):
    path = tmp_path / "knn.npz"
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2000))
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, -5])
def test_knn_truncated_npz(tmp_path, keep):
    path = tmp_path / "knn.npz"
    write_knn(path, _knn(50, 8))
    data = path.read_bytes()
    cut = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:cut])
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


@pytest.mark.parametrize(
    "arrays",
    [
        {"neighbours": np.zeros((3, 2), np.int32), "sims": np.ones((3, 2), np.float32)},
        {"nbrs": np.zeros((4, 3), np.int32), "sims": np.zeros((4, 2), np.float32)},
    ],
    ids=["wrong_keys", "shape_mismatch"],
)
def test_knn_bad_arrays(tmp_path, arrays):
    path = tmp_path / "knn.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


def test_knn_nbrs_out_of_range(tmp_path):
    knn = _knn(20, 4)
    for bad in (20, -2):
        nbrs = knn.nbrs.copy()
        nbrs[3, 2] = bad
        path = tmp_path / f"knn_{bad}.npz"
        write_knn(path, Knn(nbrs, knn.sims))
        with pytest.raises(InputError, match=_names(path)):
            read_knn(path)


def test_knn_row_count_mismatch(tmp_path):
    path = tmp_path / "knn.npz"
    write_knn(path, _knn(20, 4))
    assert read_knn(path, n_items=20).n == 20
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path, n_items=21)


def test_knn_non_finite_sims(tmp_path):
    knn = _knn(10, 3)
    sims = knn.sims.copy()
    sims[1, 1] = np.nan
    path = tmp_path / "knn.npz"
    write_knn(path, Knn(knn.nbrs, sims))
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert _leftovers(target.parent) == ["out.txt"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_atomic_path_failed_overwrite_keeps_old_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old content")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, partial")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old content"
    assert _leftovers(tmp_path) == ["out.txt"]


def test_writer_failure_keeps_old_file(tmp_path):
    """A writer that fails midway (un-convertible data) leaves the previous file intact."""
    path = tmp_path / "knn.npz"
    knn = _knn(10, 3)
    write_knn(path, knn)
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        write_knn(path, Knn(np.array([["a", "b"]]), knn.sims))
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == ["knn.npz"]


# ------------------------------------------------------------------ regressions (fixed bugs)


def test_knn_random_bytes(tmp_path):
    path = tmp_path / "knn.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


def test_knn_object_nbrs(tmp_path):
    path = tmp_path / "knn.npz"
    nbrs = np.empty(2, dtype=object)
    nbrs[0], nbrs[1] = [0, 1], [1]
    np.savez(path, nbrs=nbrs, sims=np.ones((2, 2), np.float32))
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


def test_knn_int64_indices_overflowing_int32(tmp_path):
    path = tmp_path / "knn.npz"
    np.savez(
        path, nbrs=np.array([[0, 2**32 + 1], [1, 0]], np.int64), sims=np.ones((2, 2), np.float32)
    )
    with pytest.raises(InputError, match=_names(path)):
        read_knn(path)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_features_huge_finite_values_normalise(tmp_path):
    path = tmp_path / "feats.bin"
    write_features(path, np.full((3, 4), 1e20, np.float32))
    got = read_features(path, 4)
    np.testing.assert_allclose(np.linalg.norm(got.astype(np.float64), axis=1), 1.0, rtol=1e-6)


def test_written_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "labels.meta"
    write_labels(path, np.arange(3))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_knn_unsorted_rows_rejected(tmp_path):
    path = tmp_path / "knn.npz"
    np.savez(
        path,
        nbrs=np.array([[0, 1], [1, 0]], np.int32),
        sims=np.array([[0.5, 1.0], [1.0, 0.5]], np.float32),
    )
    with pytest.raises(InputError, match=_names(path) + ".*not sorted"):
        read_knn(path)
