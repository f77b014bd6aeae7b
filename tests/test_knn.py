"""Tests of facecluster.knn.build_knn against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster.io import InputError, l2_normalize
from facecluster.knn import brute_force_knn, build_knn, exact_neighbours, recall_at_k

N, D, K = 500, 32, 10


def _random(n: int = N, d: int = D, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.standard_normal((n, d)).astype(np.float32))


def _clustered(n_clusters: int = 25, per: int = 40, d: int = D, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)
    x = np.repeat(centres, per, axis=0) + 0.3 * rng.standard_normal((n_clusters * per, d))
    return l2_normalize(x[rng.permutation(len(x))].astype(np.float32))


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact, strict=True))
    return hits / exact.size


def _assert_sorted_desc(sims: np.ndarray) -> None:
    assert np.all(np.diff(sims, axis=1) <= 0)


@pytest.fixture(params=["simd", "blas"])
def kernel(request):
    """Run a test on both faiss exact-search code paths.

    faiss (1.15) computes inner products with its own SIMD loop when ``nx * d`` of a search call
    is below ``distance_compute_blas_threshold`` (128000 by default: every call of these small
    tests) and with sgemm tiles otherwise (every full batch at D=256 in real use).
    """
    faiss = pytest.importorskip("faiss")
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 2**30 if request.param == "simd" else 0
    yield request.param
    faiss.cvar.distance_compute_blas_threshold = old


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return _random()


@pytest.fixture
def flat(data, kernel):
    return build_knn(data, K, index="flat", use_gpu=False)


def test_flat_matches_brute_force(data, flat):
    ref = brute_force_knn(data, K)
    assert flat.nbrs.dtype == np.int32 and flat.sims.dtype == np.float32
    assert flat.nbrs.shape == flat.sims.shape == (N, K)
    assert np.all(flat.nbrs[:, 0] == np.arange(N))  # self first
    assert np.all(ref.nbrs[:, 0] == np.arange(N))
    for i in range(N):
        assert set(flat.nbrs[i].tolist()) == set(ref.nbrs[i].tolist()), i
    np.testing.assert_allclose(flat.sims, ref.sims, atol=1e-5)
    # each returned similarity is the true inner product of that pair
    true = np.einsum("ij,ikj->ik", data, data[flat.nbrs])
    np.testing.assert_allclose(flat.sims, true, atol=1e-5)
    _assert_sorted_desc(flat.sims)
    np.testing.assert_allclose(flat.sims[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("batch_size", [100, 128, 499])
def test_batches_equal_one_batch(data, flat, kernel, batch_size):
    got = build_knn(data, K, index="flat", batch_size=batch_size, use_gpu=False)
    np.testing.assert_array_equal(got.nbrs, flat.nbrs)
    if kernel == "simd":  # one dot product per pair: bitwise identical
        np.testing.assert_array_equal(got.sims, flat.sims)
    else:  # sgemm's rounding depends on the tile shape, so only to float32 rounding
        np.testing.assert_allclose(got.sims, flat.sims, rtol=0, atol=2e-6)


def _with_duplicates() -> np.ndarray:
    x = _random(200, 16, seed=1)
    # rows 50..59 duplicate rows 0..9, and row 199 is a third copy of row 0
    x[50:60] = x[0:10]
    x[199] = x[0]
    return x


@pytest.mark.parametrize("batch_size", [16384, 64])
def test_duplicates_keep_self_first(kernel, batch_size):
    x = _with_duplicates()
    knn = build_knn(x, 5, index="flat", batch_size=batch_size, use_gpu=False)
    assert np.all(knn.nbrs[:, 0] == np.arange(200))
    for i in range(10):
        assert i + 50 in knn.nbrs[i, 1:3]
        assert i in knn.nbrs[i + 50, 1:3]
        np.testing.assert_allclose(knn.sims[i, :2], 1.0, atol=1e-6)
    assert {0, 50} <= set(knn.nbrs[199, 1:3].tolist())
    assert np.all(np.diff(knn.sims[:, 1:], axis=1) <= 0)


@pytest.mark.parametrize("batch_size", [16384, 64])
def test_duplicates_rows_stay_sorted(kernel, batch_size):
    # BLAS may round a duplicate's similarity above self's; rows must stay sorted anyway
    knn = build_knn(_with_duplicates(), 5, index="flat", batch_size=batch_size, use_gpu=False)
    _assert_sorted_desc(knn.sims)


@pytest.mark.parametrize("k", [N, N + 1, 0, -1])
def test_bad_k_names_source(data, k):
    with pytest.raises(InputError, match="my_feats.bin"):
        build_knn(data, k, index="flat", use_gpu=False, source="my_feats.bin")


def test_non_2d_features_name_source():
    with pytest.raises(InputError, match="my_feats.bin"):
        build_knn(np.ones(10, np.float32), 2, use_gpu=False, source="my_feats.bin")


def test_k_equal_n_minus_one(data):
    x = data[:30]
    knn = build_knn(x, 29, index="flat", use_gpu=False)
    assert np.all(knn.nbrs[:, 0] == np.arange(30))
    ref = brute_force_knn(x, 29)
    for i in range(30):
        assert len(set(knn.nbrs[i].tolist())) == 29
        assert set(knn.nbrs[i].tolist()) == set(ref.nbrs[i].tolist())


def test_unknown_index(data):
    with pytest.raises(ValueError, match="unknown kNN index"):
        build_knn(data, K, index="lsh", use_gpu=False)


@pytest.mark.parametrize(
    "index,params",
    [
        ("ivf", {}),
        ("ivf", {"nlist": 25, "nprobe": 4}),
        ("ivf", {"nlist": 40, "nprobe": 2}),  # constrained: recall ~0.98 here, not 1
        ("hnsw", {}),
        ("hnsw", {"M": 8, "ef_construction": 20, "ef_search": 16}),  # ~0.997
    ],
)
def test_approximate_indexes(index, params):
    x = _clustered()
    n = len(x)
    exact = brute_force_knn(x, K)
    got = build_knn(x, K, index=index, params=params, use_gpu=False)
    assert got.nbrs.dtype == np.int32 and got.sims.dtype == np.float32
    assert got.nbrs.shape == got.sims.shape == (n, K)
    assert got.nbrs.min() >= -1 and got.nbrs.max() < n
    _assert_sorted_desc(got.sims)
    found = got.nbrs >= 0
    true = np.einsum("ij,ikj->ik", x, x[np.where(found, got.nbrs, 0)])
    np.testing.assert_allclose(got.sims[found], true[found], atol=1e-5)
    recall = _recall(got.nbrs, exact.nbrs)
    assert recall > 0.8, f"{index} {params}: recall@{K} = {recall:.3f}"


def test_ivf_pads_missing_neighbours():
    """nprobe=1 of 40 lists cannot always find k candidates: -1 / -1.0 padding at row ends."""
    x = _clustered()
    got = build_knn(x, K, index="ivf", params={"nlist": 40, "nprobe": 1}, use_gpu=False)
    missing = got.nbrs < 0
    assert missing.any()
    assert np.all(got.sims[missing] == -1.0)
    assert np.all(np.diff(missing.astype(int), axis=1) >= 0)  # padding only at the end
    _assert_sorted_desc(got.sims)
    assert np.all(got.nbrs[:, 0] == np.arange(len(x)))  # self is always in its own list


def test_flat_deterministic(data, flat, kernel):
    again = build_knn(data, K, index="flat", use_gpu=False)
    np.testing.assert_array_equal(again.nbrs, flat.nbrs)
    np.testing.assert_array_equal(again.sims, flat.sims)


def test_ivf_deterministic_with_seed():
    x = _clustered(seed=2)
    params = {"nlist": 40, "nprobe": 3}
    a = build_knn(x, K, index="ivf", params=params, seed=7, use_gpu=False)
    b = build_knn(x, K, index="ivf", params=params, seed=7, use_gpu=False)
    np.testing.assert_array_equal(a.nbrs, b.nbrs)
    np.testing.assert_array_equal(a.sims, b.sims)
    c = build_knn(x, K, index="ivf", params={}, seed=3, use_gpu=False)
    d = build_knn(x, K, index="ivf", params={}, seed=3, use_gpu=False)
    np.testing.assert_array_equal(c.nbrs, d.nbrs)
    np.testing.assert_array_equal(c.sims, d.sims)


def test_threads_argument(data, flat, kernel):
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    got = build_knn(data, K, index="flat", threads=1, use_gpu=False)
    # the process-wide OpenMP setting is restored after the search
    assert faiss.omp_get_max_threads() == before
    np.testing.assert_array_equal(got.nbrs, flat.nbrs)
    np.testing.assert_allclose(got.sims, flat.sims, rtol=0, atol=2e-6)


# ------------------------------------------------------------------ recall of approximate kNN


def test_recall_at_k_has_the_known_answer():
    """k = 4; row 0 misses one exact neighbour, row 1 two (one by padding), the order inside
    a row does not matter: recall (4 + 3 + 2) / 12."""
    exact = np.array([[0, 1, 2, 3], [1, 0, 5, 6], [2, 7, 8, 9]])
    found = np.array([[0, 1, 2, 3], [1, 5, 0, 4], [2, 9, -1, 11]])
    assert recall_at_k(found, exact) == pytest.approx(9 / 12)
    assert recall_at_k(exact[:, ::-1], exact) == 1.0
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(found[:, :3], exact)


def test_exact_neighbours_match_brute_force(data):
    rows = np.array([0, 5, 17, 300])
    got = exact_neighbours(data, rows, 10)
    np.testing.assert_array_equal(
        np.sort(got, axis=1), np.sort(brute_force_knn(data, 10).nbrs[rows], axis=1)
    )


def test_report_of_exact_and_approximate_graphs(data):
    report = {}
    build_knn(data, 10, index="flat", report=report)
    assert report["exact"] and report["recall_at_k"] == 1.0 and report["k"] == 10
    report = {}
    graph = build_knn(
        data, 10, index="ivf", params={"nlist": 16, "nprobe": 1, "recall_sample": 200},
        report=report, seed=0,
    )  # fmt: skip
    rows = np.sort(np.random.default_rng(0).choice(data.shape[0], 200, replace=False))
    expected = recall_at_k(graph.nbrs[rows], exact_neighbours(data, rows, 10))
    assert report["recall_at_k"] == pytest.approx(expected)
    assert report["nlist"] == 16 and report["nprobe"] == 1 and report["recall_sample"] == 200
    assert 0 < report["recall_at_k"] < 1  # one list of 16: approximate


def test_ivf_nprobe_from_a_recall_target(data):
    """Without nprobe, the smallest power of two whose sampled recall reaches the target."""
    reports = {}
    for target in (0.5, 0.99):
        reports[target] = {}
        build_knn(
            data, 10, index="ivf", params={"nlist": 32, "recall_target": target},
            report=reports[target], seed=0,
        )  # fmt: skip
        assert reports[target]["recall_at_k"] >= target
    assert reports[0.5]["nprobe"] < reports[0.99]["nprobe"] <= 32
    # one step fewer lists misses the target
    fewer = {}
    build_knn(
        data, 10, index="ivf", params={"nlist": 32, "nprobe": reports[0.99]["nprobe"] // 2},
        report=fewer, seed=0,
    )  # fmt: skip
    assert fewer["recall_at_k"] < 0.99
