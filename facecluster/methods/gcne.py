"""GCN-E (Yang et al., CVPR 2020): edge connectivity on top of GCN-V.

GCN-E reads GCN-V's inference output on the same split as a declared input (``needs``
``upstream``: ``context.extra["upstream"]`` = ``{"confidence": (N,), "features": (N, hidden)}``
from :func:`facecluster.methods.gcnv.infer`), never recomputing it.

Graph. The hidden GCN-V features are L2-normalised and a kNN graph with ``gcn_k`` neighbours
(160 on MS1M) is built on them; A is GCN-V's construction on that graph (similarities >= 0,
max(A, A^T) + I, row-normalised).

Candidate subgraphs (learn-to-cluster ``GCNEDataset.get_subgraph``). For node i, the
candidates are its kNN neighbours (in kNN order, i.e. by ascending distance) of strictly
higher confidence, i itself excluded. No candidate: i is a root. One candidate, or i in the
*ignore set* (the ``ignore_ratio`` fraction of nodes with the smallest confidences): i links
to its nearest higher-confidence neighbour (GCN-V's rule). Otherwise i gets a subgraph: the
candidates as nodes, node features f_j - f_i, adjacency A[cand][:, cand] row-normalised
again (dense), and during training labels 1 where y_j == y_i.

Model (:mod:`facecluster.nn.gcne`). Four concat+mean GraphConvs (hidden -> 512 -> 512 -> 256
-> 256, ReLU), head Linear(256, 256) -> PReLU -> Linear(256, 2), log_softmax, NLL loss per
subgraph node. The reference trains one subgraph per iteration and accumulates gradients
over ``iter_size`` graphs (the loss is the mean over graphs of each graph's mean node loss);
we pad ``iter_size`` subgraphs into one batch (padding rows/columns isolated and masked out
of the loss), which gives the same gradient in one pass.

Clustering. For each subgraph the candidate with the largest log-probability of class 1
becomes i's peak; heuristic nodes keep their nearest higher-confidence neighbour; links with
similarity (on the GCN-feature kNN) above ``tau`` form connected components
(:func:`facecluster.methods.gcnv.peaks_to_labels`). The reference breaks ties of the argmax
with ``np.random.choice``; we take the first maximum, i.e. the nearest tied candidate, which
is deterministic.

The numpy parts (ignore set, candidates, subgraph tensors) are here so they can be tested
without torch; the torch model, training and inference are in :mod:`facecluster.nn.gcne`.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..io import InputError, Knn
from . import Clustering, Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "ignore_mask",
    "Plan",
    "plan_subgraphs",
    "candidates",
    "subgraph_features",
    "subgraph_adjacency",
    "subgraph_labels",
    "read_upstream",
    "train",
    "cluster",
    "load_pretrained",
]

#: the hidden size of GCN-V assumed by the estimate (its features are GCN-E's input)
UPSTREAM_HIDDEN = 512
#: exact kNN on the GCN features: GCN-V's figure (faiss, 30 % of its peak per core)
KNN_FLOPS_PER_THREAD = 3e10
#: effective rate of GCN-E's layers per CPU thread: small batched matmuls plus as much
#: elementwise work (packing, ReLU, log-softmax, their gradients); measured 4.5-9 GFLOP/s per
#: thread on the 2-core development machine under heavy load (see the family's report)
LAYER_FLOPS_PER_THREAD = 5e9
GPU_FLOPS = 5e12
#: adjacency-extraction lookups per second (scipy row gather + searchsorted, one thread),
#: measured about 6e6/s
LOOKUPS_PER_SECOND = 5e6
#: fixed cost per subgraph node and epoch (batching, packing, optimizer, Python), seconds,
#: fitted to the small-model measurements where the flop count alone underestimates
TRAIN_NODE_SECONDS = 1e-4
INFER_NODE_SECONDS = 3e-5
#: mean candidates per subgraph / gcn_k, measured 0.48-0.54 on synthetic MS1M-like splits
FILL = 0.5


def _layer_flops_per_node(in_dim: int, hidden: int, m: float) -> float:
    """Forward flops per subgraph node of GCN-E with subgraphs of ``m`` nodes."""
    half = hidden // 2
    dims = [(in_dim, hidden), (hidden, hidden), (hidden, half), (half, half)]
    dense = sum(2.0 * (2 * a) * b for a, b in dims) + 2.0 * half * half + 2.0 * half * 2
    agg = sum(2.0 * m * a for a, _ in dims)
    return dense + agg


def estimate(n, dim, k, *, params, train_params, train, threads, gpu=False) -> Cost:
    """Peak memory (bytes) and wall time (s) of training or clustering ``n`` items.

    Memory: GCN-V's outputs (confidences and N x 512 hidden features, plus the normalised
    copy), the kNN on the GCN features (N x gcn_k, 8 bytes per entry) and its symmetric CSR
    adjacency (about 2 N gcn_k entries of 12 bytes, with the row-gather copies), the
    candidate matrices, and one batch of padded subgraphs (features, adjacency and the
    activations of the four layers, three times when training for the gradients).
    Time: the exact kNN on the GCN features (2 N^2 512 flops), then for every subgraph node
    (``(1 - ignore_ratio) N`` subgraphs of ``FILL * gcn_k`` nodes on average) the forward
    pass (three passes when training, for ``epochs`` epochs over at most ``max_nodes``
    centres), the adjacency lookups (``1.5 gcn_k`` per node) and a fixed cost per node: kNN
    at 30 GFLOP/s per thread, layers at an effective 5 GFLOP/s per thread (measured),
    5 TFLOP/s on a GPU.
    """
    p = train_params if train else params
    gk = max(2, min(int(p.get("gcn_k", 160)), max(2, n - 1)))
    ratio = float(p.get("ignore_ratio", 0.8 if not train else 0.7))
    hidden = int(train_params.get("hidden", 512))
    h_in = UPSTREAM_HIDDEN
    m = FILL * gk
    subgraphs = max(1.0, (1.0 - ratio) * n)
    rate = GPU_FLOPS if gpu else LAYER_FLOPS_PER_THREAD * threads
    knn_rate = GPU_FLOPS if gpu else KNN_FLOPS_PER_THREAD * threads
    per_node = _layer_flops_per_node(h_in, hidden, m)
    batch = int(p.get("iter_size", 32)) if train else int(params.get("batch_size", 256))
    act = batch * gk * (gk + h_in + 3 * hidden + 2) * 4 * (3 if train else 1)
    memory = n * (4 * (2 * h_in + 1) + 8 * gk + 24 * gk + 8 * gk) + act + 64e6
    knn_seconds = 2.0 * n * n * h_in / knn_rate
    lookups = 1.5 * gk / LOOKUPS_PER_SECOND
    if train:
        max_nodes = int(train_params.get("max_nodes", 0))
        centres = min(subgraphs, max_nodes) if max_nodes > 0 else subgraphs
        per_epoch = centres * m * (3 * per_node / rate + lookups + TRAIN_NODE_SECONDS)
        seconds = knn_seconds + int(train_params.get("epochs", 40)) * per_epoch
    else:
        seconds = knn_seconds + subgraphs * m * (per_node / rate + lookups + INFER_NODE_SECONDS)
    return Cost(memory, seconds)


_TAU = {
    "type": "number",
    "minimum": -1,
    "maximum": 1,
    "default": 0.8,
    "description": "Similarity cut (on the GCN-feature kNN) of the peak links (0.8 MS1M, "
    "0.85 DeepFashion).",
}
_GCN_K = {
    "type": "integer",
    "minimum": 2,
    "default": 160,
    "description": "Neighbours of the kNN built on GCN-V's features: candidate pool and "
    "graph (160 MS1M, 80 DeepFashion).",
}


def _ignore(default: float, where: str) -> dict:
    return {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": default,
        "description": f"Fraction of lowest-confidence nodes linked by GCN-V's rule ({where}); "
        "GCN-E runs on the rest (issue #76: rho = 1 - ignore_ratio).",
    }


SPEC = FamilySpec(
    summary="GCN-E (Yang et al., CVPR 2020): GCN edge connectivity over higher-confidence "
    "candidates from GCN-V, then peak linking at tau",
    supervised=True,
    gpu=True,
    conda_env="torch",
    threads=16,
    needs=("upstream",),
    params={
        "tau": _TAU,
        "gcn_k": _GCN_K,
        "ignore_ratio": _ignore(0.8, "test: 0.8 on MS1M"),
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 256,
            "description": "Subgraphs per inference batch (memory ~ batch_size * gcn_k^2).",
        },
    },
    train_params={
        "gcn_k": _GCN_K,
        "ignore_ratio": _ignore(0.7, "training: 0.7 MS1M, 0.9 DeepFashion"),
        "hidden": {
            "type": "integer",
            "minimum": 2,
            "default": 512,
            "description": "Width of the first two GraphConvs, the last two have half (512 "
            "in the reference; a parameter is our addition, for affordable CPU runs).",
        },
        "epochs": {
            "type": "integer",
            "minimum": 1,
            "default": 40,
            "description": "Passes over the training subgraphs (40 in the reference).",
        },
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1, "description": "SGD rate."},
        "momentum": {
            "type": "number",
            "minimum": 0,
            "default": 0.9,
            "description": "SGD momentum.",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "default": 1.0e-5,
            "description": "SGD weight decay.",
        },
        "iter_size": {
            "type": "integer",
            "minimum": 1,
            "default": 32,
            "description": "Subgraphs per SGD step (the reference's gradient accumulation; "
            "32 MS1M, 64 DeepFashion).",
        },
        "milestones": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "default": [0.5, 0.8, 0.9],
            "description": "Fractions of epochs where the rate is multiplied by 0.1 (the "
            "reference's [20, 32, 36] of 40).",
        },
        "max_nodes": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Our addition for affordable CPU training: at most this many "
            "training subgraphs per epoch, a seeded subsample drawn anew each epoch "
            "(0 = all, the reference).",
        },
    },
    estimate=estimate,
)


# ----------------------------------------------------------------------------- subgraphs


def ignore_mask(conf: np.ndarray, ratio: float) -> np.ndarray:
    """bool (N,): the ``int(N * ratio)`` nodes of smallest confidence (ties: lower index).

    learn-to-cluster takes them with ``argpartition``, whose order among equal confidences
    is arbitrary; a stable sort makes the choice deterministic.
    """
    n = conf.shape[0]
    num = n if ratio >= 1 else int(n * ratio)
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(conf, kind="stable")[:num]] = True
    return mask


class Plan(NamedTuple):
    """Where each node's peak comes from.

    peaks : int64 (N,), the nearest higher-confidence neighbour (GCN-V's rule), -1 for roots.
    peak_sims : float32 (N,), similarity to that peak (-inf for roots).
    count : int64 (N,), number of candidates (higher-confidence kNN neighbours).
    subgraph_nodes : int64 (S,), nodes that get a GCN-E subgraph (>= 2 candidates and not
        ignored), in increasing order.
    """

    peaks: np.ndarray
    peak_sims: np.ndarray
    count: np.ndarray
    subgraph_nodes: np.ndarray


def _candidate_mask(knn: Knn, conf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """bool (len(rows), k): kNN entries of ``rows`` that are candidates (valid, not self,
    strictly higher confidence)."""
    nb = knn.nbrs[rows]
    valid = nb >= 0
    nbc = np.where(valid, nb, 0)
    return valid & (nb != rows[:, None]) & (conf[nbc] > conf[rows][:, None])


def plan_subgraphs(knn: Knn, conf: np.ndarray, ignore: np.ndarray, *, chunk: int = 65536) -> Plan:
    """Candidate counts, heuristic peaks and the subgraph nodes of every node (row chunks)."""
    n = knn.n
    peaks = np.full(n, -1, dtype=np.int64)
    peak_sims = np.full(n, -np.inf, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        cand = _candidate_mask(knn, conf, rows)
        count[rows] = cand.sum(axis=1)
        first = cand.argmax(axis=1)
        r = np.flatnonzero(count[rows] > 0)
        peaks[rows[r]] = knn.nbrs[rows[r], first[r]]
        peak_sims[rows[r]] = knn.sims[rows[r], first[r]]
    subgraph_nodes = np.flatnonzero((count >= 2) & ~ignore)
    return Plan(peaks, peak_sims, count, subgraph_nodes)


def candidates(knn: Knn, conf: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate index matrix of ``centres`` (B,), left-aligned in kNN order.

    Returns
    -------
    cand : int64 (B, m), m = the largest candidate count; -1 pads.
    pos : int64 (B, m), the column of each candidate in its centre's kNN row (-1 pads), to
        read similarities from ``knn.sims``.
    """
    centres = np.asarray(centres, dtype=np.int64)
    mask = _candidate_mask(knn, conf, centres)
    count = mask.sum(axis=1)
    m = int(count.max()) if count.size else 0
    # stable sort of "not a candidate" moves candidates to the front in kNN order
    order = np.argsort(~mask, axis=1, kind="stable")[:, :m]
    keep = np.arange(m)[None, :] < count[:, None]
    cand = np.where(keep, np.take_along_axis(knn.nbrs[centres], order, axis=1), -1)
    pos = np.where(keep, order, -1)
    return cand.astype(np.int64), pos.astype(np.int64)


def subgraph_features(feats: np.ndarray, centres: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """float32 (B, m, D): f_j - f_i for each candidate j of centre i, zero on padding."""
    valid = cand >= 0
    out = feats[np.where(valid, cand, 0)] - feats[centres][:, None, :]
    out[~valid] = 0.0
    return out.astype(np.float32, copy=False)


def subgraph_adjacency(adj: sp.csr_matrix, cand: np.ndarray) -> np.ndarray:
    """float32 (B, m, m): A[cand][:, cand] of each subgraph, row-normalised again.

    ``adj`` is the graph's CSR adjacency (N, N). The rows of all candidates are gathered at
    once; each entry's column is located among its own subgraph's candidates with one
    ``searchsorted`` on the keys ``b * N + node``. Padding rows and columns stay zero, so
    padded nodes are isolated from the real ones.
    """
    b, m = cand.shape
    n = adj.shape[0]
    out = np.zeros((b, m, m), dtype=np.float32)
    valid = cand >= 0
    if not valid.any():
        return out
    gb, ga = np.nonzero(valid)  # subgraph and slot of every real candidate, row-major
    rows = adj[cand[gb, ga]]
    lengths = np.diff(rows.indptr)
    eb = np.repeat(gb, lengths)
    ea = np.repeat(ga, lengths)
    keys = eb * n + rows.indices.astype(np.int64)
    skeys = gb * n + cand[gb, ga]
    order = np.argsort(skeys, kind="stable")
    skeys = skeys[order]
    at = np.minimum(np.searchsorted(skeys, keys), skeys.size - 1)
    hit = skeys[at] == keys
    out[eb[hit], ea[hit], ga[order[at[hit]]]] = rows.data[hit]
    sums = out.sum(axis=2, keepdims=True)
    np.divide(out, sums, out=out, where=sums > 0)
    return out


def subgraph_labels(labels: np.ndarray, centres: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """int64 (B, m): 1 where candidate j has centre i's identity, 0 otherwise, -1 where the
    entry is padding or either identity is unknown (-1), which the loss masks out."""
    valid = cand >= 0
    yj = labels[np.where(valid, cand, 0)]
    yi = labels[centres][:, None]
    out = (yj == yi).astype(np.int64)
    out[~valid | (yj < 0) | (yi < 0)] = -1
    return out


def read_upstream(context, n: int) -> tuple[np.ndarray, np.ndarray]:
    """GCN-V's confidences float32 (N,) and L2-normalised features float32 (N, hidden) from
    ``context.extra["upstream"]``; :class:`InputError` when missing or of the wrong size."""
    up = (context.extra or {}).get("upstream")
    if not isinstance(up, dict) or "confidence" not in up or "features" not in up:
        raise InputError(
            "gcne needs the upstream (GCN-V) output: context.extra['upstream'] with "
            "'confidence' and 'features'"
        )
    conf = np.asarray(up["confidence"], dtype=np.float32).reshape(-1)
    feats = np.array(up["features"], dtype=np.float32)  # a copy: normalised in place
    if conf.shape[0] != n or feats.ndim != 2 or feats.shape[0] != n:
        raise InputError(
            f"gcne: upstream output has {conf.shape[0]} confidences and features of shape "
            f"{feats.shape}, the split has {n} items"
        )
    # ReLU can zero a whole row: keep such rows at zero instead of dividing by 0
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return conf, feats


# ----------------------------------------------------------------------------- entry points


def train(features: np.ndarray, labels: np.ndarray, knn: Knn, *, context, **train_params) -> dict:
    """Train GCN-E on the labelled train split: :func:`facecluster.nn.gcne.train`."""
    from ..nn import gcne as impl

    return impl.train(features, labels, knn, context=context, **train_params)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    tau: float = 0.8,
    gcn_k: int = 160,
    ignore_ratio: float = 0.8,
    batch_size: int = 256,
) -> np.ndarray:
    """Cluster with a trained GCN-E on GCN-V's output (``context.extra["upstream"]``).

    Returns a :class:`Clustering`: int64 labels (N,), every node in a cluster (roots and
    unlinked nodes singletons), and GCN-V's confidence (N,) per item.
    """
    from ..nn import gcne as impl
    from .gcnv import peaks_to_labels

    peaks, peak_sims = impl.predict_peaks(
        features,
        knn,
        model,
        context=context,
        gcn_k=gcn_k,
        ignore_ratio=ignore_ratio,
        batch_size=batch_size,
    )
    labels = peaks_to_labels(peaks, peak_sims, tau)
    log.info("gcne: %d clusters at tau=%.3f", np.unique(labels).size, tau)
    return Clustering(labels, {"confidence": context.extra["upstream"]["confidence"]})


def load_pretrained(paths: dict[str, str]) -> dict:
    """learn-to-cluster's released GCN-E weights (``paths["model"]``, e.g.
    ``pretrained_gcn_e_ms1m.pth``) as the model dict :func:`train` returns."""
    from ..nn import gcne as impl

    return impl.load_pretrained(paths)
