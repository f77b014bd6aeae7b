"""k-nearest-neighbour search on L2-normalised features with faiss (cosine = inner product).

One entry point, :func:`build_knn`, for every method: exact (``IndexFlatIP``), IVF
(``IndexIVFFlat``) or HNSW (``IndexHNSWFlat``), queries in batches, faiss-gpu used
automatically when the installed faiss sees a GPU (exact and IVF; HNSW is CPU-only in faiss).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .io import InputError, Knn

log = logging.getLogger(__name__)

__all__ = [
    "INDEXES",
    "build_knn",
    "build_knn_from_spec",
    "gpu_available",
    "brute_force_knn",
    "exact_neighbours",
    "recall_at_k",
    "knn_report",
]

#: query rows sampled to measure an approximate kNN's recall against exact search
RECALL_SAMPLE = 1000

INDEXES = ("flat", "ivf", "hnsw")


def _faiss():
    import faiss  # imported lazily: heavy, and not needed by every caller

    return faiss


def gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return bool(get and get() > 0)


def _make_index(features: np.ndarray, index: str, params: dict, seed: int, use_gpu: bool):
    faiss = _faiss()
    n, d = features.shape
    if index == "flat":
        idx = faiss.IndexFlatIP(d)
    elif index == "ivf":
        nlist = int(params.get("nlist") or max(1, min(65536, 4 * round(math.sqrt(n)))))
        nlist = min(nlist, n)
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        idx.cp.seed = seed
        n_train = min(n, int(params.get("train_per_list", 256)) * nlist)
        rng = np.random.default_rng(seed)
        sample = features[np.sort(rng.choice(n, size=n_train, replace=False))]
        idx.train(sample)
        idx.nprobe = min(int(params.get("nprobe") or 16), nlist)
    elif index == "hnsw":
        idx = faiss.IndexHNSWFlat(d, int(params.get("M", 32)), faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = int(params.get("ef_construction", 40))
        idx.hnsw.efSearch = int(params.get("ef_search", 128))
        use_gpu = False
    else:
        raise ValueError(f"unknown kNN index {index!r}; known: {', '.join(INDEXES)}")
    if use_gpu:
        log.info("faiss: using %d GPU(s)", faiss.get_num_gpus())
        idx = faiss.index_cpu_to_all_gpus(idx)
    idx.add(features)
    return idx


def _put_self_first(nbrs: np.ndarray, offset: int) -> None:
    """Move each query's own index to column 0 where it is in its row, in place.

    Self can land behind exact duplicates, whose similarity BLAS may round a hair above
    self's. Only the indices are rotated; the similarity column stays as it was, so rows
    stay sorted (self's true similarity, 1, is the row's maximum anyway).
    """
    rows = np.arange(nbrs.shape[0])
    is_self = nbrs == (rows + offset)[:, None]
    pos = is_self.argmax(axis=1)
    for r in np.flatnonzero(is_self.any(axis=1) & (pos > 0)):  # rare: duplicates only
        p = pos[r]
        nbrs[r, 1 : p + 1] = nbrs[r, 0:p].copy()
        nbrs[r, 0] = r + offset


def exact_neighbours(
    features: np.ndarray, rows: np.ndarray, k: int, *, threads: int | None = None
) -> np.ndarray:
    """The exact k nearest neighbours (int64 (len(rows), k), by inner product) of the given
    rows among all rows, by brute force without an index copy of ``features``
    (``faiss.knn``): the reference an approximate graph is measured against."""
    faiss = _faiss()
    saved = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    try:
        _, nbrs = faiss.knn(
            np.ascontiguousarray(features[rows]), features, k, metric=faiss.METRIC_INNER_PRODUCT
        )
    finally:
        faiss.omp_set_num_threads(saved)
    return nbrs


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact k neighbours that ``found`` (same rows, k columns,
    ``-1`` padding) holds: recall at k, in [0, 1]. Order within a row does not matter."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape != exact.shape:
        raise ValueError(f"found {found.shape} and exact {exact.shape} differ in shape")
    k = exact.shape[1]
    # a row's hits: entries of `exact` that occur in the same row of `found`
    hits = (exact[:, :, None] == found[:, None, :]).any(axis=2) & (exact >= 0)
    return float(hits.sum() / (exact.shape[0] * k))


def _sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    if n <= sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))


def _tune_nprobe(idx, features, rows, exact, k, target, log_source) -> int:
    """The smallest nprobe in 1, 2, 4, ... (up to nlist) whose recall at k on ``rows``
    reaches ``target``; sets it on the index."""
    nlist = idx.nlist
    nprobe = 1
    while True:
        idx.nprobe = nprobe
        _, found = idx.search(np.ascontiguousarray(features[rows]), k)
        recall = recall_at_k(found, exact)
        log.info(
            "%s: ivf nprobe %d of %d lists: recall@%d %.4f", log_source, nprobe, nlist, k, recall
        )
        if recall >= target or nprobe >= nlist:
            return nprobe
        nprobe = min(nlist, nprobe * 2)


def build_knn(
    features: np.ndarray,
    k: int,
    *,
    index: str = "flat",
    params: dict | None = None,
    batch_size: int = 16384,
    threads: int | None = None,
    seed: int = 0,
    use_gpu: bool | None = None,
    source: str = "features",
    report: dict | None = None,
    query_rows: tuple[int, int] | None = None,
) -> Knn:
    """k nearest neighbours of every row of ``features`` among all rows, by inner product.

    Parameters
    ----------
    features : float32 array (N, D), L2-normalised, so inner product = cosine similarity.
    k : neighbours per row, self included (1 <= k < N).
    index : ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"``.
    params : index parameters: ``nlist`` (default 4·sqrt(N)), ``nprobe`` (default 16, or
        with ``recall_target`` and no ``nprobe``: the smallest power of two whose recall at
        k on a sample reaches the target), ``train_per_list`` (ivf); ``M``,
        ``ef_construction``, ``ef_search`` (hnsw); ``recall_sample`` (rows sampled to
        measure recall, default :data:`RECALL_SAMPLE`).
    batch_size : query rows per faiss search call (bounds the result buffers).
    threads : OpenMP threads for faiss; ``None`` keeps faiss' default.
    seed : seeds IVF training sampling and clustering.
    use_gpu : ``None`` = use faiss-gpu when available.
    source : name of the feature file, for error messages.
    query_rows : ``(start, stop)``: search the neighbours of these rows only (one block of
        a sharded kNN; ``start`` a multiple of ``batch_size``, so each search call is the
        unsharded search's and the rows come out identical); the result has
        ``stop - start`` rows.
    report : a dict to fill with :func:`knn_report`'s fields (the index, its parameters,
        and for an approximate index the recall at k measured on a sample of rows against
        exact search); None: no measurement.

    Returns
    -------
    Knn with ``nbrs`` int32 (N, k), ``sims`` float32 (N, k), rows sorted by descending
    similarity with self first where found; ``-1`` / ``-1.0`` pad rows with fewer results.
    """
    faiss = _faiss()
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise InputError(f"{source}: features must be 2-D, got shape {features.shape}")
    n = features.shape[0]
    if not 1 <= k < n:
        raise InputError(f"{source}: k={k} must satisfy 1 <= k < N, the number of items (N={n})")
    if use_gpu is None:
        use_gpu = gpu_available()
    saved_threads = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    params = dict(params or {})
    target = params.pop("recall_target", None)
    n_sample = int(params.pop("recall_sample", RECALL_SAMPLE))
    measure = report is not None and index != "flat"
    try:
        if measure or target is not None:
            rows = _sample_rows(n, n_sample, seed)
            exact = exact_neighbours(features, rows, k)
        idx = _make_index(features, index, params, seed, use_gpu)
        if index == "ivf" and target is not None and not params.get("nprobe"):
            _tune_nprobe(_ivf(idx), features, rows, exact, k, target, source)
        first, last = query_rows if query_rows is not None else (0, n)
        nbrs = np.empty((last - first, k), dtype=np.int32)
        sims = np.empty((last - first, k), dtype=np.float32)
        for start in range(first, last, batch_size):
            stop = min(last, start + batch_size)
            d, i = idx.search(features[start:stop], k)
            missing = i < 0
            d[missing] = -1.0
            nbrs[start - first : stop - first] = i
            sims[start - first : stop - first] = d
            _put_self_first(nbrs[start - first : stop - first], start)
        if report is not None:
            report.update(knn_report(index, idx, k, n))
            if measure:
                report["recall_at_k"] = recall_at_k(nbrs[rows], exact)
                report["recall_sample"] = int(rows.size)
    finally:
        faiss.omp_set_num_threads(saved_threads)
    return Knn(nbrs, sims)


def _ivf(idx):
    """The IVF index inside ``idx`` (a GPU index keeps nlist/nprobe as its own)."""
    try:
        return _faiss().extract_index_ivf(idx)
    except (RuntimeError, TypeError, AttributeError):
        return idx


def knn_report(index: str, idx, k: int, n: int) -> dict:
    """What a kNN graph was built with: the index, its effective parameters (IVF's nlist
    and nprobe, HNSW's M and efSearch), k and N; an exact graph has recall 1."""
    out = {"index": index, "k": int(k), "n_items": int(n)}
    if index == "flat":
        out.update(recall_at_k=1.0, exact=True)
    elif index == "ivf":
        ivf = _ivf(idx)
        out.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe), exact=False)
    elif index == "hnsw":
        out.update(M=int(idx.hnsw.nb_neighbors(1)), ef_search=int(idx.hnsw.efSearch), exact=False)
    return out


def build_knn_from_spec(features: np.ndarray, k: int, spec: dict, **kwargs) -> Knn:
    """:func:`build_knn` with a backend spec of the config (``knn_backends.<name>``).

    ``spec`` holds ``index``, optionally ``batch_size``, and the index parameters; other
    keyword arguments (``threads``, ``seed``, ``source``...) go to :func:`build_knn`.
    """
    params = dict(spec)
    index = params.pop("index", "flat")
    batch_size = params.pop("batch_size", 16384)
    params.pop("block_rows", None)  # how the workflow shards the search, not the search
    return build_knn(features, k, index=index, params=params, batch_size=batch_size, **kwargs)


def brute_force_knn(features: np.ndarray, k: int) -> Knn:
    """Exact kNN with numpy (for tests and small data): O(N^2) memory."""
    sims = features @ features.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return Knn(order.astype(np.int32), np.take_along_axis(sims, order, axis=1).astype(np.float32))
