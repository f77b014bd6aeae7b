"""k-nearest-neighbour search on L2-normalised features with faiss (cosine = inner product).

One entry point, :func:`build_knn`, for every method: exact (``IndexFlatIP``), IVF
(``IndexIVFFlat``) or HNSW (``IndexHNSWFlat``), queries in batches, faiss-gpu used
automatically when the installed faiss sees a GPU (exact and IVF; HNSW is CPU-only in faiss).

The rows searched are an array, or :class:`ComputedRows`: rows computed on demand in chunks
(GCN-V's hidden features at 5.21M items), so that only the index holds all of them. With
``storage="float16"`` the index keeps its vectors as IEEE half floats (faiss' fp16 scalar
quantizer: half the memory; the similarities are those of the rounded vectors).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .io import InputError, Knn

log = logging.getLogger(__name__)

__all__ = [
    "INDEXES",
    "STORAGES",
    "TRAIN_PER_LIST",
    "ComputedRows",
    "default_nlist",
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

#: how an index stores its vectors
STORAGES = ("float32", "float16")

#: IVF trains its coarse quantizer on min(N, TRAIN_PER_LIST * nlist) sampled rows: within
#: faiss' advice (39 to 256 points per centroid), and sized by N, since nlist is: at 5.22M
#: items (nlist 9,140) 585K rows, where 256 per list would be 2.3M and k-means' cost is
#: linear in its sample (recall 0.904 at nprobe 16, k 80, measured)
TRAIN_PER_LIST = 64


def default_nlist(n: int) -> int:
    """IVF's lists for N items when the backend sets none: 4·sqrt(N), within [1, 65536]."""
    return max(1, min(65536, 4 * round(math.sqrt(n))))


@dataclass
class ComputedRows:
    """An (n, dim) float32 matrix whose rows are computed on demand, for :func:`build_knn`.

    Parameters
    ----------
    n, dim : the matrix' shape.
    compute : sorted int64 row indices (m,) -> float32 (m, dim), those rows.
    chunk_rows : rows computed at once when the whole matrix is walked (adding to the
        index, searching); bounds the memory of a chunk to ``chunk_rows * dim`` floats.
    """

    n: int
    dim: int
    compute: Callable[[np.ndarray], np.ndarray]
    chunk_rows: int = 262144

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim): the given sorted rows, computed ``chunk_rows`` at a
        time (an IVF training sample can be 584K rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        for start in range(0, rows.size, self.chunk_rows):
            part = rows[start : start + self.chunk_rows]
            block = self.compute(part)
            if block.shape != (part.size, self.dim):
                want = (part.size, self.dim)
                raise ValueError(f"computed rows have shape {block.shape}, expected {want}")
            out[start : start + part.size] = block
        return out


def _take(features, rows: np.ndarray) -> np.ndarray:
    if isinstance(features, ComputedRows):
        return features.take(rows)
    return np.ascontiguousarray(features[rows])


def _chunks(features, first: int, last: int, align: int):
    """(start, rows) over rows [first, last): an array's rows at once, computed rows in
    chunks of about ``chunk_rows`` (a multiple of ``align``, so that the batches searched
    inside a chunk are those of a whole-array search)."""
    if not isinstance(features, ComputedRows):
        yield first, features[first:last]
        return
    step = max(align, features.chunk_rows // align * align)
    for start in range(first, last, step):
        stop = min(last, start + step)
        yield start, features.take(np.arange(start, stop))


def _top_k_merge(best_s, best_i, sims, ids, k):
    """The k largest of (best_s | sims) per row, with their ids, sorted descending."""
    s = np.concatenate([best_s, sims], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(ids, sims.shape)], axis=1)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    s, i = np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def _faiss():
    import faiss  # imported lazily: heavy, and not needed by every caller

    return faiss


def gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return bool(get and get() > 0)


def _make_index(features, index: str, params: dict, seed: int, use_gpu: bool, storage: str):
    """The faiss index of ``index`` over ``features`` (an array, or :class:`ComputedRows`
    added chunk by chunk), trained where it needs it, vectors stored as ``storage``."""
    faiss = _faiss()
    n, d = features.shape
    half = storage == "float16"
    fp16 = faiss.ScalarQuantizer.QT_fp16
    ip = faiss.METRIC_INNER_PRODUCT
    if storage not in STORAGES:
        raise ValueError(f"unknown kNN storage {storage!r}; known: {', '.join(STORAGES)}")
    if index == "flat":
        idx = faiss.IndexScalarQuantizer(d, fp16, ip) if half else faiss.IndexFlatIP(d)
        use_gpu = use_gpu and not half  # faiss-gpu's flat index has no fp16 quantizer form
    elif index == "ivf":
        nlist = int(params.get("nlist") or default_nlist(n))
        nlist = min(nlist, n)
        quantizer = faiss.IndexFlatIP(d)
        if half:
            idx = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, fp16, ip)
        else:
            idx = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        idx.cp.seed = seed
        n_train = min(n, int(params.get("train_per_list", TRAIN_PER_LIST)) * nlist)
        rng = np.random.default_rng(seed)
        idx.train(_take(features, np.sort(rng.choice(n, size=n_train, replace=False))))
        idx.nprobe = min(int(params.get("nprobe") or 16), nlist)
    elif index == "hnsw":
        m = int(params.get("M", 32))
        idx = faiss.IndexHNSWSQ(d, fp16, m, ip) if half else faiss.IndexHNSWFlat(d, m, ip)
        idx.hnsw.efConstruction = int(params.get("ef_construction", 40))
        idx.hnsw.efSearch = int(params.get("ef_search", 128))
        use_gpu = False
    else:
        raise ValueError(f"unknown kNN index {index!r}; known: {', '.join(INDEXES)}")
    if use_gpu:
        log.info("faiss: using %d GPU(s)", faiss.get_num_gpus())
        idx = faiss.index_cpu_to_all_gpus(idx)
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


def _tune_nprobe(idx, queries, exact, k, target, log_source) -> int:
    """The smallest nprobe in 1, 2, 4, ... (up to nlist) whose recall at k on the sampled
    rows ``queries`` reaches ``target``; sets it on the index."""
    nlist = idx.nlist
    nprobe = 1
    while True:
        idx.nprobe = nprobe
        _, found = idx.search(queries, k)
        recall = recall_at_k(found, exact)
        log.info(
            "%s: ivf nprobe %d of %d lists: recall@%d %.4f", log_source, nprobe, nlist, k, recall
        )
        if recall >= target or nprobe >= nlist:
            return nprobe
        nprobe = min(nlist, nprobe * 2)


def build_knn(
    features,
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
    storage: str = "float32",
) -> Knn:
    """k nearest neighbours of every row of ``features`` among all rows, by inner product.

    Parameters
    ----------
    features : float32 array (N, D), L2-normalised, so inner product = cosine similarity;
        or :class:`ComputedRows` (rows computed in chunks: added to the index chunk by
        chunk and computed again to be searched, so only the index holds all N rows).
    k : neighbours per row, self included (1 <= k < N).
    index : ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"``.
    params : index parameters: ``nlist`` (default 4·sqrt(N)), ``nprobe`` (default 16, or
        with ``recall_target`` and no ``nprobe``: the smallest power of two whose recall at
        k on a sample reaches the target), ``train_per_list`` (ivf, default
        :data:`TRAIN_PER_LIST`); ``M``, ``ef_construction``, ``ef_search`` (hnsw);
        ``recall_sample`` (rows sampled to measure recall, default :data:`RECALL_SAMPLE`).
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
    storage : ``"float32"``, or ``"float16"``: the index stores half floats (faiss' fp16
        scalar quantizer; an exact index is then searched on the CPU).

    Returns
    -------
    Knn with ``nbrs`` int32 (N, k), ``sims`` float32 (N, k), rows sorted by descending
    similarity with self first where found; ``-1`` / ``-1.0`` pad rows with fewer results.
    """
    faiss = _faiss()
    if not isinstance(features, ComputedRows):
        features = np.ascontiguousarray(features, dtype=np.float32)
    if len(features.shape) != 2:
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
    measure = report is not None and (index != "flat" or storage != "float32")
    sampled = measure or target is not None
    computed = isinstance(features, ComputedRows)
    try:
        if sampled:
            rows = _sample_rows(n, n_sample, seed)
            queries = _take(features, rows)
            if not computed:
                exact = exact_neighbours(features, rows, k)
            else:  # found while the rows are walked to fill the index
                best_s = np.full((rows.size, k), -np.inf, np.float32)
                best_i = np.full((rows.size, k), -1, np.int64)
        idx = _make_index(features, index, params, seed, use_gpu, storage)
        for start, block in _chunks(features, 0, n, batch_size):
            idx.add(block)
            if sampled and computed:
                for b in range(0, block.shape[0], batch_size):
                    part = block[b : b + batch_size]
                    ids = np.arange(start + b, start + b + part.shape[0])
                    best_s, best_i = _top_k_merge(best_s, best_i, queries @ part.T, ids, k)
        if sampled and computed:
            exact = best_i
        if index == "ivf" and target is not None and not params.get("nprobe"):
            _tune_nprobe(_ivf(idx), queries, exact, k, target, source)
        first, last = query_rows if query_rows is not None else (0, n)
        nbrs = np.empty((last - first, k), dtype=np.int32)
        sims = np.empty((last - first, k), dtype=np.float32)
        for chunk_start, block in _chunks(features, first, last, batch_size):
            for b in range(0, block.shape[0], batch_size):
                start = chunk_start + b
                stop = min(last, start + batch_size)
                d, i = idx.search(block[b : b + batch_size], k)
                d[i < 0] = -1.0
                nbrs[start - first : stop - first] = i
                sims[start - first : stop - first] = d
                _put_self_first(nbrs[start - first : stop - first], start)
        if report is not None:
            report.update(knn_report(index, idx, k, n, storage))
            if measure:
                if query_rows is None:
                    found = nbrs[rows]
                else:
                    found = idx.search(queries, k)[1]
                report["recall_at_k"] = recall_at_k(found, exact)
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


def knn_report(index: str, idx, k: int, n: int, storage: str = "float32") -> dict:
    """What a kNN graph was built with: the index, its effective parameters (IVF's nlist
    and nprobe, HNSW's M and efSearch), k, N and a half-float ``storage``; an exact graph
    over float32 vectors has recall 1."""
    out = {"index": index, "k": int(k), "n_items": int(n)}
    if storage != "float32":
        out["storage"] = storage
    if index == "flat" and storage == "float32":
        out.update(recall_at_k=1.0, exact=True)
    elif index == "flat":  # exhaustive, but over rounded vectors
        out.update(exact=False)
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
    storage = params.pop("storage", "float32")
    storage = kwargs.pop("storage", None) or storage  # the caller's choice wins
    return build_knn(
        features, k, index=index, params=params, batch_size=batch_size, storage=storage, **kwargs
    )


def brute_force_knn(features: np.ndarray, k: int) -> Knn:
    """Exact kNN with numpy (for tests and small data): O(N^2) memory."""
    sims = features @ features.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return Knn(order.astype(np.int32), np.take_along_axis(sims, order, axis=1).astype(np.float32))
