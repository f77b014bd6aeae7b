"""Resource estimates and limits (facecluster.resources, the families' estimates)."""

import pytest

from facecluster import resources
from facecluster.methods import Cost, get_spec


def test_knn_cost_exact_search_grows_as_n_squared():
    small = resources.knn_cost(10_000, 256, 80, index="flat", gpu=False, threads=2)
    big = resources.knn_cost(20_000, 256, 80, index="flat", gpu=False, threads=2)
    assert big.seconds == pytest.approx(4 * small.seconds)
    per_item = 4 * 256 + 4 * 256 + 8 * 80  # features, the index' copy, the graph
    assert big.memory_bytes == 20_000 * per_item + 16384 * 80 * 16  # and one batch of results
    assert small.memory_bytes == 10_000 * per_item + 10_000 * 80 * 16
    gpu = resources.knn_cost(20_000, 256, 80, index="flat", gpu=True, threads=2)
    assert gpu.seconds < big.seconds / 100


def test_knn_cost_of_approximate_indexes():
    """IVF visits nlist centroids and nprobe lists of N/nlist vectors (plus its training);
    HNSW about 2M(ef_search + ef_construction) vectors; half-float storage halves the
    index."""
    n = 5_210_000
    ivf = resources.knn_cost(n, 256, 80, index="ivf", gpu=False, threads=2, params={"nprobe": 16})
    nlist = 4 * round(n**0.5)
    search = 2.0 * n * 256 * (nlist + 16 * n / nlist)
    train = 2.0 * 64 * nlist * nlist * 256 * 10
    assert ivf.seconds == pytest.approx((search + train) / 2e10)
    assert resources.knn_visits(n, "ivf", {"nprobe": 32}) > resources.knn_visits(n, "ivf", {})
    hnsw = resources.knn_visits(n, "hnsw", {"M": 16, "ef_search": 64, "ef_construction": 40})
    assert hnsw == 2 * 16 * (64 + 40)
    flat = resources.knn_cost(n, 256, 80, index="flat", gpu=False, threads=2)
    assert ivf.seconds < flat.seconds / 100
    half = resources.knn_cost(n, 256, 80, index="ivf", gpu=False, threads=2,
                              params={"storage": "float16"})  # fmt: skip
    assert ivf.memory_bytes - half.memory_bytes == n * 2 * 256


def test_requests_grow_with_the_attempt():
    cost = Cost(2e9, 600)
    assert resources.mem_mb(cost, 1) == 1000 + 2400
    assert resources.mem_mb(cost, 2) == 2 * (1000 + 2400)
    assert resources.runtime_minutes(cost, 1) == 10 + 20
    assert resources.runtime_minutes(cost, 3) == 3 * 30


def test_refusal_names_the_limit():
    cost = Cost(30e9, 7200)
    assert resources.refusal(cost, {}) is None
    assert resources.refusal(cost, {"mem_mb": 40_000, "runtime": 180}) is None
    why = resources.refusal(cost, {"mem_mb": 20_000})
    assert "30.0 GB" in why and "limits.mem_mb" in why
    why = resources.refusal(cost, {"runtime": 60})
    assert "2.0 h" in why and "limits.runtime" in why
    # fractional minutes (the synthetic default allows half a minute per cluster job)
    assert resources.refusal(Cost(1e6, 29), {"runtime": 0.5}) is None
    assert "30 s" in resources.refusal(Cost(1e6, 31), {"runtime": 0.5})


def test_gpu_training_requests_use_the_gpu_rate():
    """A GPU family's training job gets a GPU: its request is timed at a GPU's rate (at the
    CPU's, GCN-V's 80,000 MS1M iterations asked for 168 days)."""
    for family in ("gcnv", "starfc", "gcnd", "gcnds", "lgcn", "gcne"):
        spec = get_spec(family)
        cpu = spec.cost(576_494, 256, 80, params={}, train_params={}, train=True, threads=16)
        gpu = spec.cost(
            576_494, 256, 80, params={}, train_params={}, train=True, threads=16, gpu=True
        )
        assert gpu.seconds < cpu.seconds, family
        assert gpu.memory_bytes == cpu.memory_bytes, family
    cdp = get_spec("cdp")  # not a GPU family: the flag changes nothing
    assert cdp.cost(
        1000, 256, 15, params={}, train_params={}, train=False, threads=1, gpu=True
    ) == (cdp.cost(1000, 256, 15, params={}, train_params={}, train=False, threads=1))


def test_gcnv_training_estimate_uses_the_family_default_epochs():
    """The old rule assumed 100 epochs when `epochs` was omitted; the code trains 80,000."""
    spec = get_spec("gcnv")
    omitted = spec.cost(100_000, 256, 80, params={}, train_params={}, train=True, threads=4)
    hundred = spec.cost(
        100_000, 256, 80, params={}, train_params={"epochs": 100}, train=True, threads=4
    )
    assert omitted.seconds == pytest.approx(800 * hundred.seconds)


def test_family_cost_is_clipped_to_the_threads_it_can_use():
    spec = get_spec("gcnv")
    many = spec.cost(10_000, 256, 80, params={}, train_params={}, train=False, threads=64)
    sixteen = spec.cost(10_000, 256, 80, params={}, train_params={}, train=False, threads=16)
    assert many == sixteen


def test_cluster_requests_are_capped_at_the_limits():
    cost = Cost(30e9, 7200)
    assert resources.within_limits(cost, {}) == cost
    assert resources.within_limits(cost, {"mem_mb": 8000, "runtime": 3}) == Cost(8e9, 180)
    small = Cost(1e9, 10)
    assert resources.within_limits(small, {"mem_mb": 8000, "runtime": 3}) == small


def test_estimate_sees_the_true_number_of_clusters():
    spec = get_spec("kmeans")
    kw = dict(train_params={}, train=False, threads=1)
    true = spec.cost(50_000, 256, 1, params={"n_clusters": "true"}, n_true_clusters=700, **kw)
    given = spec.cost(50_000, 256, 1, params={"n_clusters": 700}, **kw)
    assumed = spec.cost(50_000, 256, 1, params={"n_clusters": "true"}, **kw)
    assert true == given and assumed != given


def test_knn_cost_on_a_gpu_keeps_the_index_off_the_host():
    cpu = resources.knn_cost(1_000_000, 256, 80, index="flat", gpu=False, threads=2)
    gpu = resources.knn_cost(1_000_000, 256, 80, index="flat", gpu=True, threads=2)
    assert cpu.memory_bytes - gpu.memory_bytes == 1_000_000 * 4 * 256
    hnsw = [resources.knn_cost(1000, 256, 80, index="hnsw", gpu=g, threads=2) for g in (0, 1)]
    assert hnsw[0].memory_bytes == hnsw[1].memory_bytes  # faiss HNSW is CPU-only
