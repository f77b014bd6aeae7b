"""L-GCN (Wang et al., CVPR 2019): link prediction on instance pivot subgraphs.

As re-implemented in learn-to-cluster (``lgcn/``). Every item is a pivot p: its subgraph
holds p, its kNN neighbours (hop 1) and their first ``k_at_hop[1]`` neighbours (hop 2), with
features f_v - f_p and an adjacency that links each node to its first ``active_connection``
neighbours inside the subgraph (details in :mod:`facecluster.nn.lgcn`). A four-layer GCN
predicts, for every hop-1 node, whether it shares the pivot's identity.

Training (``train``): cross-entropy on those links, SGD for ``epochs`` passes over all
pivots of the labelled train split (``max_pivots`` > 0, our addition, trains on a seeded
random subset of pivots per epoch so training is affordable on a CPU).

Clustering (``cluster``): the (pivot, hop-1 node, P(link)) triples of every pivot become
undirected pairs whose duplicate scores are averaged, then learn-to-cluster's
``graph_clustering_dynamic_th`` (:func:`facecluster.graph.propagate`, first pass on all
edges, then rising thresholds on components above ``max_sz``). Items in no pair are -1
(singletons). Released MS1M weights load with :func:`load_pretrained`.

Hop 1 is the first min(k - 1, ``k_at_hop[0]``) neighbours: learn-to-cluster takes all k - 1
(its ``k_at_hop[0]`` only pads, and is >= k - 1 in every config), Wang et al.'s code the first
``k_at_hop[0]``. The cap lets a variant share the dataset's k = 80 kNN file, train on hop 1
= 79 (where the negatives are) and cluster on a small hop 1 (cost grows with the subgraph).
"""

from __future__ import annotations

import logging

import numpy as np

from ..graph import propagate, unique_pairs
from ..io import Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "subgraph_nodes",
    "typical_nodes",
    "estimate",
    "train",
    "predict_edges",
    "cluster",
]

#: sustained fp32 rates of the GCN's matrix products: measured 29-32 GFLOP/s on one thread
#: of this project's CPU with the machine shared (k 80 [80, 10]: 14 ms per pivot of 145
#: nodes; k 10 [10, 2]: 1.4 ms per pivot of 18 nodes); a conservative GPU rate
CPU_FLOPS_PER_THREAD = 3e10
GPU_FLOPS = 5e12
#: hidden sizes of the four GraphConvs and the head (fixed by the released model)
LAYERS = (512, 512, 256, 256)
HEAD = 256
#: pivots per inference chunk sorted by size (facecluster.nn.lgcn.predict_edges)
CHUNK = 1024


def _hops(k: int, k_at_hop) -> tuple[int, int]:
    """Hop-1 size k1 = min(k - 1, k_at_hop[0]) and hop-2 fan-out k2 = min(k - 1, k_at_hop[1])."""
    return min(k - 1, int(k_at_hop[0])), min(k - 1, int(k_at_hop[1]))


def subgraph_nodes(k: int, k_at_hop) -> int:
    """Largest subgraph: 1 + k1·(1 + k2) nodes (hop-2 overlap makes real ones smaller)."""
    k1, k2 = _hops(k, k_at_hop)
    return 1 + k1 * (1 + k2)


def typical_nodes(k: int, k_at_hop) -> int:
    """Nodes of a typical subgraph for the time estimate: hop-2 lists overlap hop 1 and each
    other, so distinct hop-2 nodes number about k1·min(k2, 2) at most (measured mean nodes on
    the synthetic default: 145/164 at part1/part9 for k 80 [80, 10] against 870 possible,
    103 for [80, 3], 54 for [40, 2], 18 for [10, 2]); capped at :func:`subgraph_nodes`."""
    k1, k2 = _hops(k, k_at_hop)
    return min(subgraph_nodes(k, k_at_hop), 1 + k1 * (1 + min(k2, 2)))


def _forward_flops(nodes: float, dim: int, k1: int) -> float:
    """FLOPs of one pivot's forward pass on ``nodes`` (padded) nodes: the dense batched
    A·X of every layer, the concat+mean Linear layers and the head on the k1 hop-1 nodes."""
    widths = (dim, *LAYERS)
    agg = sum(2.0 * nodes * nodes * w for w in widths[:-1])
    lin = sum(2.0 * nodes * 2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    head = 2.0 * k1 * (HEAD * HEAD + HEAD * 2)
    return agg + lin + head


def estimate(n, dim, k, *, params, train_params, train, threads, gpu=False) -> Cost:
    """Peak memory (bytes) and wall time (s) of training or clustering ``n`` items.

    Per pivot the subgraph has at most 1 + k1·(1 + k2) nodes (:func:`subgraph_nodes`), the
    bound used for memory; time uses :func:`typical_nodes` (1.5 to 2.3 times the measured
    mean on the synthetic default). Time: :func:`_forward_flops` per pivot, times 3
    (forward + backward) x epochs x pivots when training, at ``CPU_FLOPS_PER_THREAD`` per
    thread or ``GPU_FLOPS``; plus 2 µs per edge for pairs and propagation when
    clustering. Memory: features, the kNN (int64 on the device), one batch's adjacency
    (B·n²) and activations (B·n·(3D + 4,096) floats, doubled for gradients when training),
    the model with SGD momentum, and when clustering the E = N·k1 scored pairs with the
    copies made by de-duplication and propagation (about 64 bytes per pair).
    """
    block = train_params if train else params
    k_at_hop = block["k_at_hop"]
    k1, _ = _hops(k, k_at_hop)
    nodes = subgraph_nodes(k, k_at_hop)
    batch = int(block["batch_size"])
    pivots = n
    if train and int(train_params.get("max_pivots", 0)) > 0:
        pivots = min(n, int(train_params["max_pivots"]))
    flops = _forward_flops(typical_nodes(k, k_at_hop), dim, k1) * pivots
    if train:
        flops *= 3 * int(train_params["epochs"])
    rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
    edges = 0 if train else n * k1
    seconds = flops / rate + 2e-6 * edges
    act = batch * nodes * (3 * dim + 4096) * 4 * (2 if train else 1)
    adj = batch * nodes * nodes * 4 * (2 if train else 1)
    params_bytes = 4 * 3 * (2 * dim * 512 + 1024 * 512 + 1024 * 256 + 512 * 256 + HEAD * HEAD)
    memory = n * (4 * dim + 8 * k + 8) + act + adj + params_bytes + 64 * edges
    return Cost(float(memory), float(seconds))


_K_AT_HOP = {
    "type": "array",
    "items": {"type": "integer", "minimum": 1},
    "minItems": 2,
    "maxItems": 2,
}

SPEC = FamilySpec(
    summary="L-GCN (Wang et al., CVPR 2019): GCN link prediction on instance pivot "
    "subgraphs, then size-capped propagation of the averaged link scores",
    supervised=True,
    gpu=True,
    conda_env="torch",
    threads=16,
    params={
        "k_at_hop": {
            **_K_AT_HOP,
            "default": [80, 10],
            "description": "Subgraph hops: [hop-1 cap (hop 1 = the first min(k-1, cap) "
            "neighbours), hop-2 neighbours per hop-1 node]. MS1M test: [80, 10].",
        },
        "active_connection": {
            "type": "integer",
            "minimum": 1,
            "default": 10,
            "description": "Each subgraph node links to those of its first "
            "active_connection neighbours inside the subgraph.",
        },
        "max_sz": {
            "type": "integer",
            "minimum": 1,
            "default": 300,
            "description": "Largest cluster accepted by the propagation.",
        },
        "step": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.6,
            "description": "Threshold step of the propagation: th <- th + (1 - th) * step.",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 16,
            "description": "Pivots per inference batch (scores depend on it only through "
            "floating-point rounding; larger is faster on a CPU).",
        },
    },
    train_params={
        "k_at_hop": {
            **_K_AT_HOP,
            "default": [200, 10],
            "description": "Training subgraph hops (MS1M: [200, 10]; the first entry also "
            "sets the reference's padding, which enters the BatchNorm statistics).",
        },
        "active_connection": {
            "type": "integer",
            "minimum": 1,
            "default": 10,
            "description": "Neighbours per node considered for edges in training.",
        },
        "epochs": {
            "type": "integer",
            "minimum": 1,
            "default": 4,
            "description": "Passes over the train pivots.",
        },
        "lr": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.01,
            "description": "SGD rate.",
        },
        "momentum": {
            "type": "number",
            "minimum": 0,
            "default": 0.9,
            "description": "SGD momentum.",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "default": 1.0e-4,
            "description": "SGD weight decay.",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 16,
            "description": "Pivots per SGD step.",
        },
        "milestones": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "default": [0.25, 0.5, 0.75],
            "description": "Fractions of all iterations where the rate is multiplied by 0.1 "
            "(the reference: epochs 1, 2, 3 of 4).",
        },
        "max_pivots": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Pivots per epoch: 0 = every item (the reference); else a seeded "
            "random subset of that many (ours, for affordable CPU training).",
        },
    },
    estimate=estimate,
)


def train(features: np.ndarray, labels: np.ndarray, knn: Knn, *, context, **train_params) -> dict:
    """Train L-GCN on a labelled split: :func:`facecluster.nn.lgcn.train`."""
    from ..nn import lgcn as impl

    return impl.train(features, labels, knn, context=context, **train_params)


def load_pretrained(paths: dict[str, str]) -> dict:
    """The model dict of learn-to-cluster's released weights: ``paths["model"]`` is
    ``pretrained_lgcn_ms1m.pth`` (or the DeepFashion one)."""
    from ..nn import lgcn as impl

    return impl.load_pretrained(paths["model"])


def predict_edges(
    features: np.ndarray, knn: Knn, model: dict, *, context, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """(pivot, hop-1 node) pairs int64 (E, 2) and P(link) float32 (E,):
    :func:`facecluster.nn.lgcn.predict_edges`."""
    from ..nn import lgcn as impl

    return impl.predict_edges(features, knn, model, context=context, **kwargs)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    k_at_hop=(80, 10),
    active_connection: int = 10,
    max_sz: int = 300,
    step: float = 0.6,
    batch_size: int = 16,
) -> np.ndarray:
    """Cluster with a trained (or released) L-GCN.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : the split's kNN graph (self first).
    model : the dict of :func:`train` or :func:`load_pretrained`.
    k_at_hop, active_connection : test subgraph settings (MS1M: [80, 10], 10).
    max_sz, step : propagation settings (MS1M: 300, 0.6).
    batch_size : pivots per inference batch.

    Returns
    -------
    labels : int64 (N,), -1 for items in no scored pair.
    """
    pairs, scores = predict_edges(
        features,
        knn,
        model,
        context=context,
        k_at_hop=k_at_hop,
        active_connection=active_connection,
        batch_size=batch_size,
        chunk=CHUNK,
    )
    pairs, scores = unique_pairs(pairs, scores, pool="avg")
    labels = propagate(knn.n, pairs, scores, max_sz=max_sz, step=step)
    log.info(
        "lgcn: %d pairs, %d clusters, %d items unlinked",
        len(pairs),
        np.unique(labels[labels >= 0]).size,
        int((labels < 0).sum()),
    )
    return labels
