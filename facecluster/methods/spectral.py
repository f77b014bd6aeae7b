"""Spectral clustering: scikit-learn's on the kNN connectivity, or Nyström ("DaskSpectral").

``affinity="nearest_neighbors"`` is the "Spectral" baseline of learn-to-cluster §3.5 and CDP
§1.7, ``SpectralClustering(n_clusters, affinity='nearest_neighbors',
assign_labels='discretize', random_state=0)`` with its default ``n_neighbors=10``.
scikit-learn builds ``kneighbors_graph(X, n_neighbors, include_self=True)`` (the point
itself plus its ``n_neighbors - 1`` nearest others, Euclidean, which on L2-normalised
features is the cosine order), takes ``0.5 * (A + A^T)`` and runs
:func:`sklearn.cluster.spectral_clustering` on it (ARPACK shift-invert on the normalised
Laplacian, ``n_clusters`` eigenvectors). Here the connectivity comes from the job's kNN graph
(the same neighbours when it is exact) instead of a second neighbour search; the rest is the
same call, so the labels are equal to ``SpectralClustering`` on the same neighbours.

``affinity="rbf"`` is the "DaskSpectral" row, ``dask_ml.cluster.SpectralClustering(
n_clusters, affinity='rbf', random_state=0)``: the Nyström method of Fowlkes et al. (2004) as
dask-ml implements it, re-implemented with numpy in row blocks (dask-ml itself pulls in
numba, llvmlite, distributed and pyarrow). With ``l = n_components_nystrom`` landmarks drawn
without replacement (dask-ml's draw: one ``randint`` then ``choice`` from
``RandomState(seed)``, so the landmarks are dask-ml's for the same seed),
``A = K(landmarks, landmarks)`` and ``B = K(landmarks, rest)`` with the RBF kernel
``exp(-gamma * |x - y|^2)``:

* degrees ``d1 = A.sum(0) + B.sum(1)`` (landmarks) and ``d2 = B.sum(0) + B^T pinv(A)
  B.sum(1)`` (the rest, its rest-rest block approximated), ``A2 = D1^-1/2 A D1^-1/2`` and
  ``B2 = D1^-1/2 B D2^-1/2``;
* ``U, S = svd(A2)``, embedding ``V = [A2; B2^T] U[:, :c] diag(S[:c]^-1/2)`` with
  ``c = min(n_clusters, l)`` (so with dask-ml's default l = 100 and 8,573 clusters on MS1M the
  embedding has 100 dimensions), rows scaled to unit length;
* k-means on the embedding. dask-ml uses its own KMeans (k-means|| init, one run); here it
  is scikit-learn's ``KMeans(n_clusters, n_init=1, random_state=seed)`` with k-means++ init,
  the one difference from dask-ml (same landmarks and embedding, different k-means seeding).

Checked against dask-ml 2025.1.0 (dask 2026.8.0, scikit-learn 1.9.1) on 3,000 items: the
embedding fed to its k-means equals :func:`nystrom_embedding` to 1e-13, up to the sign of
each eigenvector.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp

from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec
from .kmeans import (
    KMEANS_ITERATIONS,
    KMEANS_SECONDS_PER_NKD,
    N_CLUSTERS_SCHEMA,
    check_integer,
    check_positive,
    estimated_n_clusters,
    limit_threads,
    resolve_n_clusters,
)

log = logging.getLogger(__name__)

__all__ = ["SPEC", "knn_connectivity", "nystrom_embedding", "estimate", "cluster"]

AFFINITIES = ("nearest_neighbors", "rbf")
ASSIGN_LABELS = ("discretize", "kmeans", "cluster_qr")

#: nearest_neighbors, one thread: ARPACK's time varies with the eigengaps (20K items took 29 s
#: for 290 eigenvectors but 40 s for 100), so the estimate is an envelope of the runs measured
#: here (2-20K synthetic items, 75-600 clusters): seconds per item x eigenvector^2 ...
NN_SECONDS_PER_NC2 = 1.6e-8
#: ... plus seconds per item^2
NN_SECONDS_PER_N2 = 1.0e-7
#: rbf: seconds per multiply-add of the float64 kernel blocks, one thread
RBF_SECONDS_PER_MAC = 1.0e-10
#: row block of the Nyström kernel blocks
BLOCK_ROWS = 8192


def knn_connectivity(knn: Knn, n_neighbors: int, *, include_self: bool) -> sp.csr_matrix:
    """Binary kNN connectivity from a kNN graph, like ``kneighbors_graph(mode='connectivity')``.

    Parameters
    ----------
    knn : graph over N items, rows sorted by descending similarity, self first where present.
    n_neighbors : neighbours per row, counting the item itself when ``include_self``
        (scikit-learn's convention: ``include_self=True`` gives self + ``n_neighbors - 1``
        others, ``include_self=False`` gives ``n_neighbors`` others).
    include_self : put a 1 on the diagonal.

    Returns
    -------
    csr_matrix float64 (N, N), directed (row = query), entries 1.

    Raises
    ------
    ValueError
        naming ``n_neighbors`` if the kNN graph has too few columns.
    """
    n_neighbors = check_integer(n_neighbors, "n_neighbors")
    others_wanted = n_neighbors - 1 if include_self else n_neighbors
    n, k = knn.nbrs.shape
    if k - 1 < others_wanted:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs a kNN graph with k >= {others_wanted + 1} "
            f"(self included); this one has k={k}"
        )
    nbrs = knn.nbrs.astype(np.int64)
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], nbrs.shape)
    others = (nbrs >= 0) & (nbrs != rows)
    keep = others & (np.cumsum(others, axis=1) <= others_wanted)
    r, c = rows[keep], nbrs[keep]
    if include_self:
        r = np.concatenate([r, np.arange(n)])
        c = np.concatenate([c, np.arange(n)])
    a = sp.csr_matrix((np.ones(r.size), (r, c)), shape=(n, n), dtype=np.float64)
    a.sum_duplicates()
    a.data[:] = 1.0
    a.sort_indices()
    return a


def _rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma * |x - y|^2) of rows (float64), |x - y|^2 from the Gram matrix."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    np.maximum(d2, 0.0, out=d2)
    d2 *= -gamma
    return np.exp(d2, out=d2)


def nystrom_embedding(
    features: np.ndarray, n_dims: int, *, n_landmarks: int, gamma: float, seed: int
) -> np.ndarray:
    """dask-ml's Nyström spectral embedding (see the module docstring), in item order.

    Parameters
    ----------
    features : float (N, D).
    n_dims : embedding dimensions wanted (``n_clusters``); at most ``n_landmarks`` are made.
    n_landmarks : landmark rows ``l`` (< N).
    gamma : RBF kernel coefficient.
    seed : the landmark draw (``RandomState(seed)``, as dask-ml).

    Returns
    -------
    embedding : float64 (N, min(n_dims, n_landmarks)), rows of unit length.
    """
    n = features.shape[0]
    rng = np.random.RandomState(seed)
    rng.randint(np.iinfo("i4").max)  # dask-ml draws its k-means seed first
    keep = np.sort(rng.choice(n, n_landmarks, replace=False))
    rest = np.ones(n, dtype=bool)
    rest[keep] = False
    rest = np.flatnonzero(rest)
    xk = features[keep].astype(np.float64)
    a = _rbf(xk, xk, gamma)
    blocks = [rest[i : i + BLOCK_ROWS] for i in range(0, rest.size, BLOCK_ROWS)]
    progress = Progress(2 * rest.size, "nystrom kernel blocks", logger=log)
    b1 = np.zeros(n_landmarks)
    for blk in blocks:  # pass 1: the landmarks' degrees over the rest
        b1 += _rbf(xk, features[blk].astype(np.float64), gamma).sum(1)
        progress.update(blk.size)
    inner = np.linalg.pinv(a) @ b1
    d1 = 1.0 / np.sqrt(a.sum(0) + b1)
    a2 = d1[:, None] * a * d1[None, :]
    u, s, _ = np.linalg.svd(a2)
    c = min(int(n_dims), n_landmarks)
    proj = u[:, :c] * (math.sqrt(n_landmarks / n) / np.sqrt(s[:c]))[None, :]
    out = np.empty((n, c))
    out[keep] = a2 @ proj
    clipped = 0
    for blk in blocks:  # pass 2: the rest's degrees and embedding
        b = _rbf(xk, features[blk].astype(np.float64), gamma)
        deg = b.sum(0) + b.T @ inner
        clipped += int((deg <= 0).sum())
        d2 = 1.0 / np.sqrt(np.maximum(deg, np.finfo(np.float64).tiny))
        out[blk] = ((b * d1[:, None]).T @ proj) * d2[:, None]
        progress.update(blk.size)
    progress.close()
    if clipped:
        log.warning("nystrom: %d approximated degrees <= 0 were clipped", clipped)
    norms = np.linalg.norm(out, axis=1)
    out /= np.maximum(norms, np.finfo(np.float64).tiny)[:, None]
    return out


def _assign_labels(affinity: str, assign_labels: str | None) -> str:
    if affinity not in AFFINITIES:
        raise ValueError(f"affinity must be one of {AFFINITIES}, got {affinity!r}")
    if assign_labels is None:
        return "discretize" if affinity == "nearest_neighbors" else "kmeans"
    if assign_labels not in ASSIGN_LABELS:
        raise ValueError(f"assign_labels must be one of {ASSIGN_LABELS}, got {assign_labels!r}")
    if affinity == "rbf" and assign_labels != "kmeans":
        raise ValueError(
            f"assign_labels={assign_labels!r} is not available with affinity='rbf' "
            "(the Nyström embedding is clustered with k-means); use 'kmeans' or null"
        )
    return assign_labels


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of spectral clustering of ``n`` items.

    ``nearest_neighbors`` (C clusters = eigenvectors): memory of ARPACK's Lanczos basis
    (``ncv = 2C + 1`` vectors of N float64), the eigenvectors and the discretize/k-means
    copies (about 4 x N x C float64 more), and the affinity, Laplacian and the sparse LU of
    the shift-invert (about 400 bytes per item and 60 per neighbour); measured 243 MB at 20K
    items and 290 clusters, 451 MB at 600. Time: ``NN_SECONDS_PER_NC2 x N x C^2 +
    NN_SECONDS_PER_N2 x N^2`` (ARPACK and discretize are O(N C^2); ARPACK's restarts add the
    rest), single-threaded (ARPACK), so ``threads`` is not counted.

    ``rbf``: memory of the embedding (N x c float64, c = min(C, l)) and its k-means copies,
    and the kernel blocks (l x BLOCK_ROWS float64 and a float64 copy of BLOCK_ROWS features,
    a few each); time of two kernel passes (2 x N x l x D multiply-adds), the SVD (l^3) and
    the k-means on the embedding as :func:`facecluster.methods.kmeans.estimate` counts it
    (one run, over ``threads``).

    ``n_clusters: "true"`` counts as ``n / ASSUMED_ITEMS_PER_CLUSTER`` clusters.
    """
    c = estimated_n_clusters(params.get("n_clusters", "true"), n)
    if params.get("affinity", "nearest_neighbors") == "rbf":
        ln = max(1, min(int(params.get("n_components_nystrom", 100)), n - 1))
        e = min(c, ln)
        rows = min(n, BLOCK_ROWS)
        memory = 3.0 * n * e * 8 + n * dim * 4 + 4.0 * rows * (ln + dim) * 8 + 5.0 * ln * ln * 8
        kernel = RBF_SECONDS_PER_MAC * (2.0 * n * ln * dim + ln**3)
        kmeans_work = (KMEANS_ITERATIONS + 2 + math.log(c)) * n * c * e
        return Cost(memory, kernel + KMEANS_SECONDS_PER_NKD * kmeans_work / threads)
    nbr = int(params.get("n_neighbors", 10))
    memory = n * ((2 * c + 1) * 8 + 4 * c * 8 + 400 + 60 * nbr) + n * dim * 4
    seconds = NN_SECONDS_PER_NC2 * n * c * c + NN_SECONDS_PER_N2 * n * n
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="Spectral clustering: scikit-learn's on the kNN connectivity (the 'Spectral' "
    "baseline) or the Nyström RBF method of dask-ml ('DaskSpectral')",
    params={
        "n_clusters": {
            **N_CLUSTERS_SCHEMA,
            "default": "true",
            "description": "Number of clusters, or 'true' for the number of ground-truth "
            "identities of the split.",
        },
        "affinity": {
            "enum": list(AFFINITIES),
            "default": "nearest_neighbors",
            "description": "nearest_neighbors (scikit-learn on the kNN connectivity, 'Spectral') "
            "or rbf (Nyström, 'DaskSpectral').",
        },
        "n_neighbors": {
            "type": "integer",
            "minimum": 1,
            "default": 10,
            "description": "Neighbours of the connectivity, self included (nearest_neighbors; the "
            "reference: 10).",
        },
        "assign_labels": {
            "oneOf": [{"enum": list(ASSIGN_LABELS)}, {"type": "null"}],
            "default": None,
            "description": "Label assignment (nearest_neighbors); null for discretize (the "
            "reference); rbf always uses kmeans.",
        },
        "gamma": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
            "description": "RBF kernel coefficient (rbf); on unit vectors the kernel is exp(-2 "
            "gamma (1 - cos)).",
        },
        "n_components_nystrom": {
            "type": "integer",
            "minimum": 1,
            "default": 100,
            "description": "Nyström landmarks (rbf; dask-ml's n_components), reduced to N - 1 on "
            "smaller inputs.",
        },
    },
    threads=8,
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    n_clusters: int | str = "true",
    affinity: str = "nearest_neighbors",
    n_neighbors: int = 10,
    assign_labels: str | None = None,
    gamma: float = 1.0,
    n_components_nystrom: int = 100,
) -> np.ndarray:
    """Spectral clustering of the items.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised (used by ``rbf`` only).
    knn : kNN graph over the N items (used by ``nearest_neighbors`` only; needs
        k >= ``n_neighbors``, self included).
    context : :class:`facecluster.methods.Context`; ``seed`` is the random_state (ARPACK's
        start vector, discretize / k-means, the Nyström landmarks), ``threads`` limits
        BLAS/OpenMP threads, ``n_true_clusters`` serves ``n_clusters="true"``.
    n_clusters : int >= 1, or "true" for the number of ground-truth identities.
    affinity : "nearest_neighbors" (scikit-learn's Spectral) or "rbf" (DaskSpectral).
    n_neighbors : neighbours of the connectivity, self included (``nearest_neighbors``).
    assign_labels : "discretize", "kmeans" or "cluster_qr" (``nearest_neighbors``);
        ``rbf`` always uses k-means. None: "discretize" for ``nearest_neighbors`` (the
        reference), "kmeans" for ``rbf``.
    gamma : RBF kernel coefficient (``rbf``); on unit vectors the kernel is
        ``exp(-2 gamma (1 - cos))``.
    n_components_nystrom : Nyström landmarks (``rbf``; dask-ml's ``n_components``, default
        100); reduced to N - 1 on smaller inputs.

    Returns
    -------
    labels : int64 (N,), every item in a cluster (no -1).
    """
    n = int(features.shape[0]) if features is not None else knn.n
    method = _assign_labels(affinity, assign_labels)
    c = resolve_n_clusters(n_clusters, context, n)
    seed = int(getattr(context, "seed", 0))
    threads = int(getattr(context, "threads", 1))
    if affinity == "nearest_neighbors":
        from sklearn.cluster import spectral_clustering

        conn = knn_connectivity(knn, n_neighbors, include_self=True)
        aff = 0.5 * (conn + conn.T)
        log.info("spectral (kNN, %d neighbours): %d items, %d clusters", n_neighbors, n, c)
        with limit_threads(threads):
            labels = spectral_clustering(aff, n_clusters=c, assign_labels=method, random_state=seed)
        return np.asarray(labels, dtype=np.int64)

    from sklearn.cluster import KMeans

    gamma = check_positive(gamma, "gamma")
    if (
        isinstance(n_components_nystrom, bool)
        or not isinstance(n_components_nystrom, int | np.integer)
        or n_components_nystrom < 1
    ):
        raise ValueError(
            f"n_components_nystrom must be an integer >= 1, got {n_components_nystrom!r}"
        )
    if n < 2:
        raise ValueError(f"affinity='rbf' needs at least 2 items, got {n}")
    landmarks = int(n_components_nystrom)
    if landmarks >= n:
        log.warning("n_components_nystrom=%d >= %d items: using %d landmarks", landmarks, n, n - 1)
        landmarks = n - 1
    log.info("spectral (Nyström RBF, %d landmarks): %d items, %d clusters", landmarks, n, c)
    with limit_threads(threads):
        emb = nystrom_embedding(features, c, n_landmarks=landmarks, gamma=gamma, seed=seed)
        km = KMeans(n_clusters=c, n_init=1, random_state=seed).fit(emb)
    return km.labels_.astype(np.int64)
