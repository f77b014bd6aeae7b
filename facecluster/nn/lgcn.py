"""L-GCN's torch parts: batched instance pivot subgraphs, the model, training and inference.

L-GCN (Wang et al., CVPR 2019, "Linkage-based face clustering via graph convolution
network") as re-implemented in learn-to-cluster (``lgcn/``). The family module
:mod:`facecluster.methods.lgcn` (light: no torch at import) calls these.

Instance pivot subgraph (IPS) of pivot p, built for a whole batch of pivots at once with
sort/gather/searchsorted (no Python loop over pivots or nodes):

* hop-1 = knn[p][1 : 1 + k1] with k1 = min(k - 1, k_at_hop[0]). learn-to-cluster takes all
  k - 1 neighbours and uses ``k_at_hop[0]`` only for padding; Wang et al.'s original code
  takes the first ``k_at_hop[0]``. The two agree whenever k_at_hop[0] >= k - 1, which holds
  for every learn-to-cluster config ([200, 10] and [80, 10] with k 80, [5, 5] with k 5).
* hop-2 = union over h in hop-1 of knn[h][1 : 1 + k_at_hop[1]].
* nodes = unique({p} ∪ hop-1 ∪ hop-2) in order of first appearance in the list
  [p, hop-1 in kNN order, hop-2 row by row]: the pivot is local node 0 and hop-1 node j is
  local node 1 + j. The reference orders nodes by iterating a Python set; the GCN is
  permutation equivariant and the hop-1 outputs are gathered by index, so the order changes
  nothing but floating-point summation order.
* features f_v - f_p; adjacency: v -- w for every w in knn[v][1 : 1 + active_connection]
  that is a node of the subgraph, symmetric, binary, no self loop, divided by the degree.
  A node of degree 0 keeps a zero row (the reference divides by zero and gets NaN; that
  cannot happen on a complete kNN with active_connection <= k_at_hop[1], but can with -1
  padding in the kNN).
* labels (training): 1 for a hop-1 node of the pivot's identity, else 0; ignored (-100) for
  missing hop-1 slots and items of unknown identity (-1).

Padding: the reference pads every subgraph to max_num_nodes = k_at_hop[0]·(k_at_hop[1]+1)+1
(2,201 rows for the MS1M training config) and applies ``BatchNorm1d(affine=False)`` to all
B·max_num_nodes rows. Padding rows are isolated (zero rows and columns of A) and are never
gathered, so they cannot change the real rows through the graph convolutions; they do,
however, enter the BatchNorm batch statistics (and from there the running statistics stored
in the released checkpoint). We pad only to the batch's largest subgraph and compute the
training statistics as if the reference's zero rows were present (:class:`PaddedBatchNorm`),
which is exact and costs nothing. In evaluation mode (inference, as in the reference's
``model.eval()``) the running statistics are used and padding plays no role at all.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..io import Knn
from ..progress import Progress
from . import GraphConv, milestone_steps, resolve_device, seed_everything

log = logging.getLogger(__name__)

__all__ = [
    "Subgraphs",
    "SubgraphBuilder",
    "PaddedBatchNorm",
    "LGCN",
    "max_num_nodes",
    "train",
    "predict_edges",
    "load_pretrained",
    "REFERENCE_NAMES",
]

#: CrossEntropyLoss ignore index for missing hop-1 slots and unknown identities
IGNORE = -100


def max_num_nodes(k_at_hop) -> int:
    """The reference's padded subgraph size k_at_hop[0]·(k_at_hop[1] + 1) + 1."""
    return int(k_at_hop[0]) * (int(k_at_hop[1]) + 1) + 1


@dataclass
class Subgraphs:
    """A batch of B instance pivot subgraphs padded to the batch's largest, n nodes.

    Attributes
    ----------
    pivots : int64 (B,) global item index of each pivot.
    nodes : int64 (B, n) global item index of each local node, -1 for padding.
    node_mask : bool (B, n) real nodes.
    features : float32 (B, n, D) f_v - f_p, zero rows for padding.
    adj : float32 (B, n, n) binary symmetric adjacency divided by the row degree.
    hop1 : int64 (B, k1) local index of each hop-1 node (0, the pivot, where missing).
    hop1_mask : bool (B, k1) hop-1 slots that hold a node.
    labels : int64 (B, k1) 1 same identity as the pivot, 0 not, -100 ignored; None at test.
    """

    pivots: torch.Tensor
    nodes: torch.Tensor
    node_mask: torch.Tensor
    features: torch.Tensor
    adj: torch.Tensor
    hop1: torch.Tensor
    hop1_mask: torch.Tensor
    labels: torch.Tensor | None = None


class SubgraphBuilder:
    """Builds :class:`Subgraphs` for batches of pivots from one feature set and kNN graph.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.
    knn : the kNN graph (self first; -1 padding allowed).
    k_at_hop : [hop-1 cap, hop-2 fan-out] (see the module docstring).
    active_connection : neighbours per node considered for edges (u).
    device : where the tensors live.
    labels : int (N,) identities (-1 unknown) to build training labels; None at test.
    """

    def __init__(
        self,
        features: np.ndarray,
        knn: Knn,
        k_at_hop,
        active_connection: int,
        device: torch.device,
        labels: np.ndarray | None = None,
    ):
        if knn.k < 2:
            raise ValueError("L-GCN needs a kNN graph with k >= 2 (self plus neighbours)")
        self.device = device
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(
            device
        )
        self.nbrs = torch.from_numpy(knn.nbrs.astype(np.int64)).to(device)
        self.n = knn.n
        self.k1 = min(knn.k - 1, int(k_at_hop[0]))
        self.k2 = min(knn.k - 1, int(k_at_hop[1]))
        self.u = min(knn.k - 1, int(active_connection))
        self.labels = None
        if labels is not None:
            # a copy: torch warns about a read-only array (labels read from a file)
            self.labels = torch.from_numpy(np.array(labels, dtype=np.int64)).to(device)

    @property
    def max_nodes(self) -> int:
        """Largest possible subgraph: 1 + k1·(1 + k2)."""
        return 1 + self.k1 * (1 + self.k2)

    def _candidates(self, pivots: torch.Tensor):
        """The list [p, hop-1, hop-2 row by row] (B, L) int64 and its validity (B, L) bool."""
        b = pivots.numel()
        h1 = self.nbrs[pivots, 1 : 1 + self.k1]
        h1_ok = (h1 >= 0) & (h1 != pivots[:, None])
        h2 = self.nbrs[h1.clamp(min=0), 1 : 1 + self.k2]
        h2_ok = h1_ok[:, :, None] & (h2 >= 0)
        cand = torch.cat([pivots[:, None], h1, h2.reshape(b, -1)], dim=1)
        ok = torch.cat(
            [torch.ones(b, 1, dtype=torch.bool, device=self.device), h1_ok, h2_ok.reshape(b, -1)],
            dim=1,
        )
        return cand, ok

    def _unique_in_order(self, cand: torch.Tensor, ok: torch.Tensor):
        """Per row, the distinct valid candidates in order of first appearance.

        Returns nodes int64 (B, n) (-1 padding), node_mask (B, n) and first (B, L): whether
        each candidate is the first occurrence of its value.
        """
        b, length = cand.shape
        sentinel = self.n  # sorts after every item
        value = torch.where(ok, cand, torch.full_like(cand, sentinel))
        positions = torch.arange(length, device=self.device)
        key = value * length + positions  # sort by value, then by position
        skey, _ = torch.sort(key, dim=1)
        sval, spos = skey // length, skey % length
        is_first = torch.ones_like(sval, dtype=torch.bool)
        is_first[:, 1:] = sval[:, 1:] != sval[:, :-1]
        is_first &= sval < sentinel
        first = torch.zeros_like(ok).scatter_(1, spos, is_first)
        count = first.sum(dim=1)
        n = int(count.max())
        order = torch.where(first, positions.expand(b, -1), torch.full_like(cand, length))
        order, _ = torch.sort(order, dim=1)
        order = order[:, :n]
        node_mask = torch.arange(n, device=self.device)[None, :] < count[:, None]
        nodes = cand.gather(1, order.clamp(max=length - 1))
        nodes = torch.where(node_mask, nodes, torch.full_like(nodes, -1))
        return nodes, node_mask, first

    def _lookup(self, nodes: torch.Tensor, node_mask: torch.Tensor, query: torch.Tensor):
        """Local index (B, Q) of global ids ``query`` (B, Q) in each row's node set and
        whether it is there (B, Q) bool (batched searchsorted on the sorted node ids)."""
        sentinel = self.n + 1
        ids = torch.where(node_mask, nodes, torch.full_like(nodes, sentinel))
        sorted_ids, perm = torch.sort(ids, dim=1)
        q = query.contiguous()
        at = torch.searchsorted(sorted_ids, q).clamp(max=sorted_ids.shape[1] - 1)
        found = (sorted_ids.gather(1, at) == q) & (q >= 0)
        return perm.gather(1, at), found

    def _adjacency(self, nodes: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """Row-normalised symmetric binary adjacency (B, n, n) float32 without self loops."""
        b, n = nodes.shape
        a = torch.zeros(b, n, n, dtype=torch.float32, device=self.device)
        if self.u > 0:
            nb = self.nbrs[nodes.clamp(min=0), 1 : 1 + self.u]  # (B, n, u)
            local, found = self._lookup(nodes, node_mask, nb.reshape(b, -1))
            src = torch.arange(n, device=self.device).repeat_interleave(self.u).expand(b, -1)
            keep = found & node_mask.repeat_interleave(self.u, dim=1) & (local != src)
            bi, ei = torch.nonzero(keep, as_tuple=True)
            s, d = src[bi, ei], local[bi, ei]
            one = torch.ones(bi.numel(), dtype=torch.float32, device=self.device)
            a.index_put_((bi, s, d), one)
            a.index_put_((bi, d, s), one)
        deg = a.sum(dim=2, keepdim=True)
        return a / deg.clamp(min=1.0)

    def build(self, pivots) -> Subgraphs:
        """The subgraphs of ``pivots`` (int array or tensor of item indices)."""
        pivots = torch.as_tensor(np.asarray(pivots), dtype=torch.int64).to(self.device)
        cand, ok = self._candidates(pivots)
        nodes, node_mask, first = self._unique_in_order(cand, ok)
        # hop-1 slots: a repeated neighbour (never in a proper kNN) counts once, as in the
        # reference's set; its local index is 1 + j when every hop-1 slot is filled
        hop1_mask = first[:, 1 : 1 + self.k1] & ok[:, 1 : 1 + self.k1]
        hop1, found = self._lookup(nodes, node_mask, cand[:, 1 : 1 + self.k1])
        hop1_mask &= found
        hop1 = torch.where(hop1_mask, hop1, torch.zeros_like(hop1))
        feats = self.features[nodes.clamp(min=0)] - self.features[pivots][:, None, :]
        feats = feats * node_mask[:, :, None]
        adj = self._adjacency(nodes, node_mask)
        labels = None
        if self.labels is not None:
            h1_global = nodes.gather(1, hop1)
            own = self.labels[pivots][:, None]
            other = self.labels[h1_global.clamp(min=0)]
            labels = (other == own).to(torch.int64)
            known = hop1_mask & (other >= 0) & (own >= 0)
            labels = torch.where(known, labels, torch.full_like(labels, IGNORE))
        return Subgraphs(pivots, nodes, node_mask, feats, adj, hop1, hop1_mask, labels)


class PaddedBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d(D, affine=False)`` on padded subgraphs (B, n, D).

    In training mode the batch statistics count ``pad_rows`` rows per subgraph, the extra
    ones being the reference's zero padding rows (see the module docstring); the running
    statistics are updated as by :class:`torch.nn.BatchNorm1d` (momentum, unbiased running
    variance). Our own padding rows must be zero on input; every padding row is zero on
    output. In evaluation mode the running statistics are used.
    """

    def __init__(self, dim: int):
        super().__init__(dim, affine=False)

    def forward(self, x: torch.Tensor, node_mask: torch.Tensor, pad_rows: int = 0):
        b, n, d = x.shape
        mask = node_mask[:, :, None].to(x.dtype)
        if self.training:
            rows = b * max(int(pad_rows), n) if pad_rows else int(node_mask.sum())
            if rows < 2:
                raise ValueError("BatchNorm in training needs at least 2 rows")
            mean = x.sum(dim=(0, 1)) / rows  # padding rows (ours and virtual) are zero
            real = int(node_mask.sum())
            var = ((((x - mean) * mask) ** 2).sum(dim=(0, 1)) + (rows - real) * mean**2) / rows
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * rows / (rows - 1))
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * mask


class LGCN(nn.Module):
    """learn-to-cluster's ``lgcn``: BatchNorm1d(D, affine=False), four concat+mean
    GraphConvs D -> 512 -> 512 -> 256 -> 256 (ReLU), hop-1 node embeddings ->
    Linear(256, 256) -> PReLU(256) -> Linear(256, 2)."""

    def __init__(self, in_dim: int = 256):
        super().__init__()
        self.bn0 = PaddedBatchNorm(in_dim)
        self.conv1 = GraphConv(in_dim, 512)
        self.conv2 = GraphConv(512, 512)
        self.conv3 = GraphConv(512, 256)
        self.conv4 = GraphConv(256, 256)
        self.classifier = nn.Sequential(nn.Linear(256, 256), nn.PReLU(256), nn.Linear(256, 2))

    def forward(self, g: Subgraphs, pad_rows: int = 0) -> torch.Tensor:
        """Link logits (B, k1, 2) of every pivot to each of its hop-1 slots."""
        x = self.bn0(g.features, g.node_mask, pad_rows)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x, g.adj)
        h = x.gather(1, g.hop1[:, :, None].expand(-1, -1, x.shape[-1]))
        b, k1, d = h.shape
        return self.classifier(h.reshape(b * k1, d)).reshape(b, k1, 2)


#: reference (learn-to-cluster ``lgcn/models/lgcn.py``) parameter name -> ours; the
#: reference GraphConv keeps ``weight`` as (2·in, out), nn.Linear as (out, 2·in)
REFERENCE_NAMES = {
    "bn0.running_mean": "bn0.running_mean",
    "bn0.running_var": "bn0.running_var",
    "bn0.num_batches_tracked": "bn0.num_batches_tracked",
    **{f"conv{i}.weight": (f"conv{i}.linear.weight", torch.t) for i in range(1, 5)},
    **{f"conv{i}.bias": f"conv{i}.linear.bias" for i in range(1, 5)},
    **{f"classifier.{i}.{p}": f"classifier.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")},
    "classifier.1.weight": "classifier.1.weight",
}


def load_pretrained(path: str) -> dict:
    """The model dict of a released learn-to-cluster L-GCN checkpoint (``module.`` and
    other :data:`facecluster.nn.zoo.PREFIXES` removed; unknown names raise InputError)."""
    from .zoo import load_checkpoint, remap, strip_prefixes

    state = load_checkpoint(path)
    if not any(strip_prefixes(k) == "bn0.num_batches_tracked" for k in state):
        state["bn0.num_batches_tracked"] = torch.tensor(0)  # torch < 0.4.1 checkpoints
    key = next((k for k in state if strip_prefixes(k) == "conv1.weight"), None)
    in_dim = int(state[key].shape[0]) // 2 if key is not None else 256
    expected = LGCN(in_dim).state_dict()
    ours = remap(state, REFERENCE_NAMES, expected, source=path)
    ours["bn0.num_batches_tracked"] = ours["bn0.num_batches_tracked"].long()
    return {"family": "lgcn", "state_dict": ours, "in_dim": in_dim}


def _epoch_pivots(n: int, seed: int, epoch: int, max_pivots: int) -> np.ndarray:
    """The shuffled pivots of one epoch; a seeded subset of ``max_pivots`` when > 0."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[:max_pivots] if 0 < max_pivots < n else order


def _save_checkpoint(path: str, state: dict) -> None:
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    k_at_hop=(200, 10),
    active_connection: int = 10,
    epochs: int = 4,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    milestones=(0.25, 0.5, 0.75),
    max_pivots: int = 0,
) -> dict:
    """Train L-GCN on a labelled split: every item is a pivot once per epoch.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,) identities (-1 unknown).
    knn : the split's kNN graph (the same backend as at test time).
    k_at_hop, active_connection : subgraph settings (module docstring); ``k_at_hop`` also
        sets the reference's padding, which enters the BatchNorm statistics.
    epochs, lr, momentum, weight_decay, batch_size : SGD as in the reference (4 epochs,
        0.01, 0.9, 1e-4, 16 pivots).
    milestones : fractions of all iterations where the rate is multiplied by 0.1 (the
        reference's epoch steps [1, 2, 3] of 4 are [0.25, 0.5, 0.75]).
    max_pivots : if > 0, a seeded random subset of this many pivots per epoch (ours, to make
        training affordable on a CPU; the reference uses every item).

    Returns
    -------
    A dict with ``state_dict``, ``in_dim``, the training settings and the last epoch's
    mean ``loss``. With ``context.checkpoint`` set, the state is saved after every epoch and
    a run that finds the file resumes after its last complete epoch (same result).
    """
    device = resolve_device(context.device)
    seed_everything(context.seed, device)
    torch.set_num_threads(max(1, int(context.threads)))
    builder = SubgraphBuilder(features, knn, k_at_hop, active_connection, device, labels)
    pad_rows = max(max_num_nodes(k_at_hop), builder.max_nodes)
    model = LGCN(features.shape[1]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n_pivots = min(knn.n, max_pivots) if max_pivots > 0 else knn.n
    per_epoch = math.ceil(n_pivots / batch_size)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=milestone_steps(milestones, epochs * per_epoch), gamma=0.1
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    start_epoch, epoch_loss = 0, float("nan")
    if context.checkpoint and os.path.exists(context.checkpoint):
        ckpt = torch.load(context.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, epoch_loss = int(ckpt["epoch"]), float(ckpt["loss"])
        log.info("lgcn train: resuming after epoch %d from %s", start_epoch, context.checkpoint)
    model.train()
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        pivots = _epoch_pivots(knn.n, context.seed, epoch, max_pivots)
        total, count = 0.0, 0
        progress = Progress(
            pivots.size, f"lgcn train epoch {epoch + 1}/{epochs}", unit="pivots", logger=log
        )
        for start in range(0, pivots.size, batch_size):
            g = builder.build(pivots[start : start + batch_size])
            logits = model(g, pad_rows)
            loss = loss_fn(logits.reshape(-1, 2), g.labels.reshape(-1))
            if not torch.isfinite(loss):
                if bool((g.labels != IGNORE).any()):
                    raise FloatingPointError(f"lgcn training diverged at epoch {epoch + 1}")
                continue  # a batch without one labelled edge: nothing to learn
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + float(loss.item()), count + 1
            progress.update(g.pivots.numel())
        progress.close()
        epoch_loss = total / max(count, 1)
        log.info("lgcn train: epoch %d/%d loss %.4f", epoch + 1, epochs, epoch_loss)
        if context.checkpoint:
            _save_checkpoint(
                context.checkpoint,
                {
                    "epoch": epoch + 1,
                    "loss": epoch_loss,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                },
            )
    log.info("lgcn train: %d epochs in %.1f s", epochs - start_epoch, time.perf_counter() - t0)
    return {
        "family": "lgcn",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "in_dim": int(features.shape[1]),
        "k_at_hop": [int(k_at_hop[0]), int(k_at_hop[1])],
        "active_connection": int(active_connection),
        "loss": float(epoch_loss),
    }


def _model_from(model: dict, in_dim: int, device: torch.device) -> LGCN:
    if int(model["in_dim"]) != in_dim:
        raise ValueError(f"lgcn model expects {model['in_dim']}-d features, got {in_dim}-d")
    net = LGCN(int(model["in_dim"]))
    net.load_state_dict(model["state_dict"])
    return net.to(device).eval()


@torch.no_grad()
def predict_edges(
    features: np.ndarray,
    knn: Knn,
    model: dict,
    *,
    context,
    k_at_hop=(80, 10),
    active_connection: int = 10,
    batch_size: int = 16,
    chunk: int = 1024,
    max_pivots: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """P(link) of every pivot to each of its hop-1 nodes.

    Pivots are taken ``chunk`` at a time; within a chunk they are ordered by subgraph size
    before batching, so a batch pads little (evaluation mode: a pivot's scores do not depend
    on its batch beyond floating-point rounding). ``max_pivots`` > 0 scores only the first
    that many pivots (timing runs).

    Returns
    -------
    pairs : int64 (E, 2) (pivot, hop-1 node) global indices.
    scores : float32 (E,) softmax probability of class 1 (same identity).
    """
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    net = _model_from(model, features.shape[1], device)
    builder = SubgraphBuilder(features, knn, k_at_hop, active_connection, device)
    n = knn.n if max_pivots <= 0 else min(knn.n, int(max_pivots))
    pairs, scores = [], []
    progress = Progress(n, "lgcn pivots", unit="pivots", logger=log)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sizes = _subgraph_sizes(builder, np.arange(start, stop))
        order = start + np.argsort(sizes, kind="stable")
        for b in range(0, order.size, batch_size):
            g = builder.build(order[b : b + batch_size])
            prob = torch.softmax(net(g), dim=-1)[..., 1]
            h1 = g.nodes.gather(1, g.hop1)
            p = g.pivots[:, None].expand_as(h1)
            m = g.hop1_mask
            pairs.append(torch.stack([p[m], h1[m]], dim=1).cpu().numpy())
            scores.append(prob[m].float().cpu().numpy())
        progress.update(stop - start)
    progress.close()
    if not pairs:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    return np.concatenate(pairs).astype(np.int64), np.concatenate(scores).astype(np.float32)


def _subgraph_sizes(builder: SubgraphBuilder, pivots: np.ndarray, batch: int = 256) -> np.ndarray:
    """Number of nodes (int64 (P,)) of each pivot's subgraph (the node sets only)."""
    out = []
    for s in range(0, pivots.size, batch):
        p = torch.as_tensor(pivots[s : s + batch], dtype=torch.int64, device=builder.device)
        cand, ok = builder._candidates(p)
        _, node_mask, _ = builder._unique_in_order(cand, ok)
        out.append(node_mask.sum(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, np.int64)
