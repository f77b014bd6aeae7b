"""Infomap on the thresholded kNN graph (xiaoxiong74/face-cluster-by-infomap).

Every kNN neighbour j != i of item i with cosine similarity ``sim >= min_sim`` gives a
directed link i -> j of weight ``sim``; the map equation (Rosvall & Bergstrom, PNAS 2008;
the ``infomap`` package, 2.16) partitions that network, and each item's module is its
cluster. Items with no link in either direction are not in the network: they get ``-1``
(the workflow makes them singletons, as the reference does).

Differences from the reference script, all deliberate:

* the links come from one vectorised mask over the kNN graph and reach Infomap as one
  (E, 3) float64 array through ``Infomap.add_links`` (the bulk C++ path of infomap >= 2.11),
  instead of a Python dict of links and a per-link ``addLink`` loop. The reference walks each
  sorted row and stops at the first neighbour below ``min_sim``; on rows sorted by descending
  similarity the mask selects the same links;
* labels are read from the leaf nodes only (their finest modules, through
  ``write_clu(depth_level=-1)``). The reference iterates the whole tree, root and module
  nodes included, whose ``physicalId`` is 0, so it can overwrite node 0's label, and
  then patches the member lists by dropping their first entries; that corruption is not
  reproduced;
* the seed is ``max(1, context.seed)``: current Infomap refuses seeds below 1 (the reference
  ran Infomap's default seed 123);
* float64 link rows keep node ids exact beyond 2^24 items (float32 would not).

Reference settings (k is only the candidate list, not an Infomap parameter): MS1M part1_test
k=50, min_sim=0.58 (pairwise F 93.98); YouTube-Faces k=400, min_sim=0.56; DeepFashion k=400,
min_sim=0.88. Two-level, directed, 1 trial, teleportation 0.15 (unrecorded, to links),
Markov time 1.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings

import numpy as np

from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = ["SPEC", "estimate", "knn_links", "masked_links", "cluster", "run_infomap"]


def estimate(
    n: int, dim: int, k: int, *, params: dict | None = None, threads: int = 1, **_
) -> Cost:
    """Peak memory and wall time of :func:`cluster` on ``n`` items with ``k`` neighbours.

    The number of links ``L`` is taken at its upper bound ``n * (k - 1)`` (every neighbour
    above ``min_sim``), so both numbers are ceilings (synthetic data at k 50 and min_sim 0.58
    keeps about 85 % of that). Memory: the Python process with infomap loaded (about 100 MB),
    the features (read) and the kNN graph (8 bytes per entry), plus about 130 bytes per link
    for the link mask, the (E, 3) float64 link array, Infomap's network and its two-level
    optimisation (190 bytes with ``two_level: false``). Time: 0.3 microseconds per link to
    build the network, 5 microseconds per item to read the modules back, and the optimisation,
    0.85 s x (L / 1e6)^1.2 per trial (1.9 times that multi-level). Measured with infomap 2.16
    on this machine (2 cores) at 20K, 50K and 100K synthetic items, k 50 (0.8M-4.2M links).
    """
    params = params or {}
    links = max(0, n * (k - 1))
    two_level = bool(params.get("two_level", True))
    trials = int(params.get("num_trials", 1))
    memory = 100e6 + n * (4.0 * dim + 8.0 * k) + links * (130.0 if two_level else 190.0)
    run = 0.85 * (links / 1e6) ** 1.2 * trials * (1.0 if two_level else 1.9)
    seconds = 1.0 + 3e-7 * links + 5e-6 * n + run
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="Infomap (map equation) on the directed kNN graph above min_sim "
    "(xiaoxiong74/face-cluster-by-infomap)",
    thresholds={"min_sim": "similarity"},
    conda_env="infomap",
    threads=2,
    params={
        "min_sim": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.58,
            "description": "Link kNN neighbours with cosine similarity >= min_sim; 0.58 on MS1M "
            "(face-cluster-by-infomap).",
        },
        "two_level": {
            "type": "boolean",
            "default": True,
            "description": "Two-level partition (the reference); false clusters by the finest "
            "modules of a multi-level tree.",
        },
        "directed": {
            "type": "boolean",
            "default": True,
            "description": "Directed flow model (the reference); false makes the links undirected.",
        },
        "num_trials": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Infomap optimisation trials; the best partition is kept (the "
            "reference: 1).",
        },
        "teleportation_probability": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.15,
            "description": "Teleportation rate of the directed flow model (Infomap's default "
            "0.15, as the reference).",
        },
        "markov_time": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
            "description": "Scales the code length of module exits; > 1 gives fewer, larger "
            "modules (the reference: 1).",
        },
    },
    estimate=estimate,
)


def knn_links(knn: Knn, min_sim: float) -> np.ndarray:
    """Directed links i -> j for kNN neighbours j != i (j != -1) with ``sim >= min_sim``.

    Parameters
    ----------
    knn : kNN graph over N items.
    min_sim : cosine similarity threshold (inclusive).

    Returns
    -------
    links : float64 C-contiguous (E, 3), rows ``(i, j, sim)`` in row-major kNN order.
    """
    n, k = knn.nbrs.shape
    nbrs = knn.nbrs
    rows = np.arange(n, dtype=np.int64)[:, None]
    keep = (knn.sims >= min_sim) & (nbrs >= 0) & (nbrs != rows)
    return masked_links(nbrs, keep, knn.sims)


def masked_links(nbrs: np.ndarray, keep: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Links i -> nbrs[i, a] of weight weights[i, a] for every True ``keep[i, a]``.

    Parameters
    ----------
    nbrs, keep, weights : (N, k) neighbour ids, selection mask and link weights.

    Returns
    -------
    links : float64 C-contiguous (E, 3), rows ``(i, j, weight)`` in row-major order (the
        layout of ``Infomap.add_links``; float64 keeps ids exact beyond 2^24).
    """
    src, col = np.nonzero(keep)
    links = np.empty((src.size, 3), dtype=np.float64)
    links[:, 0] = src
    links[:, 1] = nbrs[src, col]
    links[:, 2] = weights[src, col]
    return links


#: seconds of the last :func:`cluster` call: ``build`` (links and network), ``optimise``,
#: ``read`` (modules back); benchmarks/methods.py prints their shares
LAST_TIMINGS: dict[str, float] = {}


def _leaf_modules(im) -> tuple[np.ndarray, np.ndarray]:
    """(node ids, finest module ids) of the network's leaf nodes, int64 arrays.

    Read from the ``.clu`` file Infomap writes, not from ``Result.modules()``: that walks
    SWIG vectors with a Python iterator, and when faiss (another SWIG module) is loaded in
    the same process SWIG's shared type table can hand it faiss' iterator class, which
    crashed the interpreter (seen in the test suite). The file is read with pandas' C
    parser: fast at millions of nodes.
    """
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "modules.clu")
        im.write_clu(path, depth_level=-1)
        table = pd.read_csv(path, sep=" ", comment="#", header=None, usecols=[0, 1], dtype=np.int64)
    return table[0].to_numpy(), table[1].to_numpy()


def _check(min_sim, num_trials, teleportation_probability, markov_time) -> None:
    if not -1.0 <= min_sim <= 1.0:
        raise ValueError(f"min_sim must be in [-1, 1], got {min_sim}")
    if int(num_trials) != num_trials or num_trials < 1:
        raise ValueError(f"num_trials must be an integer >= 1, got {num_trials}")
    if not 0.0 <= teleportation_probability <= 1.0:
        raise ValueError(
            f"teleportation_probability must be in [0, 1], got {teleportation_probability}"
        )
    if not markov_time > 0:
        raise ValueError(f"markov_time must be > 0, got {markov_time}")


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model=None,
    min_sim: float = 0.58,
    two_level: bool = True,
    directed: bool = True,
    num_trials: int = 1,
    teleportation_probability: float = 0.15,
    markov_time: float = 1.0,
) -> np.ndarray:
    """Cluster with Infomap on the directed kNN graph above ``min_sim``.

    Parameters
    ----------
    features : float32 (N, D); unused (the kNN graph carries the similarities).
    knn : kNN graph over the N items (self first).
    context : :class:`facecluster.methods.Context`; ``seed`` seeds Infomap as
        ``max(1, seed)`` (Infomap needs a seed >= 1), ``threads`` sets its ``num_threads``.
    min_sim : keep neighbours with cosine similarity >= min_sim (inclusive, as the reference).
    two_level : two-level partition (the reference); if false, Infomap builds a multi-level
        hierarchy and its finest modules (the parents of the leaf nodes) are the clusters:
        its top level groups similar identities together.
    directed : directed flow model (the reference); if false, links are undirected (a
        reciprocal pair's two weights add up).
    num_trials : optimisation trials; the best partition is kept.
    teleportation_probability : Infomap's teleportation rate of the directed flow model
        (Infomap's default 0.15).
    markov_time : scales the code length of module exits; > 1 gives fewer, larger modules.

    Returns
    -------
    labels : int64 (N,), the module index (0-based, Infomap's numbering) of every item in
        the network; ``-1`` for items with no link in either direction.
    """
    _check(min_sim, num_trials, teleportation_probability, markov_time)
    t0 = time.perf_counter()
    links = knn_links(knn, min_sim)
    if links.shape[0] == 0:
        log.info("infomap: no link with sim >= %.3f; every item is a singleton", min_sim)
        return np.full(knn.n, -1, dtype=np.int64)
    return run_infomap(
        links,
        knn.n,
        context=context,
        two_level=two_level,
        directed=directed,
        num_trials=num_trials,
        teleportation_probability=teleportation_probability,
        markov_time=markov_time,
        started=t0,
    )


def run_infomap(
    links: np.ndarray,
    n: int,
    *,
    context=None,
    two_level: bool = True,
    directed: bool = True,
    num_trials: int = 1,
    teleportation_probability: float = 0.15,
    markov_time: float = 1.0,
    started: float | None = None,
    name: str = "infomap",
) -> np.ndarray:
    """Partition a weighted network of ``n`` nodes with Infomap; shared by the families that
    build their links another way (FC-ES, FaceMap).

    Parameters
    ----------
    links : float64 C-contiguous (E, 3), rows ``(source, target, weight)``.
    n : number of items (node ids are 0..n-1).
    context : seeds Infomap as ``max(1, seed)`` and sets its threads.
    started : ``perf_counter()`` when building the links began (for the timings).
    name : the family, in the log.

    Returns
    -------
    labels : int64 (N,), the module of every node in the network (0-based); ``-1`` for
        nodes without a link in either direction. ``LAST_TIMINGS`` holds ``build``,
        ``optimise`` and ``read`` seconds.
    """
    import infomap

    seed = max(1, int(context.seed)) if context is not None else 1
    threads = max(1, int(context.threads)) if context is not None else 1
    labels = np.full(n, -1, dtype=np.int64)
    t0 = time.perf_counter() if started is None else started
    t_links = time.perf_counter()
    with warnings.catch_warnings():
        # only calls of the 2.16 surface that raise no 3.0 deprecation notice are used
        # (no ``silent=``/``threads=``/``num_threads=`` keywords, no ``im.modules``); should
        # a later 2.x add one, its LegacySurfaceWarning (a DeprecationWarning) is filtered
        warnings.simplefilter("ignore", DeprecationWarning)
        im = infomap.Infomap(
            two_level=bool(two_level),
            directed=bool(directed),
            num_trials=int(num_trials),
            seed=seed,
            teleportation_probability=float(teleportation_probability),
            markov_time=float(markov_time),
            options=infomap.Options(num_threads=threads),
        )
        im.add_links(np.ascontiguousarray(links, dtype=np.float64))
        t_built = time.perf_counter()
        result = im.run()
        t_run = time.perf_counter()
        # leaf (physical) nodes only; their finest module (= the top module when two-level)
        nodes, mods = _leaf_modules(im)
    del im
    labels[nodes] = mods - mods.min()
    t_end = time.perf_counter()
    build = t_built - t0
    total = t_end - t0
    log.info(
        "%s: %d items, %d in the network, %d links, %d modules, codelength %.4f; "
        "links %.2f s + network build %.2f s = %.2f s (%.0f %% of %.2f s), optimise %.2f s, "
        "read modules %.2f s",
        name,
        n,
        nodes.size,
        result.num_links,
        np.unique(mods).size,
        result.codelength,
        t_links - t0,
        t_built - t_links,
        build,
        100.0 * build / total if total > 0 else 0.0,
        total,
        t_run - t_built,
        t_end - t_run,
    )
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(build=build, optimise=t_run - t_built, read=t_end - t_run)
    return labels
