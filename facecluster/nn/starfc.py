"""STAR-FC's torch parts: the model, SPSS training, full-graph edge scoring, released weights.

STAR-FC (Shen et al., CVPR 2021, "Structure-Aware Face Clustering on a Large-Scale Graph
with 10^7 Nodes"), as its public code (``sstzal/STAR-FC``, ``src/train_gcn.py``,
``test_final.py``) computes it; the family module :mod:`facecluster.methods.starfc` (light:
no torch at import) calls these, and holds the graph parsing and node intimacy.

Model: a one-layer concat+mean GraphConv (the "backbone", D -> hidden, ReLU) on the kNN
graph max(A, Aᵀ) + I, row-normalised, and an edge head Linear(2·hidden, hidden) -> PReLU ->
Linear(2) on [h_i ‖ h_j], trained with cross-entropy on "same identity".

Two exact rewrites make it cheap without changing what it computes:

* The first head layer is linear in the concatenation: W·[h_i ‖ h_j] + b = u_i + v_j with
  u = h·W_aᵀ + b and v = h·W_bᵀ per node. Scoring E = N·(k-1) pairs then costs two
  (N, hidden) products and an add per pair instead of a (2·hidden x hidden) product per pair
  (k / 2 = 40 times fewer flops at k 80).
* With one graph convolution and no dropout, A·X of a subgraph is fixed while training on
  it: it is computed once per subgraph, and each step runs the GCN's dense layer on
  [X ‖ A·X] of the whole subgraph as the reference does (an edge chunk of 1/40 of the
  edges touches nearly every node anyway).

SPSS training as implemented (cdp-infomap-starfc.md §3.4; the paper's M = 2 seed clusters x
750 is the code's M = 1 x 1500, issue #3): class centres (mean of the L2-normalised
features, re-normalised) and each centre's ``candidates`` nearest centres (itself included)
are fixed (the features do not change, so the reference's per-epoch recomputation gives the
same); each epoch visits every class once as the seed, in a seeded order (the reference:
label order), picks ``clusters`` of its candidates at random (cluster randomness), takes
int(``node_ratio`` x size) random items of each (sample randomness), skips samples outside
[``min_nodes``, ``max_nodes``], rebuilds an exact kNN (faiss inner product) on the sample,
and trains on every stored entry of the sample's adjacency (both directions and the self
loops, as the reference) in ``edge_passes`` independent random orders cut into
``edge_passes`` x ``edge_chunks`` chunks: one SGD step per chunk.

Stopping: the authors stop when the loss reaches 0.01-0.02, well before one epoch on MS1M
(issue #6); we stop when the mean loss of the last ``stop_window`` subgraphs is at most
``stop_loss`` (0 turns it off), and record why and when in the model file.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import deque

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..graph import symmetric_normalized_adjacency
from ..io import InputError, Knn
from ..knn import build_knn
from ..progress import Progress
from . import (
    GraphConv,
    checkpoint,
    milestone_steps,
    resolve_device,
    seed_everything,
    to_torch_csr,
)
from .zoo import (
    HEAD_NAMES,
    graphconv_names,
    graphconv_sizes,
    load_checkpoint,
    remap,
    strip_prefixes,
)

log = logging.getLogger(__name__)

__all__ = [
    "StarFC",
    "SubgraphSampler",
    "class_centres",
    "nearest_centres",
    "subgraph_graph",
    "train",
    "predict_edges",
    "load_pretrained",
]


class StarFC(nn.Module):
    """Backbone GraphConv (in_dim -> hidden) and the pairwise edge head."""

    def __init__(self, in_dim: int = 256, hidden: int = 512):
        super().__init__()
        self.hidden = int(hidden)
        self.conv = GraphConv(in_dim, hidden)
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.PReLU(hidden), nn.Linear(hidden, 2)
        )

    def embed(self, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """Node embeddings h (n, hidden) from X and A·X (n, in_dim) of the same rows."""
        return self.conv.combine(x, ax)

    def node_terms(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u = h·W_aᵀ + b (as the pair's first node) and v = h·W_bᵀ (as its second), both
        (n, hidden): the head's first layer on [h_i ‖ h_j] is u_i + v_j."""
        first = self.head[0]
        w_a, w_b = first.weight[:, : self.hidden], first.weight[:, self.hidden :]
        return h @ w_a.t() + first.bias, h @ w_b.t()

    def pair_logits(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logits (E, 2) of pairs from their gathered terms u_i, v_j (E, hidden)."""
        return self.head[2](self.head[1](u + v))

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor) -> torch.Tensor:
        """The reference head on concatenated embeddings: logits (E, 2)."""
        return self.head(torch.cat([h_src, h_dst], dim=1))


# --------------------------------------------------------------------------------- sampling


def class_centres(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identities and their centres.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,), -1 = unknown (ignored).

    Returns
    -------
    classes : int64 (C,) the distinct known identities, ascending.
    centres : float32 (C, D) mean feature of each identity, L2-normalised.
    """
    known = labels >= 0
    classes, inverse = np.unique(labels[known], return_inverse=True)
    rows = np.flatnonzero(known)
    member = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (inverse, rows)), shape=(classes.size, labels.size)
    )
    centres = np.asarray(member @ features, dtype=np.float32)
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    centres /= np.maximum(norms, 1e-12)
    return classes.astype(np.int64), centres


def nearest_centres(centres: np.ndarray, m: int, *, block: int = 1024) -> np.ndarray:
    """Each centre's ``m`` nearest centres by inner product, itself included (int64 (C, m),
    most similar first, ties by index); ``m`` is capped at C."""
    c = centres.shape[0]
    m = min(int(m), c)
    out = np.empty((c, m), dtype=np.int64)
    for start in range(0, c, block):
        sims = centres[start : start + block] @ centres.T
        # self first even where another centre coincides with it
        sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])] = np.inf
        out[start : start + block] = np.argsort(-sims, axis=1, kind="stable")[:, :m]
    return out


class SubgraphSampler:
    """Structure-preserved subgraph sampling (SPSS) on a labelled split.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,) identities (-1 unknown:
        never sampled).
    clusters : clusters picked per sample, at random among the seed's ``candidates``
        nearest (cluster randomness; MS1M 1300 of 1500).
    candidates : nearest centres considered per seed, the seed included.
    node_ratio : share of each picked cluster's items taken, int(ratio x size), at random
        (sample randomness; 0.9).
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        clusters: int,
        candidates: int,
        node_ratio: float,
    ):
        self.classes, centres = class_centres(features, labels)
        if self.classes.size == 0:
            raise InputError("STAR-FC training needs labelled items; every label is -1")
        self.clusters = int(clusters)
        self.node_ratio = float(node_ratio)
        self.nearest = nearest_centres(centres, max(int(candidates), 1))
        known = np.flatnonzero(labels >= 0)
        cls = np.searchsorted(self.classes, labels[known])
        order = np.argsort(cls, kind="stable")
        self.members = known[order]  # items grouped by class index
        self.starts = np.zeros(self.classes.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(cls, minlength=self.classes.size), out=self.starts[1:])

    @property
    def n_classes(self) -> int:
        return int(self.classes.size)

    def pick_clusters(self, seed_class: int, rng: np.random.Generator) -> np.ndarray:
        """Class indices (int64, sorted) of ``clusters`` random picks among the seed's
        candidates (all of them when there are fewer)."""
        cand = self.nearest[seed_class]
        take = min(self.clusters, cand.size)
        return np.sort(rng.choice(cand, size=take, replace=False))

    def sample(self, seed_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One subgraph: item indices int64 (S,) ascending, and the class indices picked.

        Each picked class c contributes int(node_ratio x size_c) of its items, chosen
        uniformly without replacement (all classes at once: a random key per member, ranked
        within its class).
        """
        picked = self.pick_clusters(seed_class, rng)
        sizes = self.starts[picked + 1] - self.starts[picked]
        keep = (self.node_ratio * sizes).astype(np.int64)
        # member positions of every picked class, concatenated
        offsets = np.repeat(self.starts[picked] - np.cumsum(sizes) + sizes, sizes)
        pos = np.arange(int(sizes.sum()), dtype=np.int64) + offsets
        group = np.repeat(np.arange(picked.size), sizes)
        key = rng.random(pos.size)
        order = np.lexsort((key, group))
        rank = np.arange(pos.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        chosen = pos[order][rank < np.repeat(keep, sizes)]
        return np.sort(self.members[chosen]), picked


def subgraph_graph(
    features: np.ndarray, k: int, th_sim: float, *, threads: int, seed: int
) -> sp.csr_matrix:
    """STAR-FC's graph of a sample: an exact kNN (k, self included, capped at S - 1) rebuilt
    on the sample's features, then max(A, Aᵀ) + I row-normalised (float32 CSR (S, S))."""
    knn = build_knn(
        features, min(int(k), features.shape[0] - 1), index="flat", threads=threads, seed=seed
    )
    return symmetric_normalized_adjacency(knn, th_sim)


def _edge_chunks(n_edges: int, passes: int, chunks: int, rng: np.random.Generator):
    """``passes`` independent permutations of the edge ids, concatenated and cut into
    ``passes`` x ``chunks`` near-equal chunks (the reference: 2 x 40 = 80 chunks of 1/40)."""
    order = np.concatenate([rng.permutation(n_edges) for _ in range(passes)])
    return np.array_split(order, passes * chunks)


# --------------------------------------------------------------------------------- training


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    hidden: int = 512,
    clusters: int = 1300,
    candidates: int = 1500,
    node_ratio: float = 0.9,
    min_nodes: int = 100,
    max_nodes: int = 100000,
    edge_chunks: int = 40,
    edge_passes: int = 2,
    epochs: int = 50,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-5,
    milestones=(0.5, 0.8, 0.9),
    stop_loss: float = 0.02,
    stop_window: int = 20,
    th_sim: float = 0.0,
    checkpoint_every: int = 100,
) -> dict:
    """Train STAR-FC with SPSS on a labelled split (module docstring).

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,) identities (-1 unknown).
    knn : the split's kNN graph; only its k is used (each sample's kNN is rebuilt at k).
    context : seed, threads, device and ``checkpoint`` (saved every ``checkpoint_every``
        subgraphs; a killed job resumes from it, bit-identically on the same device).
    hidden : embedding size (512).
    clusters, candidates, node_ratio : SPSS (:class:`SubgraphSampler`; MS1M 1300, 1500,
        0.9).
    min_nodes, max_nodes : samples outside this range are skipped (100, 100,000).
    edge_chunks, edge_passes : SGD steps per subgraph = passes x chunks (40 x 2).
    epochs : upper bound on passes over the seed classes (50); lr drops x0.1 at
        ``milestones`` (fractions of ``epochs``: 25, 40, 45).
    lr, momentum, weight_decay : SGD (the code's 0.01, 0.9, 1e-5; its config's lr 0.1 is
        not used by it).
    stop_loss, stop_window : stop once the mean loss of the last ``stop_window`` trained
        subgraphs is <= ``stop_loss`` (0: train all ``epochs``).
    th_sim : similarity threshold of the graphs (0).

    Returns
    -------
    A dict with ``family``, ``state_dict``, ``in_dim``, ``hidden``, ``th_sim``, ``loss``
    (mean of the last window), ``stop_reason`` ("loss" or "epochs"), ``stopped_at``
    (subgraphs visited), ``epochs_run`` (the same in epochs), ``trained`` (subgraphs
    trained on; the others were skipped) and
    ``loss_curve`` (float32 tensor: the mean loss of every trained subgraph).
    """
    device = resolve_device(context.device)
    seed_everything(context.seed, device)
    torch.set_num_threads(max(1, int(context.threads)))
    sampler = SubgraphSampler(
        features, labels, clusters=clusters, candidates=candidates, node_ratio=node_ratio
    )
    n_batches = sampler.n_classes
    total = n_batches * int(epochs)
    model = StarFC(features.shape[1], hidden).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=milestone_steps(milestones, int(epochs)), gamma=0.1
    )
    loss_fn = nn.CrossEntropyLoss()

    settings = {
        "n": int(features.shape[0]),
        "dim": int(features.shape[1]),
        "k": int(knn.k),
        "seed": int(context.seed),
        "hidden": int(hidden),
        "clusters": int(clusters),
        "candidates": int(candidates),
        "node_ratio": float(node_ratio),
        "min_nodes": int(min_nodes),
        "max_nodes": int(max_nodes),
        "edge_chunks": int(edge_chunks),
        "edge_passes": int(edge_passes),
        "epochs": int(epochs),
        "lr": float(lr),
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "milestones": [float(f) for f in milestones],
        "stop_loss": float(stop_loss),
        "stop_window": int(stop_window),
        "th_sim": float(th_sim),
    }
    fp, start, extra = None, 0, {}
    if context.checkpoint:
        fp = checkpoint.fingerprint(
            "starfc", settings=settings, arrays={"features": features, "labels": labels}
        )
        start, extra = checkpoint.restore(context.checkpoint, fp, model, opt, sched)
    curve = [float(v) for v in extra.get("loss_curve", [])]
    window = deque(curve[-int(stop_window) :], maxlen=int(stop_window))
    stop_reason = "epochs"
    x_all = np.ascontiguousarray(features, dtype=np.float32)
    labels = np.asarray(labels)

    t0 = time.perf_counter()
    progress = Progress(total - start, "starfc train", unit="subgraphs", logger=log)
    done, seeds, seeds_epoch = start, None, None
    for it in range(start, total):
        epoch, b = divmod(it, n_batches)
        if epoch != seeds_epoch:  # the epoch's seeded order of the seed classes
            seeds = np.random.default_rng([context.seed, epoch]).permutation(n_batches)
            seeds_epoch = epoch
        seed_class = int(seeds[b])
        rng = np.random.default_rng([context.seed, epoch, b])
        items, _ = sampler.sample(seed_class, rng)
        done = it + 1
        if min_nodes <= items.size <= max_nodes and items.size > 1:
            loss = _train_subgraph(
                model, opt, loss_fn, x_all[items], labels[items], knn.k, th_sim, context,
                device, rng, edge_passes, edge_chunks,
            )  # fmt: skip
            curve.append(loss)
            window.append(loss)
        if b == n_batches - 1:
            with warnings.catch_warnings():  # an epoch whose samples were all skipped
                warnings.filterwarnings(
                    "ignore", "Detected call of `lr_scheduler.step", UserWarning
                )
                sched.step()
            log.info(
                "starfc train: epoch %d done, last subgraph loss %.4f",
                epoch + 1,
                curve[-1] if curve else math.nan,
            )
        progress.update(1)
        if stop_loss > 0 and len(window) == window.maxlen and float(np.mean(window)) <= stop_loss:
            stop_reason = "loss"
            log.info(
                "starfc train: mean loss of the last %d subgraphs %.4f <= %g after %d "
                "subgraphs (epoch %d): stop",
                len(window),
                float(np.mean(window)),
                stop_loss,
                done,
                epoch + 1,
            )
            break
        if fp is not None and checkpoint.due(done, checkpoint_every, total):
            checkpoint.save(
                context.checkpoint, fp, done, model, opt, sched,
                extra={"loss_curve": torch.tensor(curve, dtype=torch.float64)},
            )  # fmt: skip
    progress.close()
    log.info(
        "starfc train: %d subgraphs (%d trained) in %.1f s, stop: %s",
        done - start,
        len(curve),
        time.perf_counter() - t0,
        stop_reason,
    )
    return {
        "family": "starfc",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "in_dim": int(features.shape[1]),
        "hidden": int(hidden),
        "th_sim": float(th_sim),
        "loss": float(np.mean(window)) if window else math.nan,
        "stop_reason": stop_reason,
        "stopped_at": int(done),
        "epochs_run": done / n_batches,
        "trained": len(curve),
        "loss_curve": torch.tensor(curve, dtype=torch.float32),
    }


def _train_subgraph(
    model: StarFC,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x_np: np.ndarray,
    y_np: np.ndarray,
    k: int,
    th_sim: float,
    context,
    device: torch.device,
    rng: np.random.Generator,
    passes: int,
    chunks: int,
) -> float:
    """The SGD steps of one sampled subgraph; returns their mean loss."""
    adj = subgraph_graph(x_np, k, th_sim, threads=context.threads, seed=context.seed)
    rows = np.repeat(np.arange(adj.shape[0], dtype=np.int64), np.diff(adj.indptr))
    cols = adj.indices.astype(np.int64)
    x = torch.from_numpy(x_np).to(device)
    ax = to_torch_csr(adj, device) @ x
    src = torch.from_numpy(rows).to(device)
    dst = torch.from_numpy(cols).to(device)
    y = torch.from_numpy(np.asarray(y_np, dtype=np.int64)).to(device)
    target = (y[src] == y[dst]).long()
    total, steps = 0.0, 0
    for chunk in _edge_chunks(rows.size, passes, chunks, rng):
        if chunk.size == 0:
            continue
        c = torch.from_numpy(chunk).to(device)
        u, v = model.node_terms(model.embed(x, ax))  # the GCN on the whole subgraph
        loss = loss_fn(model.pair_logits(u[src[c]], v[dst[c]]), target[c])
        if not torch.isfinite(loss):
            raise FloatingPointError("starfc training diverged (non-finite loss)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.item()), steps + 1
    return total / max(steps, 1)


# -------------------------------------------------------------------------------- inference


def _model_from(model: dict, in_dim: int, device: torch.device) -> StarFC:
    if int(model["in_dim"]) != in_dim:
        raise ValueError(f"starfc model expects {model['in_dim']}-d features, got {in_dim}-d")
    net = StarFC(int(model["in_dim"]), int(model["hidden"]))
    net.load_state_dict(model["state_dict"])
    return net.to(device).eval()


@torch.no_grad()
def _node_terms(
    net: StarFC, features: np.ndarray, knn: Knn, th_sim: float, device, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GCN on the whole graph, as the head's per-node terms u, v (N, hidden) float32 on
    ``device`` (:meth:`StarFC.node_terms`); rows in batches so only (batch, hidden)
    embeddings exist at once."""
    adj = symmetric_normalized_adjacency(knn, th_sim)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    ax = to_torch_csr(adj, device) @ x
    del adj
    n, hidden = features.shape[0], net.hidden
    u = torch.empty(n, hidden, dtype=torch.float32, device=device)
    v = torch.empty(n, hidden, dtype=torch.float32, device=device)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        u[start:stop], v[start:stop] = net.node_terms(net.embed(x[start:stop], ax[start:stop]))
    return u, v


@torch.no_grad()
def predict_edges(
    features: np.ndarray,
    knn: Knn,
    model: dict,
    *,
    context,
    tau1: float | None = None,
    pair_budget: int = 1 << 25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(same identity) of every directed kNN pair (i, j), j a neighbour of i, j != i.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : the split's kNN graph (self first; -1
        padding allowed).  model : the dict of :func:`train` or :func:`load_pretrained`.
    tau1 : keep only pairs scoring above it (graph parsing) while scoring, so that the
        N·(k-1) scores never exist at once; None keeps every pair.
    pair_budget : floats of a per-chunk (pairs x hidden) buffer (128 MB by default; the
        gathered u, v, their sum and its activation make four).

    Returns
    -------
    src, dst : int32 (E,) (int64 where N >= 2^31) in row order of ``knn``.
    scores : float32 (E,) softmax probability of "same".
    """
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    net = _model_from(model, features.shape[1], device)
    u, v = _node_terms(net, features, knn, float(model.get("th_sim", 0.0)), device, 65536)
    n, k = knn.nbrs.shape
    index_dtype = np.int32 if n < 2**31 else np.int64
    nbrs = torch.from_numpy(knn.nbrs.astype(np.int64)).to(device)
    rows = max(1, int(pair_budget) // max(1, k * net.hidden))
    out_src, out_dst, out_scores = [], [], []
    progress = Progress(n, "starfc edge scores", unit="nodes", logger=log)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        nb = nbrs[start:stop]
        ids = torch.arange(start, stop, device=device)[:, None].expand_as(nb)
        valid = (nb >= 0) & (nb != ids)
        s, d = ids[valid], nb[valid]
        prob = torch.softmax(net.pair_logits(u[s], v[d]), dim=1)[:, 1]
        if tau1 is not None:
            keep = prob > tau1
            s, d, prob = s[keep], d[keep], prob[keep]
        out_src.append(s.cpu().numpy().astype(index_dtype))
        out_dst.append(d.cpu().numpy().astype(index_dtype))
        out_scores.append(prob.float().cpu().numpy())
        progress.update(stop - start)
    progress.close()
    if not out_src:
        empty = np.empty(0, index_dtype)
        return empty, empty.copy(), np.empty(0, np.float32)
    return np.concatenate(out_src), np.concatenate(out_dst), np.concatenate(out_scores)


# --------------------------------------------------------------------------- released weights


#: ``Backbone.pth`` (``src/models/gcn.py: GCN``, ``conv1`` a learn-to-cluster GraphConv with
#: ``weight`` (2·in, hidden) and ``bias``) and ``Head.pth`` (``HEAD``/``HEAD_test``:
#: ``classifier`` = Linear(2·hidden, hidden), PReLU, Linear(hidden, 2)) -> ours
REFERENCE_NAMES = {**graphconv_names("conv1", "conv"), **HEAD_NAMES}


def load_pretrained(backbone: str, head: str) -> dict:
    """STAR-FC's released ``Backbone.pth`` and ``Head.pth`` as our model dict.

    Sizes come from the backbone's ``conv1.weight`` (2·in_dim, hidden); every parameter of
    both files must map onto ours with the right shape, else :class:`InputError` names them.
    The released model was trained and is tested with th_sim 0 (cfg_gcn_ms1m.py).
    """
    state = load_checkpoint(backbone)
    in_dim, hidden = graphconv_sizes(state, backbone, "a STAR-FC backbone")
    head_state = load_checkpoint(head)
    overlap = {strip_prefixes(k) for k in state} & {strip_prefixes(k) for k in head_state}
    if overlap:
        raise InputError(f"{backbone} and {head} share parameters {sorted(overlap)}")
    expected = StarFC(in_dim, hidden).state_dict()
    ours = remap({**state, **head_state}, REFERENCE_NAMES, expected, source=f"{backbone} + {head}")
    return {
        "family": "starfc",
        "state_dict": ours,
        "in_dim": in_dim,
        "hidden": hidden,
        "th_sim": 0.0,
        "loss": math.nan,
    }
