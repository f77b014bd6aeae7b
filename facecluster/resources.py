"""Resource estimates of the workflow's jobs, and the limits a method is refused above.

The rules turn these into ``mem_mb`` and ``runtime`` (minutes) requests, multiplied by the
attempt number so that ``retries`` escalates; the cluster task refuses a method whose
estimate exceeds the configured ``limits`` before it starts (the published tables' "out of
memory"), instead of exhausting the node.
"""

from __future__ import annotations

from .knn import default_nlist
from .methods import Cost

__all__ = [
    "CPU_FLOPS_PER_THREAD",
    "GPU_FLOPS",
    "knn_cost",
    "knn_visits",
    "mem_mb",
    "runtime_minutes",
    "refusal",
    "within_limits",
]

#: sustained fp32 GEMM per core, with room for top-k selection (faiss IndexFlatIP measures
#: about 100 GFLOP/s per core here: platform-notes.md)
CPU_FLOPS_PER_THREAD = 1e10
GPU_FLOPS = 5e12


def knn_visits(n: int, index: str, params: dict | None = None) -> float:
    """Vectors one query's distance is computed to: N for exact search; IVF's nlist
    centroids plus the nprobe lists it scans (default 16, also where a recall target picks
    it: recall 0.9 at k 80 took nprobe 8 at 582K and 16 at 5.22M synthetic items); HNSW's
    2M links of about ef_search + ef_construction visited nodes (search and build)."""
    params = params or {}
    if index == "ivf":
        nlist = params.get("nlist") or default_nlist(n)
        nprobe = params.get("nprobe") or 16
        return nlist + min(nprobe, nlist) * n / nlist
    if index == "hnsw":
        m = params.get("M", 32)
        return 2 * m * (params.get("ef_search", 128) + params.get("ef_construction", 40))
    return float(n)


def knn_cost(
    n: int,
    dim: int,
    k: int,
    *,
    index: str,
    gpu: bool,
    threads: int,
    params: dict | None = None,
    storage: str | None = None,
) -> Cost:
    """Building one split's kNN graph with the backend ``index``/``params``.

    Memory (host): the features, the index' copy of them (half of it with ``storage``
    float16; HNSW adds 2M int32 links per vector; on a GPU a flat or IVF index holds it in
    device memory), the graph (nbrs, sims: 8 bytes per edge) and one
    batch of faiss' results (measured: 15.2 GB at part9 of synth_full, IVF, k 80, where
    this says 14.0 GB). Time: 2·D flops per distance to :func:`knn_visits`
    vectors per query (IVF's training adds 10 k-means iterations over
    min(N, 64·nlist) rows), at :data:`CPU_FLOPS_PER_THREAD` per thread.
    """
    params = params or {}
    storage = storage or params.get("storage", "float32")
    index_bytes = (2 if storage == "float16" else 4) * dim
    if index == "hnsw":
        index_bytes += 8 * params.get("M", 32)
    elif gpu:  # faiss-gpu's flat and IVF indexes hold the vectors in device memory
        index_bytes = 0
    flops = 2.0 * n * dim * knn_visits(n, index, params)
    if index == "ivf":
        nlist = params.get("nlist") or default_nlist(n)
        flops += 2.0 * min(n, params.get("train_per_list", 64) * nlist) * nlist * dim * 10
    seconds = flops / (GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * max(1, threads))
    batch = min(n, params.get("batch_size", 16384)) * k * 16
    return Cost(n * (4 * dim + index_bytes + 8 * k) + batch, seconds)


def mem_mb(cost: Cost, attempt: int = 1, *, base_mb: int = 1000) -> int:
    """``mem_mb`` request: ``base_mb`` (the interpreter and libraries) plus the estimate with
    20 % headroom, times the attempt."""
    return int((base_mb + 1.2 * cost.memory_bytes / 1e6) * attempt)


def runtime_minutes(cost: Cost, attempt: int = 1, *, base_min: int = 10) -> int:
    """``runtime`` request in minutes: ``base_min`` plus twice the estimate, times the attempt."""
    return int((base_min + 2.0 * cost.seconds / 60.0) * attempt)


def within_limits(cost: Cost, limits: dict) -> Cost:
    """``cost`` capped at ``limits``: what a cluster job asks for. A job never needs more
    than its limits, because above them it refuses (and writes only why); the cap also
    keeps a job whose estimate depends on its thread count (refused on 1 thread in a dry
    run, run on 2) from asking for less than it uses."""
    memory, seconds = cost
    if "mem_mb" in limits:
        memory = min(memory, limits["mem_mb"] * 1e6)
    if "runtime" in limits:
        seconds = min(seconds, limits["runtime"] * 60.0)
    return Cost(memory, seconds)


def refusal(cost: Cost, limits: dict) -> str | None:
    """Why a job of this ``cost`` is refused under ``limits`` (``mem_mb``, ``runtime`` in
    minutes; a missing key is no limit), or None when it is within them."""
    reasons = []
    if "mem_mb" in limits and cost.memory_bytes / 1e6 > limits["mem_mb"]:
        reasons.append(
            f"needs about {cost.memory_bytes / 1e9:.1f} GB, above the limit of "
            f"{limits['mem_mb'] / 1e3:.1f} GB (limits.mem_mb)"
        )
    if "runtime" in limits and cost.seconds / 60.0 > limits["runtime"]:
        reasons.append(
            f"needs about {_duration(cost.seconds)}, above the limit of "
            f"{_duration(60.0 * limits['runtime'])} (limits.runtime)"
        )
    return "; ".join(reasons) or None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
