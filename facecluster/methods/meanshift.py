"""Mean shift (scikit-learn) on the raw features: learn-to-cluster's ``meanshift`` baseline.

``MeanShift(bandwidth, bin_seeding, min_bin_freq, n_jobs)`` with a flat kernel: from every
seed, repeatedly move to the mean of the items within Euclidean distance ``bandwidth``
until it moves less than ``1e-3 * bandwidth`` (at most 300 steps); the modes, by decreasing
support, absorb the other modes within ``bandwidth``; every item joins its nearest mode
(``cluster_all=True``: no noise). On unit vectors ``|x - y| <= bandwidth`` is
``cos >= 1 - bandwidth^2 / 2`` (bandwidth 0.5, DeepFashion's setting: cos >= 0.875).

Without ``bin_seeding`` every item is a seed, and each step is a brute-force radius query
against all N items: O(N^2 D x steps) time, the slowest family here. ``bin_seeding`` seeds
from a grid of cell size ``bandwidth`` holding at least ``min_bin_freq`` items; on
L2-normalised 256-d features every coordinate is about +-0.06, so with bandwidths near 1
(and still at 0.5) almost every item falls in the cell at the origin and the result is one
cluster: leave it off for face features. Deterministic (no seed).
"""

from __future__ import annotations

import logging

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "cluster"]

#: seconds per (seed x item x dimension) at 6K items, all steps of a seed's climb included,
#: one thread; measured here at bandwidth 1.0 on synthetic d 256 items: 1.1e-8 at 2K (11 s),
#: 1.7e-8 at 6K (155 s), 4.0e-8 at 20K (a climb from 200 sampled seeds took 172 ms and 29
#: steps on average: about 70 min for all 20K seeds) ...
SECONDS_PER_SEED_ITEM_DIM = 1.7e-8
#: ... growing as (N / 6000) ** GROWTH_EXPONENT above 6K (windows and climbs get longer);
#: at bandwidth 0.5, where most windows hold one item, 2K items took 2.3 s (2.2e-9)
GROWTH_EXPONENT = 0.75


def estimate(n: int, dim: int, k: int, *, params: dict, threads: int = 1, **_) -> Cost:
    """Peak memory and wall time of mean shift on ``n`` items of dimension ``dim``.

    Memory: the features and scikit-learn's float64 copy, one more float64 copy per joblib
    worker process (``threads`` of them) with its radius-query buffers, and the modes
    (measured 81 MB at 6K items, one thread). Time: ``SECONDS_PER_SEED_ITEM_DIM x
    (N / 6000) ** GROWTH_EXPONENT x seeds x N x D`` over ``threads`` (seeds are spread over
    worker processes); seeds = N without ``bin_seeding`` (with it, the estimate still counts
    N, an upper bound). Calibrated at bandwidth 1.0, the slow case; smaller bandwidths run up
    to 10x faster.
    """
    memory = n * dim * 4 + (1 + threads) * (n * dim * 8 + 64.0 * n) + 50e6 * threads
    growth = (max(n, 6000) / 6000) ** GROWTH_EXPONENT
    seconds = SECONDS_PER_SEED_ITEM_DIM * growth * n * n * dim / threads
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="Mean shift (scikit-learn, flat kernel) on the features; learn-to-cluster's "
    "meanshift baseline",
    params={
        "bandwidth": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
            "description": "Flat-kernel radius, Euclidean on unit vectors (0.5: cos >= 0.875, "
            "DeepFashion's setting).",
        },
        "min_bin_freq": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Fewest items of a grid cell that seeds (bin_seeding only).",
        },
        "bin_seeding": {
            "type": "boolean",
            "default": False,
            "description": "Seed from grid cells instead of every item; gives one cluster on face "
            "features, so leave off.",
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
    bandwidth: float = 1.0,
    min_bin_freq: int = 1,
    bin_seeding: bool = False,
) -> np.ndarray:
    """Cluster the features with mean shift.

    Parameters
    ----------
    features : float32 (N, D), L2-normalised.
    knn : unused.
    context : :class:`facecluster.methods.Context`; ``threads`` is ``n_jobs`` (joblib worker
        processes over the seeds).
    bandwidth : radius of the flat kernel, Euclidean.
    min_bin_freq : fewest items of a grid cell that seeds (``bin_seeding`` only).
    bin_seeding : seed from grid cells instead of from every item.

    Returns
    -------
    labels : int64 (N,), every item in a cluster (no -1).
    """
    from sklearn.cluster import MeanShift

    from .kmeans import check_integer, check_positive, fit_predict

    bandwidth = check_positive(bandwidth, "bandwidth")
    min_bin_freq = check_integer(min_bin_freq, "min_bin_freq")
    if not isinstance(bin_seeding, bool | np.bool_):
        raise ValueError(f"bin_seeding must be true or false, got {bin_seeding!r}")
    threads = int(getattr(context, "threads", 1))
    log.info(
        "MeanShift: %d items, bandwidth=%g, bin_seeding=%s",
        features.shape[0],
        bandwidth,
        bool(bin_seeding),
    )
    est = MeanShift(
        bandwidth=bandwidth,
        bin_seeding=bool(bin_seeding),
        min_bin_freq=min_bin_freq,
        n_jobs=threads,
    )
    labels = fit_predict(est, features, threads)
    log.info("MeanShift: %d clusters", len(est.cluster_centers_))
    return labels
