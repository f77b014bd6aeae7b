import numpy as np
import pytest

from facecluster.data.partition import assign_parts, partition_files, split_indices, split_parts
from facecluster.data.synthetic import SyntheticSpec, generate, n_identities
from facecluster.io import InputError, read_features, read_labels, write_features, write_labels


def test_split_parts():
    assert split_parts("part0") == [0]
    assert split_parts("part3") == [1, 2, 3]
    with pytest.raises(ValueError):
        split_parts("test")


def test_synthetic_shapes_and_seed():
    spec = SyntheticSpec(scale=0.002, seed=1)
    f, lab = generate(spec)
    assert f.dtype == np.float32 and f.shape[1] == 256
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
    assert np.unique(lab).size <= n_identities(spec) == 171
    f2, lab2 = generate(spec)
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_array_equal(lab, lab2)
    f3, _ = generate(SyntheticSpec(scale=0.002, seed=2))
    assert not np.array_equal(f[:10], f3[:10])


def test_synthetic_resembles_ms1m_similarities():
    f, lab = generate(SyntheticSpec(scale=0.003, seed=0))
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, lab.size, size=(2, 20000))
    sims = np.einsum("ij,ij->i", f[i], f[j])
    same = (lab[i] == lab[j]) & (i != j)
    # different identities mostly below 0.4
    assert np.mean(sims[~same] < 0.4) > 0.5
    # long-tailed image counts with a mean near MS1M's 68
    counts = np.bincount(lab)
    assert 40 < counts.mean() < 100 and counts.max() > 3 * np.median(counts)


def test_assign_parts_disjoint_and_balanced():
    labels = np.repeat(np.arange(100), 3)
    parts = assign_parts(labels, 10, seed=5)
    for ident in range(100):
        assert np.unique(parts[labels == ident]).size == 1
    assert np.all(np.bincount(parts) == 30)
    np.testing.assert_array_equal(parts, assign_parts(labels, 10, seed=5))
    assert not np.array_equal(parts, assign_parts(labels, 10, seed=6))
    idx = split_indices(parts, "part3")
    assert set(np.unique(parts[idx])) == {1, 2, 3}
    with pytest.raises(ValueError, match="unknown labels"):
        assign_parts(np.array([0, -1, 1]), 2, seed=0)
    with pytest.raises(ValueError, match="cannot fill"):
        assign_parts(np.array([0, 1]), 10, seed=0)


def test_partition_files_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(50), 4)
    feats = rng.standard_normal((labels.size, 8)).astype(np.float32)
    write_features(tmp_path / "full.bin", feats)
    write_labels(tmp_path / "full.meta", labels)
    splits = ["part0", "part1", "part9"]
    counts = partition_files(
        tmp_path / "full.bin",
        tmp_path / "full.meta",
        {s: tmp_path / f"{s}.bin" for s in splits},
        {s: tmp_path / f"{s}.meta" for s in splits},
        dim=8,
        seed=1,
        chunk_rows=7,
    )
    assert counts["part0"] == 20 and counts["part1"] == 20 and counts["part9"] == 180
    for s in splits:
        got_labels = read_labels(tmp_path / f"{s}.meta")
        got = read_features(tmp_path / f"{s}.bin", 8, got_labels.size, normalize=False)
        idx = split_indices(assign_parts(labels, 10, seed=1), s)
        np.testing.assert_array_equal(got, feats[idx])
        np.testing.assert_array_equal(got_labels, labels[idx])
    train = set(read_labels(tmp_path / "part0.meta"))
    assert not train & set(read_labels(tmp_path / "part9.meta"))


def test_partition_rejects_bad_input(tmp_path):
    labels = np.repeat(np.arange(20), 2)
    write_labels(tmp_path / "full.meta", labels)
    write_features(tmp_path / "full.bin", np.ones((labels.size - 1, 8), np.float32))
    out = {"part1": tmp_path / "p.bin"}
    with pytest.raises(InputError, match="full.bin.*length mismatch"):
        partition_files(tmp_path / "full.bin", tmp_path / "full.meta", out, out, dim=8)
    bad = np.ones((labels.size, 8), np.float32)
    bad[3, 2] = np.nan
    write_features(tmp_path / "full.bin", bad)
    split = {"part9": tmp_path / "p9.bin"}
    labs = {"part9": tmp_path / "p9.meta"}
    with pytest.raises(InputError, match="full.bin.*NaN"):
        partition_files(tmp_path / "full.bin", tmp_path / "full.meta", split, labs, dim=8)
    assert not (tmp_path / "p9.bin").exists()


def test_low_quality_images_crowd_in_a_shared_region():
    import dataclasses

    from facecluster.data import synthetic

    spec = SyntheticSpec(scale=0.002, seed=3, low_quality=0.3, quality_a=0.5, quality_b=0.5)
    f, lab = generate(spec)
    # the region's centre direction, from the generator's fourth seed stream
    root = np.random.SeedSequence(spec.seed)
    root.spawn(3)
    centre = synthetic._low_quality_region(spec, np.random.default_rng(root.spawn(1)[0]))[:, 0]
    proj = f @ centre
    # clean images are nearly orthogonal to it; a long tail of images leans towards it,
    # whatever their identity
    assert np.mean(np.abs(proj) < 0.2) > 0.6
    heavy = proj > 0.5
    assert 0.03 < heavy.mean() < 0.2
    assert np.unique(lab[heavy]).size > 0.5 * np.unique(lab).size
    # deterministic, and without low-quality images the low-quality fields change nothing
    np.testing.assert_array_equal(f, generate(spec)[0])
    off = dataclasses.replace(spec, low_quality=0.0)
    other = dataclasses.replace(off, low_quality_pull=0.1, quality_a=9.0, low_quality_rank=2)
    np.testing.assert_array_equal(generate(off)[0], generate(other)[0])
    # the identities, image counts and labels do not depend on the low-quality images
    np.testing.assert_array_equal(lab, generate(off)[1])
