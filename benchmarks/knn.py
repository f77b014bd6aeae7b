"""Throughput of exact kNN (``build_knn(index="flat")``) against the machine's float32 GEMM.

Exact inner-product kNN of N queries against the same N points is one big (N x D) @ (D x N)
matrix product plus a top-k selection over every row, so a good implementation runs close to
the machine's matrix-multiply throughput. This script times both in one process, repeat by
repeat (so background load hits both alike), and prints

* the kNN throughput, counted as 2·N·N·D FLOP / seconds,
* the float32 matmul throughput on the GEMM shape faiss uses: blocks of queries
  (``--mm-batch`` x D) @ (D x ``--mm-block``) covering the same N x N x D work (defaults: faiss'
  own tiles, ``distance_compute_blas_query_bs`` x ``distance_compute_blas_database_bs``),
* medians over ``--repeats`` and their ratio kNN / matmul, target >= 0.8.

Not a test: it prints numbers. Run it as ``python benchmarks/knn.py [--n 50000] ...``.
faiss' tiling parameters can be changed with ``--blas-query-bs`` / ``--blas-database-bs`` and
the query batch of :func:`build_knn` with ``--batch-size``, to look for a better setting.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50_000, help="points, all of them queries")
    p.add_argument("--dim", type=int, default=256, help="feature dimension D")
    p.add_argument("--k", type=int, default=80, help="neighbours per point")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="faiss and BLAS threads")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each (median shown)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="build_knn batch_size (default: its own)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random features")
    p.add_argument(
        "--blas-query-bs",
        type=int,
        default=None,
        help="set faiss.cvar.distance_compute_blas_query_bs (default: leave faiss' value)",
    )
    p.add_argument(
        "--blas-database-bs",
        type=int,
        default=None,
        help="set faiss.cvar.distance_compute_blas_database_bs (default: leave faiss' value)",
    )
    p.add_argument(
        "--mm-batch",
        type=int,
        default=None,
        help="matmul query rows per block (default: faiss' distance_compute_blas_query_bs)",
    )
    p.add_argument(
        "--mm-block",
        type=int,
        default=None,
        help="matmul database columns per block, 0 = all N "
        "(default: faiss' distance_compute_blas_database_bs)",
    )
    p.add_argument(
        "--matmul",
        choices=["numpy", "torch"],
        default="numpy",
        help="library for the reference matmul (torch is only imported when chosen)",
    )
    args = p.parse_args(argv)
    if args.threads is None or args.threads < 1:
        p.error("--threads must be >= 1")
    if not 1 <= args.k < args.n:
        p.error("need 1 <= --k < --n")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads
    # BLAS / OpenMP pools read these when they are loaded: set them before importing numpy.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)

    import faiss
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from facecluster.knn import build_knn

    try:  # also caps BLAS libraries already loaded (faiss bundles its own OpenBLAS)
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        blas = [
            f"{i.get('filepath', '?').rsplit('/', 1)[-1]} {i.get('version')} "
            f"({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except ImportError:
        blas = ["threadpoolctl not installed"]
    faiss.omp_set_num_threads(threads)

    if args.blas_query_bs:
        faiss.cvar.distance_compute_blas_query_bs = args.blas_query_bs
    if args.blas_database_bs:
        faiss.cvar.distance_compute_blas_database_bs = args.blas_database_bs
    q_bs = int(faiss.cvar.distance_compute_blas_query_bs)
    db_bs = int(faiss.cvar.distance_compute_blas_database_bs)
    n, d, k = args.n, args.dim, args.k
    mm_batch = min(n, args.mm_batch or q_bs)
    mm_block = n if args.mm_block == 0 else min(n, args.mm_block or db_bs)
    knn_kwargs = {"index": "flat", "threads": threads, "use_gpu": False}
    if args.batch_size:
        knn_kwargs["batch_size"] = args.batch_size

    print(
        f"faiss {faiss.__version__}, threads={threads} "
        f"(faiss omp_get_max_threads={faiss.omp_get_max_threads()}, os.cpu_count={os.cpu_count()})"
    )
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    for line in blas:
        print(f"BLAS: {line}")
    print(
        f"faiss tiles: distance_compute_blas_query_bs={q_bs} "
        f"distance_compute_blas_database_bs={db_bs} "
        f"distance_compute_blas_threshold={faiss.cvar.distance_compute_blas_threshold}"
    )
    print(
        f"N={n} D={d} k={k} build_knn batch_size={knn_kwargs.get('batch_size', 'default')} "
        f"matmul={args.matmul} blocks ({mm_batch} x {d}) @ ({d} x {mm_block}) "
        f"repeats={args.repeats}",
        flush=True,
    )

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    flop = 2.0 * n * n * d

    if args.matmul == "torch":
        import torch

        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)
        out_t = torch.empty((mm_batch, mm_block), dtype=torch.float32)

        def block(i0: int, i1: int, j0: int, j1: int) -> None:
            torch.mm(xt[i0:i1], xt[j0:j1].T, out=out_t[: i1 - i0, : j1 - j0])

    else:
        xT = np.ascontiguousarray(x.T)  # (D, N): a plain row-major right-hand side
        out = np.empty((mm_batch, mm_block), dtype=np.float32)

        def block(i0: int, i1: int, j0: int, j1: int) -> None:
            np.matmul(x[i0:i1], xT[:, j0:j1], out=out[: i1 - i0, : j1 - j0])

    def matmul(rows: int = n) -> None:
        """All (rows x N) similarities, tile by tile, as faiss' exact search computes them."""
        for i0 in range(0, rows, mm_batch):
            i1 = min(rows, i0 + mm_batch)
            for j0 in range(0, n, mm_block):
                block(i0, i1, j0, min(n, j0 + mm_block))

    # warm-up: thread pools, page faults, library initialisation
    warm = min(n, 2048)
    build_knn(x[:warm], min(k, warm - 1), **knn_kwargs)
    matmul(rows=warm)

    t_knn: list[float] = []
    t_mm: list[float] = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        knn = build_knn(x, k, **knn_kwargs)
        t_knn.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        matmul()
        t_mm.append(time.perf_counter() - t0)
        print(
            f"repeat {r + 1}/{args.repeats}: kNN {t_knn[-1]:.3f} s "
            f"({flop / t_knn[-1] / 1e9:.1f} GFLOP/s), matmul {t_mm[-1]:.3f} s "
            f"({flop / t_mm[-1] / 1e9:.1f} GFLOP/s)",
            flush=True,
        )
    assert knn.nbrs.shape == (n, k)
    self_first = float(np.mean(knn.nbrs[:, 0] == np.arange(n)))

    g_knn = flop / statistics.median(t_knn) / 1e9
    g_mm = flop / statistics.median(t_mm) / 1e9
    ratio = g_knn / g_mm
    print(
        f"{'kNN flat (faiss)':18s}: {g_knn:8.1f} GFLOP/s  median {statistics.median(t_knn):.3f} s"
    )
    label = f"matmul ({args.matmul})"
    print(f"{label:18s}: {g_mm:8.1f} GFLOP/s  median {statistics.median(t_mm):.3f} s")
    print(
        f"ratio kNN / matmul: {ratio:.3f}  (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})"
    )
    print(f"self-first rows   : {self_first:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
