"""DS-GCN (Yang et al., CVPR 2019): the detection / segmentation GCN on cluster proposals.

The family modules :mod:`facecluster.methods.gcnd` (GCN-D) and
:mod:`facecluster.methods.gcnds` (GCN-D+S) are light and call these torch parts:

* :class:`DSGCN`: layers ``x <- ReLU((A x W) / D)`` (no bias, D = rowsum(A)), per-node-row
  dropout, then either a max-pool over the proposal's nodes and ``Linear(hidden, 1)``
  (stage ``"det"``: the proposal's IoU or IoP) or a per-node ``Linear(hidden, 2)`` with
  ``log_softmax`` (stage ``"seg"``: does the node belong with the seed node).
* :func:`build_batch`: padded batches built from a :class:`~facecluster.proposals.Proposals`
  set and the split's kNN graph, vectorised over the proposals of the batch
  (:func:`facecluster.proposals.intra_edges` on the batch's proposals).
* :func:`train_net` / :func:`predict_det` / :func:`predict_seg`: SGD training with a
  multi-step schedule and batched inference over proposals grouped by size.

A proposal graph (learn-to-cluster's ``ClusterDetProcessor`` / ``build_adj``): X = the
L2-normalised features of its items (n x D), A = I + every kNN edge with both ends inside
the proposal, weight = cosine similarity, symmetric, row-normalised. A batch pads X with zero
rows and A to [[A, 0], [0, I]] (``collate_graphs``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError, Knn
from ..methods.gcnd import proposal_entries
from ..proposals import Proposals, intra_edges
from . import checkpoint, milestone_steps, resolve_device, seed_everything, zoo

log = logging.getLogger(__name__)

__all__ = [
    "DenseGraphConv",
    "DSGCN",
    "Batch",
    "build_batch",
    "with_seed",
    "size_batches",
    "net_from_dict",
    "pretrained_net",
    "train_net",
    "predict_det",
    "predict_seg",
    "TrainRun",
    "start_run",
]

#: padded adjacency cells (B * n * n) of one inference batch: 16M floats = 64 MiB, with
#: the hidden activations (B * n * 512) about 4x that at n = 300
CELL_BUDGET = 1 << 24
#: proposals of one inference batch (learn-to-cluster's test batch)
TEST_BATCH = 256


# ------------------------------------------------------------------------------ the model


class DenseGraphConv(nn.Module):
    """learn-to-cluster's DS-GCN GraphConv: ``ReLU((A X W) / D)``, no bias.

    ``weight`` is (in_dim, out_dim), uniform in ±1/sqrt(out_dim) (the reference's
    ``reset_parameters``), stored as the reference stores it so released weights load as
    they are.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        bound = 1.0 / math.sqrt(out_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
        """x (B, n, in), adj (B, n, n), deg (B, n, 1) row sums of adj -> (B, n, out)."""
        in_dim, out_dim = self.weight.shape
        # (A X) W == A (X W); aggregate on the narrower side (the reference always does X W
        # first; the result is the same up to rounding)
        if in_dim <= out_dim:
            h = torch.bmm(adj, x) @ self.weight
        else:
            h = torch.bmm(adj, x @ self.weight)
        return h.div_(deg).relu_()  # in place: the matmul's backward does not need h


def row_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole node rows of ``x`` (B, n, C) with probability ``p``, scaling by 1/(1-p).

    The reference applies ``nn.Dropout2d`` to the (B, n, C) tensor. Under the PyTorch of its
    time (<= 1.10) ``dropout2d`` zeroed entire channels of dim 1, i.e. whole node rows here;
    modern PyTorch treats 3-D input as unbatched (C, H, W) and would drop whole feature
    columns instead, so the row mask is written out explicitly.
    """
    if not training or p <= 0:
        return x
    keep = torch.empty(x.shape[0], x.shape[1], 1, device=x.device, dtype=x.dtype)
    keep.bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class DSGCN(nn.Module):
    """The DS-GCN of learn-to-cluster (``dsgcn/models/dsgcn.py``, ``gcn_type='gcn'``).

    Parameters
    ----------
    in_dim : input channels per node (D, or D + 1 with the seed channel of stage "seg";
        1 or 2 for the reference's ``featureless`` models).
    hidden : widths of the graph convolutions ([512, 64] in every reference config).
    stage : ``"det"`` (max-pool over the real nodes, ``Linear(hidden[-1], 1)``) or ``"seg"``
        (per-node ``Linear(hidden[-1], 2)``, ``log_softmax`` over the two classes).
    dropout : node-row dropout after every layer (0.5: the reference default, which no config
        overrides).

    Parameter names: ``layers.{i}.weight`` (in, out) and ``classifier.{weight,bias}``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...] | list[int] = (512, 64),
        stage: str = "det",
        dropout: float = 0.5,
    ):
        super().__init__()
        if stage not in ("det", "seg"):
            raise ValueError(f"unknown DS-GCN stage {stage!r} (det or seg)")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        dims = [int(in_dim), *[int(h) for h in hidden]]
        self.layers = nn.ModuleList(
            DenseGraphConv(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.classifier = nn.Linear(dims[-1], 1 if stage == "det" else 2)
        self.stage = stage
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores of a padded batch.

        Parameters
        ----------
        x : float32 (B, n, in_dim) node features, zero rows for padding.
        adj : float32 (B, n, n) row-normalised adjacency, identity on padding.
        mask : bool (B, n), True on the real nodes.

        Returns
        -------
        ``"det"``: float32 (B,) proposal scores. ``"seg"``: float32 (B, n, 2) log-probabilities
        per node (padding rows included; the caller ignores them).
        """
        deg = adj.sum(dim=2, keepdim=True)  # == 1 for a row-normalised A (the reference's D)
        for layer in self.layers:
            x = row_dropout(layer(x, adj, deg), self.dropout, self.training)
        if self.stage == "det":
            # max over the real nodes; padding rows are 0 after the ReLU and could not win
            # anyway, but masking keeps that independent of the layers
            pooled = x.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
            return self.classifier(pooled).view(-1)
        return F.log_softmax(self.classifier(x), dim=-1)


# -------------------------------------------------------------------- proposal graphs, batches


@dataclass
class Batch:
    """A padded batch of B proposal graphs (numpy, float32 unless stated).

    x : (B, n, C) node features (zero rows for padding; C = D, + 1 with a seed channel).
    adj : (B, n, n) row-normalised adjacency, identity on padding.
    mask : bool (B, n), True on real nodes.
    items : int64 (B, n) the item of every node, -1 on padding.
    degree : (B, n) row sums of the adjacency before normalisation (1 + the weights of the
        node's intra-proposal edges; 0 on padding).
    """

    x: np.ndarray
    adj: np.ndarray
    mask: np.ndarray
    items: np.ndarray
    degree: np.ndarray

    def to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, adj, mask) as tensors on ``device``."""
        return (
            torch.from_numpy(self.x).to(device),
            torch.from_numpy(self.adj).to(device),
            torch.from_numpy(self.mask).to(device),
        )


def build_batch(
    features: np.ndarray | None,
    knn: Knn,
    proposals: Proposals,
    idx: np.ndarray,
    *,
    seed_local: np.ndarray | None = None,
) -> Batch:
    """The padded graphs of proposals ``idx`` (int (B,) indices into ``proposals``).

    Parameters
    ----------
    features : float32 (N, D) L2-normalised, or None for the reference's ``featureless``
        models (X = a column of ones).
    seed_local : int (B,) the local index of each proposal's seed node; when given, a seed
        channel (1 at the seed, 0 elsewhere) is appended to X (the segmentation input).

    Negative similarities are clipped to 0, so every row sum stays >= 1 (the reference
    asserts D > 0 and would stop on such an edge).
    """
    idx = np.asarray(idx, dtype=np.int64)
    entries, owner, local = proposal_entries(proposals.offsets, idx)
    items = proposals.items[entries]
    b = idx.size
    n = int(local.max(initial=-1)) + 1
    dim = 1 if features is None else features.shape[1]
    x = np.zeros((b, n, dim), dtype=np.float32)
    x[owner, local] = 1.0 if features is None else features[items]
    adj = np.zeros((b, n, n), dtype=np.float32)
    diag = np.arange(n)
    adj[:, diag, diag] = 1.0
    offsets = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(proposals.offsets[idx + 1] - proposals.offsets[idx], out=offsets[1:])
    # the batch as a proposal set of its own: the edge lookup stays bounded by the batch
    group, li, lj, w = intra_edges(Proposals(items, offsets, np.zeros(b, np.int32)), knn)
    adj[group, li, lj] = np.maximum(w, 0.0)
    np.maximum(adj, adj.transpose(0, 2, 1), out=adj)  # symmetric (a copy is made first)
    degree = adj.sum(axis=2)
    adj /= degree[:, :, None]
    mask = np.zeros((b, n), dtype=bool)
    mask[owner, local] = True
    node_items = np.full((b, n), -1, dtype=np.int64)
    node_items[owner, local] = items
    batch = Batch(x, adj, mask, node_items, np.where(mask, degree, 0.0).astype(np.float32))
    return batch if seed_local is None else with_seed(batch, seed_local)


def with_seed(batch: Batch, seed_local: np.ndarray) -> Batch:
    """``batch`` with a seed channel appended to X: 1 at node ``seed_local[b]`` (int (B,),
    local indices) of every proposal b, 0 elsewhere (learn-to-cluster's seed mask)."""
    b, n, _ = batch.x.shape
    seed = np.zeros((b, n, 1), dtype=np.float32)
    seed[np.arange(b), np.asarray(seed_local, dtype=np.int64), 0] = 1.0
    return Batch(
        np.concatenate([batch.x, seed], axis=2), batch.adj, batch.mask, batch.items, batch.degree
    )


def size_batches(
    sizes: np.ndarray,
    *,
    max_batch: int = TEST_BATCH,
    cell_budget: int = CELL_BUDGET,
    ratio: float = 1.25,
) -> list[np.ndarray]:
    """Split proposals (by ``sizes``, int (P,)) into batches of similar size.

    Proposals are bucketed by ``floor(log(size) / log(ratio))`` (sizes within a factor
    ``ratio`` of each other share a bucket, so padding wastes at most that factor per node),
    and each bucket is cut into batches of at most ``max_batch`` proposals and
    ``cell_budget`` padded adjacency cells. Returns index arrays into ``sizes``, every index
    exactly once; vectorised up to the loop over batches.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return []
    bucket = np.floor(np.log(np.maximum(sizes, 1)) / math.log(ratio) + 1e-9).astype(np.int64)
    order = np.lexsort((np.arange(sizes.size), bucket))
    bounds = np.flatnonzero(np.r_[True, bucket[order][1:] != bucket[order][:-1], True])
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        members = order[lo:hi]
        n_max = int(sizes[members].max())
        per = max(1, min(int(max_batch), int(cell_budget) // max(1, n_max * n_max)))
        out.extend(members[s : s + per] for s in range(0, members.size, per))
    return out


# ------------------------------------------------------------------------- nets as dicts


def net_to_dict(net: DSGCN, *, featureless: bool, loss: float = float("nan")) -> dict:
    """A trained net as plain values + tensors (``torch.load(weights_only=True)`` safe)."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "in_dim": int(net.layers[0].weight.shape[0]),
        "hidden": [int(layer.weight.shape[1]) for layer in net.layers],
        "stage": net.stage,
        "featureless": bool(featureless),
        "dropout": float(net.dropout),
        "loss": float(loss),
    }


def net_from_dict(d: dict, device: torch.device) -> DSGCN:
    """The :class:`DSGCN` of a dict written by :func:`net_to_dict`, in eval mode."""
    net = DSGCN(d["in_dim"], d["hidden"], d["stage"], d.get("dropout", 0.5))
    net.load_state_dict(d["state_dict"])
    return net.to(device).eval()


def pretrained_net(path: str, stage: str) -> dict:
    """A released DS-GCN checkpoint (learn-to-cluster's model zoo) as a net dict.

    Reference names (``dsgcn/models/dsgcn.py``): ``layers.{i}.gc.weight`` (in, out) of
    every ``BasicBlock``'s GraphConv (no bias) and the ``classifier`` Linear's ``weight``
    (classes, hidden) and ``bias``; ``module.`` / ``module.base.`` prefixes are stripped.
    The widths come from the checkpoint's shapes; an input width of 1 (det) or 2 (seg) is
    the reference's ``featureless`` model (X = ones). :class:`InputError` names every
    parameter that does not map, a missing one, or a stage that does not match (the
    classifier has 1 output for "det", 2 for "seg").
    """
    state = zoo.load_checkpoint(path)
    names = {zoo.strip_prefixes(k): v for k, v in state.items()}
    dims = []
    while f"layers.{len(dims)}.gc.weight" in names:
        dims.append(tuple(names[f"layers.{len(dims)}.gc.weight"].shape))
    if not dims or "classifier.weight" not in names:
        raise InputError(f"{path}: no DS-GCN layers (layers.0.gc.weight, classifier.weight)")
    classes = int(names["classifier.weight"].shape[0])
    if classes != (1 if stage == "det" else 2):
        raise InputError(f"{path}: a classifier of {classes} outputs is not a {stage} net")
    net = DSGCN(dims[0][0], [d[1] for d in dims], stage)
    mapping = {f"layers.{i}.gc.weight": f"layers.{i}.weight" for i in range(len(dims))}
    mapping.update({"classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"})
    net.load_state_dict(zoo.remap(state, mapping, net.state_dict(), source=path))
    featureless = dims[0][0] - (stage == "seg") == 1
    return net_to_dict(net, featureless=featureless)


def _check_dim(d: dict, features: np.ndarray) -> None:
    want = d["in_dim"] - (d["stage"] == "seg")
    have = 1 if d.get("featureless") else features.shape[1]
    if want != have:
        raise ValueError(f"DS-GCN {d['stage']} net expects {want}-d node features, got {have}-d")


# ---------------------------------------------------------------------------- checkpoints


@dataclass
class TrainRun:
    """One training job of one or more nets (GCN-D+S trains three in a row), checkpointed.

    The checkpoint (:mod:`facecluster.nn.checkpoint`, at ``Context.checkpoint``) holds the
    net in training after its last saved epoch, and in its ``extra`` the ``tag`` of that
    net and the nets already ``finished`` (net dicts): a killed job skips the finished nets
    and resumes the current one, bit for bit on the CPU.

    path : the checkpoint file (None: no checkpoints).  fp : the training's fingerprint.
    finished : tag -> net dict of the nets trained to the end.
    current : the tag of the net saved in the checkpoint (None: none).
    """

    path: str | None = None
    fp: dict | None = None
    finished: dict = field(default_factory=dict)
    current: str | None = None


def start_run(context, family: str, *, settings: dict, arrays: dict) -> TrainRun:
    """The :class:`TrainRun` of a training job: its fingerprint (``family``, ``settings``
    plus the seed, and the training ``arrays``) and what a valid checkpoint at
    ``context.checkpoint`` already holds (a checkpoint of another training is ignored with
    a warning)."""
    if not context.checkpoint:
        return TrainRun()
    fp = checkpoint.fingerprint(
        family, settings={**settings, "seed": int(context.seed)}, arrays=arrays
    )
    state = checkpoint.load(context.checkpoint, fp)
    extra = state["extra"] if state else {}
    return TrainRun(context.checkpoint, fp, dict(extra.get("finished", {})), extra.get("tag"))


# ---------------------------------------------------------------------------------- training


def train_net(
    features: np.ndarray | None,
    knn: Knn,
    proposals: Proposals,
    select: np.ndarray,
    loss_fn: Callable[[DSGCN, Batch, np.ndarray, torch.device], tuple[torch.Tensor, int]],
    *,
    stage: str,
    context,
    tag: str,
    run: TrainRun | None = None,
    checkpoint_every: int = 1,
    seeds: Callable[[np.random.Generator, np.ndarray], np.ndarray] | None = None,
    epochs: int = 30,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    batch_size: int = 32,
    milestones=(0.5, 0.8, 0.9333),
    dropout: float = 0.5,
    hidden=(512, 64),
    seed_offset: int = 0,
) -> dict:
    """Train one DS-GCN by SGD over the proposals ``select`` (int indices into ``proposals``).

    Every epoch shuffles ``select`` with a generator seeded by (``context.seed``,
    ``seed_offset``, epoch) and takes batches of ``batch_size`` proposals. A batch's
    proposals are grouped by size (:func:`size_batches`, ratio 2) and run as a few padded
    sub-batches whose losses are summed: ``loss_fn(net, sub_batch, positions, device)``
    returns the sub-batch's summed loss and its count (proposals for "det"), and the step
    uses sum / count over the whole batch, the gradient of one padded batch of
    ``batch_size`` with less padding. ``seeds(rng, idx)`` draws the seed node (local index)
    of each proposal of a batch for stage "seg" (a fresh random seed every epoch, as the
    reference's data loader). The rate drops 10x at ``milestones`` (fractions of
    ``epochs``); SGD with momentum and weight decay as ``cfg_train_*``. With a checkpoint
    (``run``), the state is saved every ``checkpoint_every`` epochs (0: never; not after
    the last) and a saved epoch of this net (``tag``) is resumed.

    Returns the net as a dict (:func:`net_to_dict`) with the mean loss of the last epoch.
    """
    device = resolve_device(context.device)
    run = run or TrainRun()
    if tag in run.finished:
        return run.finished[tag]
    seed_everything(context.seed + seed_offset, device)
    torch.set_num_threads(max(1, int(context.threads)))
    featureless = features is None
    in_dim = (1 if featureless else features.shape[1]) + (stage == "seg")
    net = DSGCN(in_dim, hidden, stage, dropout).to(device)
    if optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'sgd' or 'adam'")
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=milestone_steps(milestones, epochs), gamma=0.1
    )
    first_epoch = 0
    if run.current == tag:
        first_epoch, _ = checkpoint.restore(run.path, run.fp, net, opt, sched)
    select = np.asarray(select, dtype=np.int64)
    sizes = proposals.sizes
    t0 = time.perf_counter()
    mean_loss = float("nan")
    for epoch in range(first_epoch, epochs):
        net.train()
        rng = np.random.default_rng([int(context.seed), int(seed_offset), epoch])
        perm = select[rng.permutation(select.size)]
        total, count = 0.0, 0
        for start in range(0, perm.size, batch_size):
            idx = perm[start : start + batch_size]
            seed_local = seeds(rng, idx) if seeds is not None else None
            opt.zero_grad(set_to_none=True)
            parts = []
            for sub in size_batches(sizes[idx], max_batch=batch_size, ratio=2.0):
                batch = build_batch(
                    features,
                    knn,
                    proposals,
                    idx[sub],
                    seed_local=None if seed_local is None else seed_local[sub],
                )
                parts.append(loss_fn(net, batch, idx[sub], device))
            n_batch = sum(c for _, c in parts)
            if n_batch == 0:
                continue
            loss = sum(s for s, _ in parts) / n_batch
            loss.backward()
            opt.step()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"dsgcn {tag}: loss {loss.item()} at epoch {epoch + 1}")
            total += loss.item() * n_batch
            count += n_batch
        sched.step()
        mean_loss = total / max(1, count)
        log.info("dsgcn %s: epoch %d/%d loss %.5f", tag, epoch + 1, epochs, mean_loss)
        if run.path and checkpoint.due(epoch + 1, checkpoint_every, epochs):
            extra = {"tag": tag, "finished": run.finished}
            checkpoint.save(run.path, run.fp, epoch + 1, net, opt, sched, extra=extra)
    log.info("dsgcn %s: %d epochs in %.1f s", tag, epochs - first_epoch, time.perf_counter() - t0)
    out = net_to_dict(net, featureless=featureless, loss=mean_loss)
    run.finished[tag] = out
    return out


def det_loss(targets: np.ndarray) -> Callable:
    """Loss of stage "det": summed squared error against ``targets`` float (P,) (IoU or IoP
    per proposal); :func:`train_net` divides by the batch's proposal count (MSELoss)."""

    def fn(net, batch, idx, device):
        x, adj, mask = batch.to(device)
        pred = net(x, adj, mask)
        target = torch.from_numpy(targets[idx].astype(np.float32)).to(device)
        return ((pred - target) ** 2).sum(), int(idx.size)

    return fn


def seg_loss(labels: np.ndarray) -> Callable:
    """Loss of stage "seg": per proposal the mean NLL over its nodes whose label is known
    (node label 1 if it equals the seed node's, 0 otherwise; padding and unknown labels are
    ignored, the reference's ``ignore_index=-100``), summed over proposals; :func:`train_net`
    divides by the number of proposals with a labelled node. That is the reference's batch 1
    with ``iter_size`` 32: the mean of 32 per-proposal losses per step."""

    def fn(net, batch, idx, device):
        x, adj, mask = batch.to(device)
        logp = net(x, adj, mask)  # (B, n, 2)
        node_labels = seg_targets(batch, labels)
        target = torch.from_numpy(node_labels).to(device)
        valid = target >= 0
        nll = F.nll_loss(
            logp.reshape(-1, 2), target.reshape(-1), ignore_index=-100, reduction="none"
        ).view(target.shape)
        per = valid.sum(dim=1)
        has = per > 0
        if not bool(has.any()):
            return logp.sum() * 0.0, 0
        loss = (nll.sum(dim=1)[has] / per[has]).sum()
        return loss, int(has.sum().item())

    return fn


def seg_targets(batch: Batch, labels: np.ndarray) -> np.ndarray:
    """int64 (B, n) node labels of a seeded batch: 1 where the node's identity equals the
    seed's, 0 elsewhere, -100 on padding, unknown identities (-1) and proposals whose seed
    is unknown. The seed is the node with a 1 in the last channel of ``batch.x``."""
    node_lab = np.where(batch.mask, labels[np.maximum(batch.items, 0)], -1)
    seed_pos = batch.x[:, :, -1].argmax(axis=1)
    seed_lab = node_lab[np.arange(node_lab.shape[0]), seed_pos]
    out = (node_lab == seed_lab[:, None]).astype(np.int64)
    out[(node_lab < 0) | (seed_lab[:, None] < 0)] = -100
    return out


# --------------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_det(
    features: np.ndarray, knn: Knn, proposals: Proposals, net: dict, *, context
) -> np.ndarray:
    """float32 (P,) the score (IoU or IoP) of every proposal, in batches of similar size."""
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    _check_dim(net, features)
    model = net_from_dict(net, device)
    feats = None if net.get("featureless") else features
    scores = np.zeros(proposals.n_proposals, dtype=np.float32)
    for idx in size_batches(proposals.sizes):
        batch = build_batch(feats, knn, proposals, idx)
        scores[idx] = model(*batch.to(device)).float().cpu().numpy()
    return scores


@torch.no_grad()
def predict_seg(
    features: np.ndarray,
    knn: Knn,
    proposals: Proposals,
    net: dict,
    idx: np.ndarray,
    *,
    context,
    max_degree_seed: bool = True,
) -> np.ndarray:
    """p(class 1) float32 per entry of the proposals ``idx`` (int (S,)), in the order of
    their items: the segment ``proposals.items[offsets[p]:offsets[p + 1]]`` of each selected
    ``p``, concatenated in the order of ``idx``.

    The seed is the node of largest weighted degree (1 + the weights of its intra-proposal
    edges, ties to the first) with ``max_degree_seed``, else a random node drawn with
    ``context.seed``. The reference takes the argmax of the *row-normalised* adjacency's row
    sums, which are all 1, so its "max degree" seed is whichever row rounds highest: a bug,
    fixed here by using the degree before normalisation.
    """
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    _check_dim(net, features)
    model = net_from_dict(net, device)
    feats = None if net.get("featureless") else features
    idx = np.asarray(idx, dtype=np.int64)
    sizes = proposals.sizes[idx]
    start = np.zeros(idx.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=start[1:])
    out = np.zeros(int(start[-1]), dtype=np.float32)
    rng = np.random.default_rng([int(context.seed), 7])
    random_seeds = (rng.random(idx.size) * sizes).astype(np.int64)
    for sub in size_batches(sizes):
        batch = build_batch(feats, knn, proposals, idx[sub])
        seed_local = batch.degree.argmax(axis=1) if max_degree_seed else random_seeds[sub]
        batch = with_seed(batch, seed_local)
        prob = model(*batch.to(device))[:, :, 1].exp().float().cpu().numpy()
        rows, cols = np.nonzero(batch.mask)  # row-major: each proposal's nodes in order
        pos = start[sub][rows] + cols
        out[pos] = prob[rows, cols]
    return out
