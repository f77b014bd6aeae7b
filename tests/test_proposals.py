"""Cluster proposals: size-capped components (iteration 0), super-vertices (iteration 1),
the proposal-set container and the intra-proposal edges."""

import numpy as np
import pytest

from facecluster.io import InputError, Knn
from facecluster.knn import brute_force_knn
from facecluster.proposals import (
    Proposals,
    generate,
    intra_edges,
    iteration0,
    iteration1,
    set_ks,
    super_vertices,
)


def _knn(edges, n, k=3):
    """A kNN graph (self first) with the given (i, j, sim) edges in both directions."""
    nbrs = np.full((n, k), -1, dtype=np.int32)
    sims = np.full((n, k), -1.0, dtype=np.float32)
    nbrs[:, 0] = np.arange(n)
    sims[:, 0] = 1.0
    fill = np.ones(n, dtype=int)
    for i, j, s in sorted(edges, key=lambda e: -e[2]):
        for a, b in ((i, j), (j, i)):
            nbrs[a, fill[a]], sims[a, fill[a]] = b, s
            fill[a] += 1
    return Knn(nbrs, sims)


def test_iteration0_components_threshold_and_size_cap():
    # 0-1-2 strongly linked; 3-4 linked; 5 alone; a chain 6..11 of 6 items with one weak link
    edges = [(0, 1, 0.9), (1, 2, 0.9), (3, 4, 0.8), (6, 7, 0.95), (7, 8, 0.95), (8, 9, 0.75)]
    edges += [(9, 10, 0.95), (10, 11, 0.95), (2, 3, 0.5)]
    knn = _knn(edges, 12)
    labels, props = iteration0(knn, th=0.7, step=0.5, minsz=3, maxsz=4)
    # 2-3 (0.5) is below th; 6..11 (6 items) exceeds maxsz=4 and splits at the next
    # threshold 0.7 + 0.3 * 0.5 = 0.85, cutting the 0.75 link
    groups = sorted(props.members(p).tolist() for p in range(props.n_proposals))
    assert groups == [[0, 1, 2], [6, 7, 8], [9, 10, 11]]  # 3-4 is below minsz
    assert labels.shape == (12,) and labels.min() == 0
    assert labels[3] == labels[4] and labels[5] not in labels[np.arange(12) != 5]


def test_iteration1_merges_super_vertices_within_caps():
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3]
    # three identities; each split by iteration 0 into two super-vertices
    labels0 = np.repeat(np.arange(6), 5)
    ident = labels0 // 2
    feats = centres[ident] + 0.05 * rng.standard_normal((30, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    sv = super_vertices(feats, labels0, 3)
    assert sv.n == 6 and sv.k == 3
    # the super-vertex of items 0..4 is the (un-normalised) mean of their features
    mean = feats[:5].mean(axis=0)
    np.testing.assert_allclose(sv.sims[0, 0], mean @ mean, rtol=1e-5)
    props = iteration1(sv, labels0, k=2, sv_maxsz=2, minsz=3, maxsz=500)
    groups = sorted(props.members(p).tolist() for p in range(props.n_proposals))
    assert groups == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    # a cap of one super-vertex leaves nothing (sv_minsz 2: never duplicate a super-vertex)
    assert iteration1(sv, labels0, k=2, sv_maxsz=1).n_proposals == 0
    # an item cap below the merged size drops them
    assert iteration1(sv, labels0, k=2, sv_maxsz=2, maxsz=9).n_proposals == 0
    # too few super-vertices for the kNN: no proposals
    assert super_vertices(feats, labels0, 6) is None
    assert iteration1(None, labels0, k=2, sv_maxsz=2).n_proposals == 0


def test_generate_folders_and_keep():
    rng = np.random.default_rng(1)
    c = np.linalg.qr(rng.standard_normal((16, 16)))[0][:4]
    y = np.repeat(np.arange(4), 12)
    x = c[y] + 0.1 * rng.standard_normal((48, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    knn = brute_force_knn(x, 10)
    spec = {
        "k": 10,
        "iter0": [{"th": 0.6}, {"th": 0.7, "keep": False}, {"th": 0.5, "k": 5}],
        "iter1": [{"k": 2, "sv_maxsz": 4}],
    }
    props = generate(x, knn, spec)
    assert len(props.folders) == 2 + 3  # two kept iteration-0 folders, three iteration-1
    assert props.folders[0].startswith("k_10_th_0.6_step_0.05_minsz_3_maxsz_300_iter_0")
    assert props.folders[-1].startswith("k_5_th_0.5")
    assert props.folders[-1].endswith("sv_minsz_2_maxsz_4_iter_1")
    assert set(np.unique(props.folder)) <= set(range(5))
    assert np.all(props.sizes >= 3)
    assert set_ks(spec) == [10, 10, 5]
    with pytest.raises(ValueError, match="k=20"):
        generate(x, knn, {"k": 20, "iter0": [{"th": 0.5}]})


def test_round_trip_and_corrupt_file(tmp_path):
    props = Proposals.from_lists([[0, 1, 2], [2, 3, 4, 5]], folder=[0, 1], folders=("a", "b"))
    path = tmp_path / "p.npz"
    props.write(path)
    back = Proposals.read(path, n_items=6)
    np.testing.assert_array_equal(back.items, props.items)
    np.testing.assert_array_equal(back.offsets, [0, 3, 7])
    assert back.folders == ("a", "b") and back.members(1).tolist() == [2, 3, 4, 5]
    with pytest.raises(InputError, match="outside"):
        Proposals.read(path, n_items=5)
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="p.npz"):
        Proposals.read(path)


def test_intra_edges_only_inside_each_proposal():
    edges = [(0, 1, 0.9), (1, 2, 0.8), (2, 3, 0.7), (3, 4, 0.6)]
    knn = _knn(edges, 5)
    props = Proposals.from_lists([[0, 1, 2], [2, 3], [4]])
    owner, src, dst, sims = intra_edges(props, knn)
    got = sorted(
        (int(o), int(props.members(o)[s]), int(props.members(o)[d]), round(float(w), 2))
        for o, s, d, w in zip(owner, src, dst, sims, strict=True)
    )
    assert got == [
        (0, 0, 1, 0.9), (0, 1, 0, 0.9), (0, 1, 2, 0.8), (0, 2, 1, 0.8),
        (1, 2, 3, 0.7), (1, 3, 2, 0.7),
    ]  # fmt: skip
