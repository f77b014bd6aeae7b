"""k-means and mini-batch k-means (scikit-learn) on the raw features, a baseline.

The references run ``KMeans(n_clusters, random_state=0)`` (learn-to-cluster §3.5, CDP §1.7,
YTF n_clusters=1436, DeepFashion 3991) and ``MiniBatchKMeans(n_clusters, batch_size,
random_state=0)`` (MS1M 8573 with batch_size 1000 in the script, 5000 clusters with
batch_size 100 in the README row; CDP's script uses 200, its CLI default 100).

``n_init``: the references ran scikit-learn < 1.4, whose defaults were ``n_init=10``
(KMeans) and ``n_init=3`` (MiniBatchKMeans); scikit-learn >= 1.4 defaults to
``n_init="auto"``, which is a single run with k-means++ init. To reproduce the references
``n_init: null`` (the default) means 10 for KMeans and 3 for MiniBatchKMeans; set it to 1
for a run ten times cheaper. The references' ``algorithm="auto"`` (Elkan for dense data in
those versions) is Lloyd here; both compute the same iterations. Features are clustered in
float32 (the CDP script clusters float64; the result differs only by rounding).

This module also holds the ``n_clusters`` helpers shared by the families that take a number
of clusters (``kmeans``, ``spectral``, ``hac``), and the parameter checks and thread-limited
fitting shared by the scikit-learn families (``dbscan``, ``hdbscan``, ``meanshift``, ...).
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "N_CLUSTERS_SCHEMA",
    "ASSUMED_ITEMS_PER_CLUSTER",
    "resolve_n_clusters",
    "estimated_n_clusters",
    "limit_threads",
    "check_integer",
    "check_positive",
    "fit_predict",
    "estimate",
    "cluster",
]

#: JSON schema of an ``n_clusters`` parameter: a count, or "true" for the number of
#: ground-truth identities of the split (``Context.n_true_clusters``)
N_CLUSTERS_SCHEMA = {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "true"}]}

#: what the cost estimates assume for ``n_clusters: "true"`` (unknown before the job runs):
#: one cluster per this many items. DeepFashion has about 7 images per class, MS1M about 68,
#: so 8 errs on the side of a larger (costlier) number of clusters.
ASSUMED_ITEMS_PER_CLUSTER = 8

#: KMeans: seconds per (item x cluster x dimension) and Lloyd iteration on one thread (float32;
#: measured here on 2-20K synthetic items, d 256, 75-290 clusters: 1.65-2.2e-9 per NCD for a
#: whole run of about 8 iterations plus k-means++ seeding)
KMEANS_SECONDS_PER_NKD = 1.2e-10
#: Lloyd iterations the estimate assumes per run: the synthetic runs measured here converged
#: in 6-10, real embeddings take more; scikit-learn stops at max_iter=300
KMEANS_ITERATIONS = 30
#: MiniBatchKMeans: seconds per (item x cluster x dimension) of one epoch, one thread (small
#: batches cost more per multiply-add than Lloyd's chunks)
MINIBATCH_SECONDS_PER_NKD = 1.8e-10
#: epochs the estimate assumes: max_iter is 100 epochs, but early stopping (10 steps without
#: improvement) ended every run measured here within 1-3 epochs
MINIBATCH_EPOCHS = 10


def resolve_n_clusters(value, context, n: int, *, name: str = "n_clusters") -> int:
    """The number of clusters a parameter asks for.

    Parameters
    ----------
    value : int >= 1, or the string ``"true"`` for ``context.n_true_clusters``.
    context : a :class:`facecluster.methods.Context` (or None).
    n : number of items; the result may not exceed it.
    name : the parameter's name, for error messages.

    Returns
    -------
    int in [1, n].

    Raises
    ------
    ValueError
        naming the parameter, if the value is not an integer >= 1 nor "true", if it is
        "true" and the split has no ground truth, or if it exceeds the number of items.
    """
    if isinstance(value, str) and value == "true":
        truth = getattr(context, "n_true_clusters", None)
        if truth is None:
            raise ValueError(
                f"{name}='true' needs the number of ground-truth identities, and this split "
                f"has none (context.n_true_clusters is None); set {name} to an integer"
            )
        value = int(truth)
    elif isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= 1 or the string 'true', got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > n:
        raise ValueError(f"{name}={value} exceeds the number of items ({n})")
    return value


def estimated_n_clusters(value, n: int) -> int:
    """``n_clusters`` as the cost estimates see it: the integer, or for ``"true"`` (unknown
    before the job) ``n / ASSUMED_ITEMS_PER_CLUSTER``; at least 1, at most ``n``."""
    if isinstance(value, str) or value is None:
        value = math.ceil(n / ASSUMED_ITEMS_PER_CLUSTER)
    return int(max(1, min(int(value), max(1, n))))


def limit_threads(threads: int):
    """A context manager limiting BLAS and OpenMP threads (threadpoolctl) to ``threads``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, int(threads)))


def check_integer(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``.

    Raises ``ValueError`` naming the parameter ``name`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(value, name: str) -> float:
    """``value`` as a float if it is a number (not a bool) > 0.

    Raises ``ValueError`` naming the parameter ``name`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def fit_predict(estimator, features: np.ndarray, threads: int) -> np.ndarray:
    """``estimator.fit_predict(features)`` with BLAS/OpenMP limited to ``threads``: int64 labels.

    The estimator keeps its fitted attributes for the caller.
    """
    with limit_threads(threads):
        labels = estimator.fit_predict(features)
    return np.asarray(labels, dtype=np.int64)


def _n_init(n_init, minibatch: bool) -> int:
    if n_init is None:
        return 3 if minibatch else 10
    if isinstance(n_init, bool) or not isinstance(n_init, int | np.integer) or n_init < 1:
        raise ValueError(f"n_init must be an integer >= 1 or null, got {n_init!r}")
    return int(n_init)


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of k-means on ``n`` items of dimension ``dim``.

    Memory: the features, scikit-learn's centred copy and its buffers (3 x N x D x 4 bytes),
    per-item labels, norms and weights, and the centres with their per-thread partial sums
    (C x D x 4 bytes, a few copies); measured 55 MB at 20K items. Time: ``n_init`` runs of
    ``KMEANS_ITERATIONS`` Lloyd iterations plus k-means++ seeding (about 2 + ln C iterations'
    worth), each N x C x D multiply-adds at ``KMEANS_SECONDS_PER_NKD``, over ``threads``
    (the assignment step is OpenMP-parallel). MiniBatchKMeans: ``MINIBATCH_EPOCHS`` epochs
    of N x C x D, plus seeding on the init sample (3 x batch_size items, or 3 C when that is
    fewer than C). ``n_clusters: "true"`` counts as ``n / ASSUMED_ITEMS_PER_CLUSTER``.
    """
    c = estimated_n_clusters(params.get("n_clusters", "true"), n)
    minibatch = bool(params.get("minibatch", False))
    n_init = _n_init(params.get("n_init"), minibatch)
    memory = 3.0 * n * dim * 4 + 64.0 * n + (4 + 2 * threads) * c * dim * 4
    seeding = 2 + math.log(c)  # k-means++ costs about this many Lloyd iterations
    if minibatch:
        batch = int(params.get("batch_size", 100))
        init_size = min(n, 3 * batch if 3 * batch >= c else 3 * c)
        work = n_init * seeding * init_size * c * dim + MINIBATCH_EPOCHS * n * c * dim
        seconds = MINIBATCH_SECONDS_PER_NKD * work  # one thread (see cluster)
    else:
        work = n_init * (seeding + KMEANS_ITERATIONS) * n * c * dim
        seconds = KMEANS_SECONDS_PER_NKD * work / threads
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="k-means / mini-batch k-means (scikit-learn) on the features; the KMeans and "
    "MiniBatchKMeans baselines of learn-to-cluster and CDP",
    params={
        "n_clusters": {
            **N_CLUSTERS_SCHEMA,
            "default": "true",
            "description": "Number of clusters, or 'true' for the number of ground-truth "
            "identities of the split.",
        },
        "minibatch": {
            "type": "boolean",
            "default": False,
            "description": "Use MiniBatchKMeans instead of KMeans (the references' MS1M rows).",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 100,
            "description": "Mini-batch size (minibatch only); the references used 100 to 1000.",
        },
        "n_init": {
            "oneOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
            "default": None,
            "description": "k-means++ restarts; null for the references' 10 (KMeans) or 3 "
            "(MiniBatchKMeans).",
        },
    },
    threads=16,
    estimate=estimate,
)


def cluster(
    features: np.ndarray,
    knn: Knn | None = None,
    *,
    context=None,
    model=None,
    n_clusters: int | str = "true",
    minibatch: bool = False,
    batch_size: int = 100,
    n_init: int | None = None,
) -> np.ndarray:
    """Cluster the features with k-means.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised.
    knn : unused.
    context : :class:`facecluster.methods.Context`; ``seed`` is the random_state,
        ``threads`` limits BLAS/OpenMP threads, ``n_true_clusters`` serves
        ``n_clusters="true"``.
    n_clusters : int >= 1, or "true" for the number of ground-truth identities.
    minibatch : use ``MiniBatchKMeans`` instead of ``KMeans``.
    batch_size : mini-batch size (``minibatch`` only).
    n_init : k-means++ restarts; None for the references' 10 (KMeans) / 3 (MiniBatchKMeans).

    Returns
    -------
    labels : int64 (N,), every item in a cluster (no -1).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = int(features.shape[0])
    k = resolve_n_clusters(n_clusters, context, n)
    runs = _n_init(n_init, bool(minibatch))
    batch_size = check_integer(batch_size, "batch_size")
    seed = int(getattr(context, "seed", 0))
    threads = int(getattr(context, "threads", 1))
    if minibatch:
        est = MiniBatchKMeans(n_clusters=k, batch_size=batch_size, n_init=runs, random_state=seed)
        # a mini-batch of ~100 rows is too little work to share: with 2 OpenMP threads on a
        # busy 2-core node one fit took 8.3 s against 0.9 s on one thread (20K items)
        threads = 1
    else:
        est = KMeans(n_clusters=k, n_init=runs, random_state=seed)
    log.info(
        "%s: %d items, %d clusters, n_init=%d, %d thread(s)",
        type(est).__name__,
        n,
        k,
        runs,
        threads,
    )
    labels = fit_predict(est, np.ascontiguousarray(features), threads)
    log.info("%s: %d iterations, inertia %.4g", type(est).__name__, est.n_iter_, est.inertia_)
    return labels
