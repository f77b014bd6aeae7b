"""GCN-E's torch parts: the model, batched training with masked padding, inference, and the
released weights.

The family module :mod:`facecluster.methods.gcne` (light: no torch at import) holds the
numpy subgraph extraction and calls these.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..graph import symmetric_normalized_adjacency
from ..io import InputError, Knn
from ..knn import build_knn_from_spec
from ..methods.gcne import (
    candidates,
    ignore_mask,
    plan_subgraphs,
    read_upstream,
    subgraph_adjacency,
    subgraph_features,
    subgraph_labels,
)
from . import GraphConv, aggregate, resolve_device, seed_everything
from .zoo import load_checkpoint, remap

log = logging.getLogger(__name__)

__all__ = [
    "GCNE",
    "masked_loss",
    "Batch",
    "make_batch",
    "gcn_graph",
    "train",
    "predict_peaks",
    "load_pretrained",
]


class GCNE(nn.Module):
    """Four concat+mean GraphConvs (in -> hidden -> hidden -> hidden/2 -> hidden/2, ReLU),
    head Linear -> PReLU -> Linear(2), log_softmax (learn-to-cluster's ``GCN_E``, nclass 2).

    One version of the reference's ``gcn_e.py`` applies ``NLLLoss`` to the raw head output
    (a bug: the NLL of unnormalised scores is unbounded below); the other applies
    ``log_softmax`` in ``forward``, which we follow.
    """

    def __init__(self, in_dim: int = 512, hidden: int = 512):
        super().__init__()
        half = hidden // 2
        self.conv1 = GraphConv(in_dim, hidden)
        self.conv2 = GraphConv(hidden, hidden)
        self.conv3 = GraphConv(hidden, half)
        self.conv4 = GraphConv(half, half)
        self.head = nn.Sequential(nn.Linear(half, half), nn.PReLU(half), nn.Linear(half, 2))

    def forward(
        self, x: torch.Tensor, adj: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-probabilities (B, m, 2) from node features x (B, m, in_dim) and dense
        row-normalised adjacencies adj (B, m, m).

        ``valid`` (B, m) bool marks the real nodes of padded subgraphs (None: all real). The
        aggregation runs on the padded batch (padding rows and columns of ``adj`` are zero,
        so padding never reaches a real node); the dense layers run on the real nodes only,
        so their cost does not grow with the padding. Padding rows of the output are 0.
        """
        b, m, _ = x.shape
        convs = (self.conv1, self.conv2, self.conv3, self.conv4)
        if valid is None:
            h = x
            for conv in convs:
                h = conv(h, adj)
            out = self.head(h.reshape(b * m, -1))  # PReLU reads dim 1 as channels
            return torch.log_softmax(out, dim=-1).view(b, m, 2)
        flat = valid.reshape(-1).nonzero().squeeze(1)
        h = x.reshape(b * m, -1).index_select(0, flat)  # (T, d): the real nodes only
        for conv in convs:
            d = h.shape[1]
            padded = h.new_zeros(b * m, d).index_copy(0, flat, h).view(b, m, d)
            ax = aggregate(adj, padded).reshape(b * m, d).index_select(0, flat)
            h = _combine(conv, h, ax)
        rows = torch.log_softmax(self.head(h), dim=-1)
        return rows.new_zeros(b * m, 2).index_copy(0, flat, rows).view(b, m, 2)


def _combine(conv: GraphConv, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """``conv.combine(x, ax)`` = ReLU([x | ax] W^T + b) without materialising the concat."""
    w = conv.linear.weight
    d = x.shape[-1]
    out = F.linear(x, w[:, :d], conv.linear.bias) + F.linear(ax, w[:, d:])
    return conv.dropout(torch.relu(out))


def masked_loss(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over subgraphs of each subgraph's mean NLL over its labelled nodes.

    ``logp`` (B, m, 2), ``y`` int64 (B, m) with -1 on padding (masked out). This equals the
    reference's loss accumulated over B single-graph iterations and divided by B; subgraphs
    without a labelled node are left out.
    """
    mask = (y >= 0).to(logp.dtype)
    nll = -logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    per_node = mask.sum(dim=1)
    has = per_node > 0
    per_graph = (nll * mask).sum(dim=1) / per_node.clamp(min=1)
    return per_graph[has].mean()


class Batch(NamedTuple):
    """One batch of padded subgraphs.

    x : (B, m, D) float32 tensor, adj : (B, m, m) float32 tensor, valid : (B, m) bool tensor,
    cand / pos : int64 (B, m) numpy arrays (-1 pads, see
    :func:`facecluster.methods.gcne.candidates`), y : (B, m) int64 tensor or None.
    """

    x: torch.Tensor
    adj: torch.Tensor
    valid: torch.Tensor
    cand: np.ndarray
    pos: np.ndarray
    y: torch.Tensor | None = None


def make_batch(gcn, centres: np.ndarray, device: torch.device, labels=None) -> Batch:
    """Extract the subgraphs of ``centres`` (int64 (B,)) from ``gcn`` (see :func:`gcn_graph`)."""
    cand, pos = candidates(gcn["knn"], gcn["conf"], centres)
    x = subgraph_features(gcn["feats"], centres, cand)
    adj = subgraph_adjacency(gcn["adj"], cand)
    y = None
    if labels is not None:
        y = torch.from_numpy(subgraph_labels(labels, centres, cand)).to(device)
    return Batch(
        torch.from_numpy(x).to(device),
        torch.from_numpy(adj).to(device),
        torch.from_numpy(cand >= 0).to(device),
        cand,
        pos,
        y,
    )


def gcn_graph(n: int, context, gcn_k: int, ignore_ratio: float) -> dict:
    """GCN-V's output from ``context.extra["upstream"]`` and the graph built on it.

    Returns a dict: ``conf`` float32 (N,), ``feats`` float32 (N, H) L2-normalised, ``knn``
    (N, k) on the features with k = min(gcn_k, N - 1), ``adj`` its CSR GCN adjacency,
    ``plan`` (:class:`facecluster.methods.gcne.Plan`).
    """
    conf, feats = read_upstream(context, n)
    k = max(1, min(int(gcn_k), n - 1))
    knn = build_knn_from_spec(
        feats,
        k,
        context.knn_backend,
        threads=context.threads,
        seed=context.seed,
        source="gcne: GCN-V features",
    )
    adj = symmetric_normalized_adjacency(knn, 0.0)
    plan = plan_subgraphs(knn, conf, ignore_mask(conf, ignore_ratio))
    log.info(
        "gcne: %d of %d nodes get a subgraph (k=%d, ignore_ratio=%.2f, mean %.1f candidates)",
        plan.subgraph_nodes.size,
        n,
        k,
        ignore_ratio,
        plan.count[plan.subgraph_nodes].mean() if plan.subgraph_nodes.size else 0.0,
    )
    return {"conf": conf, "feats": feats, "knn": knn, "adj": adj, "plan": plan}


def _model_dict(net: GCNE, in_dim: int, hidden: int, gcn_k: int, loss: float) -> dict:
    return {
        "family": "gcne",
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "in_dim": int(in_dim),
        "hidden": int(hidden),
        "gcn_k": int(gcn_k),
        "loss": float(loss),
    }


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    gcn_k: int = 160,
    ignore_ratio: float = 0.7,
    hidden: int = 512,
    epochs: int = 40,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-5,
    iter_size: int = 32,
    milestones: tuple[float, ...] = (0.5, 0.8, 0.9),
    max_nodes: int = 0,
) -> dict:
    """Train GCN-E on the train split's GCN-V output (``context.extra["upstream"]``).

    Parameters
    ----------
    features, knn : the split's input features and kNN (only their size is used: GCN-E's
        graph is built on GCN-V's features).
    labels : int (N,) identities (-1 unknown: masked out).
    gcn_k, ignore_ratio : see the family spec (160 and 0.7 on MS1M).
    hidden : width of the first two GraphConvs (512).
    epochs, lr, momentum, weight_decay, milestones : SGD with the rate multiplied by 0.1 at
        the given fractions of ``epochs`` (the reference: 40 epochs, steps at 20, 32, 36).
    iter_size : subgraphs per SGD step, in one padded batch (the reference accumulates the
        gradients of 32 single-subgraph iterations; the last step of an epoch may be short).
    max_nodes : at most this many subgraphs per epoch, a fresh seeded subsample each epoch
        (0 = all; our addition for CPU budgets).

    Returns
    -------
    A dict with ``state_dict``, ``in_dim``, ``hidden``, ``gcn_k`` and the last epoch's mean
    ``loss``.
    """
    device = resolve_device(context.device)
    seed_everything(context.seed, device)
    torch.set_num_threads(max(1, int(context.threads)))
    n = features.shape[0]
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise InputError(f"gcne train: {labels.shape[0]} labels for {n} items")
    gcn = gcn_graph(n, context, gcn_k, ignore_ratio)
    centres = gcn["plan"].subgraph_nodes
    centres = centres[labels[centres] >= 0]
    in_dim = gcn["feats"].shape[1]
    net = GCNE(in_dim, hidden).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    # the reference: step=[int(r * total_epochs) for r in ...] (floor)
    steps = sorted({max(1, int(f * epochs)) for f in milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
    if centres.size == 0:
        log.warning("gcne train: no node has a subgraph; the model stays at its initialisation")
        return _model_dict(net, in_dim, hidden, gcn_k, float("nan"))
    t0 = time.perf_counter()
    epoch_loss = float("nan")
    for epoch in range(epochs):
        rng = np.random.default_rng([int(context.seed), epoch])
        order = rng.permutation(centres)
        if max_nodes and max_nodes < order.size:
            order = order[:max_nodes]
        total, seen = 0.0, 0
        for start in range(0, order.size, iter_size):
            batch = make_batch(gcn, order[start : start + iter_size], device, labels)
            loss = masked_loss(net(batch.x, batch.adj, batch.valid), batch.y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"gcne training diverged in epoch {epoch + 1}")
            b = batch.cand.shape[0]
            total += loss.item() * b
            seen += b
        sched.step()
        epoch_loss = total / max(1, seen)
        log.info(
            "gcne train: epoch %d/%d loss %.5f (%d subgraphs, %.1f s)",
            epoch + 1,
            epochs,
            epoch_loss,
            seen,
            time.perf_counter() - t0,
        )
    return _model_dict(net, in_dim, hidden, gcn_k, epoch_loss)


def _net(model: dict, in_dim: int, device: torch.device) -> GCNE:
    if in_dim != model["in_dim"]:
        raise InputError(
            f"gcne model expects {model['in_dim']}-d GCN-V features, the upstream gives {in_dim}-d"
        )
    net = GCNE(model["in_dim"], model["hidden"])
    net.load_state_dict(model["state_dict"])
    return net.to(device).eval()


@torch.no_grad()
def predict_peaks(
    features: np.ndarray,
    knn: Knn,
    model: dict,
    *,
    context,
    gcn_k: int = 160,
    ignore_ratio: float = 0.8,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Each node's peak: GCN-E's choice among its candidates, or GCN-V's rule.

    Subgraphs are processed in batches of ``batch_size``, sorted by size so that padding is
    small; padded candidates get -inf. The argmax of class 1's log-probability takes the
    first maximum (the nearest tied candidate); the reference draws among ties with
    ``np.random.choice``.

    Returns
    -------
    peaks : int64 (N,), -1 for roots.  peak_sims : float32 (N,), the similarity to the peak
    on the GCN-feature kNN (-inf for roots).
    """
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    n = features.shape[0]
    gcn = gcn_graph(n, context, gcn_k, ignore_ratio)
    net = _net(model, gcn["feats"].shape[1], device)
    plan = gcn["plan"]
    peaks, peak_sims = plan.peaks.copy(), plan.peak_sims.copy()
    nodes = plan.subgraph_nodes
    nodes = nodes[np.argsort(plan.count[nodes], kind="stable")]
    sims = gcn["knn"].sims
    t0 = time.perf_counter()
    for start in range(0, nodes.size, batch_size):
        centres = nodes[start : start + batch_size]
        batch = make_batch(gcn, centres, device)
        score = net(batch.x, batch.adj, batch.valid)[..., 1].masked_fill(
            ~batch.valid, -float("inf")
        )
        j = score.argmax(dim=1).cpu().numpy()  # first maximum
        rows = np.arange(centres.size)
        peaks[centres] = batch.cand[rows, j]
        peak_sims[centres] = sims[centres, batch.pos[rows, j]]
    log.info("gcne: %d subgraphs in %.1f s", nodes.size, time.perf_counter() - t0)
    return peaks, peak_sims


def load_pretrained(paths: dict[str, str]) -> dict:
    """learn-to-cluster's released GCN-E checkpoint as the model dict of :func:`train`.

    Reference names (``vegcn/models/gcn_e.py``, ``GCN_E``): ``conv1``..``conv4`` GraphConvs
    with ``weight`` (2 in, out) and ``bias``, and ``classifier.0`` (Linear), ``classifier.1``
    (PReLU), ``classifier.2`` (Linear(., nclass)); ``module.`` / ``module.base.`` prefixes are
    removed. Sizes come from the checkpoint; an unknown name or a head with other than two
    classes raises :class:`InputError`.
    """
    from .zoo import HEAD_NAMES, graphconv_names, strip_prefixes

    path = paths["model"]
    state = load_checkpoint(path)
    names = {strip_prefixes(k): v for k, v in state.items()}
    if "conv1.weight" not in names:
        raise InputError(f"{path}: no conv1.weight: not a GCN-E checkpoint")
    in_dim = int(names["conv1.weight"].shape[0]) // 2
    hidden = int(names["conv1.weight"].shape[1])
    net = GCNE(in_dim, hidden)
    mapping = {**HEAD_NAMES}
    for i in range(1, 5):
        mapping.update(graphconv_names(f"conv{i}", f"conv{i}"))
    ours = remap(state, mapping, net.state_dict(), source=path)
    net.load_state_dict(ours)
    return _model_dict(net, in_dim, hidden, 0, float("nan"))
