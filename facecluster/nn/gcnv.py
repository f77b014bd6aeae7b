"""GCN-V's torch parts: the model, full-batch training and batched inference, and the
mapping of learn-to-cluster's released weights.

The family module :mod:`facecluster.methods.gcnv` (light: no torch at import) calls these.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..graph import adjacency_rows, symmetric_normalized_adjacency
from ..io import Knn
from ..methods.gcnv import CHUNK_ROWS, s_nbr_confidence
from . import GraphConv, checkpoint, milestone_steps, resolve_device, seed_everything, to_torch_csr
from .zoo import HEAD_NAMES, graphconv_names, graphconv_sizes, load_checkpoint, remap

log = logging.getLogger(__name__)

__all__ = [
    "GCNV",
    "REFERENCE_NAMES",
    "CHUNK_ROWS",
    "Inference",
    "validation_mask",
    "train",
    "predict",
    "load_pretrained",
]


class GCNV(nn.Module):
    """One GraphConv (in_dim -> hidden) + head Linear(hidden, hidden) -> PReLU -> Linear(1)."""

    def __init__(self, in_dim: int = 256, hidden: int = 512):
        super().__init__()
        self.conv = GraphConv(in_dim, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.PReLU(hidden), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, ax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Confidences (N,) and hidden features (N, hidden) from X and A·X (both (N, in_dim))."""
        h = self.conv.combine(x, ax)
        return self.head(h).view(-1), h


def _aggregated(features: np.ndarray, knn: Knn, th_sim: float, device: torch.device):
    """X and A·X as float32 tensors on ``device``."""
    adj = symmetric_normalized_adjacency(knn, th_sim)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    ax = to_torch_csr(adj, device) @ x
    return x, ax


def validation_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Nodes of a seeded ``fraction`` of the identities, held out for early stopping.

    Parameters
    ----------
    labels : int (N,) identities (``-1`` = unknown: such nodes are never held out).
    fraction : share of the known identities to hold out, in (0, 1); rounded, at least one
        identity and at least one left for training.
    seed : seeds the choice (``numpy.random.default_rng``; the global RNGs are untouched).

    Returns
    -------
    bool (N,), True for held-out nodes.
    """
    ids = np.unique(labels[labels >= 0])
    if ids.size < 2:
        raise ValueError(f"gcnv early stopping needs at least 2 identities, got {ids.size}")
    n_val = min(ids.size - 1, max(1, int(round(fraction * ids.size))))
    held = np.random.default_rng(seed).choice(ids, size=n_val, replace=False)
    return np.isin(labels, held)


@dataclass
class _EarlyStopping:
    """Best validation loss so far, the weights and iteration that reached it, and the number
    of evaluations since (the loop state kept in a checkpoint's ``extra``)."""

    patience: int
    best_loss: float = math.inf
    best_iteration: int = 0
    best_state: dict = field(default_factory=dict)
    bad_evals: int = 0

    def update(self, loss: float, iteration: int, model: nn.Module) -> bool:
        """Record the validation ``loss`` after ``iteration`` steps; True when to stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_iteration, self.bad_evals = loss, iteration, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.patience

    def to_extra(self) -> dict:
        return {
            "best_loss": self.best_loss,
            "best_iteration": self.best_iteration,
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
        }

    def load_extra(self, extra: dict, device: torch.device) -> None:
        if not extra:
            return
        self.best_loss = float(extra["best_loss"])
        self.best_iteration = int(extra["best_iteration"])
        self.best_state = {k: v.to(device) for k, v in extra["best_state"].items()}
        self.bad_evals = int(extra["bad_evals"])


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    hidden: int = 512,
    epochs: int = 80000,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-5,
    milestones: tuple[float, ...] = (0.5, 0.8, 0.9),
    th_sim: float = 0.0,
    checkpoint_every: int = 5000,
    val_fraction: float = 0.0,
    patience: int = 5,
    eval_every: int = 100,
) -> dict:
    """Train GCN-V full-batch on one labelled graph.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,) identities.
    knn : kNN graph of the features (the same backend and k as at test time).
    context : seed, threads, device, and ``checkpoint``: the path of the periodic training
        checkpoint (None: no checkpoint). A valid checkpoint there of this very training is
        resumed (see :mod:`facecluster.nn.checkpoint`); on the same device and thread count
        the result equals an uninterrupted run bit for bit.
    hidden : GCN hidden size (512 in the reference).
    epochs : full-batch iterations (80,000 for MS1M in the reference).
    lr, momentum, weight_decay : SGD settings (0.1, 0.9, 1e-5 in the reference).
    milestones : fractions of ``epochs`` where the learning rate is multiplied by 0.1
        (the reference's [40000, 64000, 72000] of 80,000).
    th_sim : affinity threshold of the graph.
    checkpoint_every : iterations between checkpoints (the reference saves every 5000); 0:
        never. Ignored without ``context.checkpoint``.
    val_fraction : early stopping (not in the reference; 0 = off): the nodes of this seeded
        share of the identities (:func:`validation_mask`) are left out of the loss (the graph
        and the targets stay those of the whole split) and their MSE is evaluated every
        ``eval_every`` iterations and after the last one; training stops after ``patience``
        evaluations without a strictly lower validation MSE and returns the best weights.
        The learning-rate steps stay at their fractions of ``epochs``.

    Returns
    -------
    A dict with ``family``, ``state_dict``, ``in_dim``, ``hidden``, ``th_sim``, ``loss`` (the
    training MSE of the last iteration's forward pass) and ``stopped_at`` (iterations run);
    with early stopping also ``best_iteration`` (the iterations behind the returned weights)
    and ``val_loss`` (their validation MSE).
    """
    device = resolve_device(context.device)
    seed_everything(context.seed, device)
    torch.set_num_threads(max(1, int(context.threads)))
    target_np = s_nbr_confidence(knn, labels)
    target = torch.from_numpy(target_np).to(device)
    x, ax = _aggregated(features, knn, th_sim, device)
    model = GCNV(features.shape[1], hidden).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=milestone_steps(milestones, epochs), gamma=0.1
    )
    loss_fn = nn.MSELoss()

    stopper = None
    if val_fraction > 0:
        held = validation_mask(labels, val_fraction, context.seed)
        val_idx = torch.from_numpy(np.flatnonzero(held)).to(device)
        x_val, ax_val, target_val = x[val_idx], ax[val_idx], target[val_idx]
        # a 0/1 weight instead of indexing keeps the backward a plain (deterministic) product
        train_w = torch.from_numpy((~held).astype(np.float32)).to(device)
        n_train = float(train_w.sum().item())
        stopper = _EarlyStopping(patience)
        log.info(
            "gcnv train: %d of %d nodes held out for early stopping", int(held.sum()), held.size
        )

    fp, start, extra = None, 0, {}
    if context.checkpoint:
        settings = {
            "n": int(features.shape[0]),
            "dim": int(features.shape[1]),
            "seed": int(context.seed),
            "hidden": int(hidden),
            "epochs": int(epochs),
            "lr": float(lr),
            "momentum": float(momentum),
            "weight_decay": float(weight_decay),
            "milestones": [float(f) for f in milestones],
            "th_sim": float(th_sim),
            "val_fraction": float(val_fraction),
            "patience": int(patience) if val_fraction > 0 else None,
            "eval_every": int(eval_every) if val_fraction > 0 else None,
        }
        arrays = {"features": features, "labels": labels, "nbrs": knn.nbrs, "sims": knn.sims}
        fp = checkpoint.fingerprint("gcnv", settings=settings, arrays=arrays)
        start, extra = checkpoint.restore(context.checkpoint, fp, model, opt, sched)
    if stopper is not None:
        stopper.load_extra(extra.get("early_stopping", {}), device)
    last_loss = float(extra.get("loss", math.nan))

    t0 = time.perf_counter()
    loss = torch.tensor(last_loss)
    done = start
    for epoch in range(start, epochs):
        opt.zero_grad(set_to_none=True)
        pred, _ = model(x, ax)
        if stopper is None:
            loss = loss_fn(pred, target)
        else:
            loss = ((pred - target).square() * train_w).sum() / n_train
        loss.backward()
        opt.step()
        sched.step()
        done = epoch + 1
        if epoch % max(1, epochs // 20) == 0 or done == epochs:
            log.info("gcnv train: epoch %d/%d loss %.6f", done, epochs, loss.item())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"gcnv training diverged at epoch {done} (loss {loss})")
        if stopper is not None and (done % eval_every == 0 or done == epochs):
            with torch.no_grad():
                val = float(loss_fn(model(x_val, ax_val)[0], target_val).item())
            stop = stopper.update(val, done, model)
            log.info(
                "gcnv train: epoch %d validation MSE %.6f (best %.6f at %d)",
                done,
                val,
                stopper.best_loss,
                stopper.best_iteration,
            )
            if stop:
                log.info("gcnv train: early stop after %d epochs (patience %d)", done, patience)
                break
        if fp is not None and checkpoint.due(done, checkpoint_every, epochs):
            extra = {"loss": float(loss.item())}
            if stopper is not None:
                extra["early_stopping"] = stopper.to_extra()
            checkpoint.save(context.checkpoint, fp, done, model, opt, sched, extra=extra)
    log.info("gcnv train: %d epochs in %.1f s", done - start, time.perf_counter() - t0)
    if stopper is not None and stopper.best_state:
        model.load_state_dict(stopper.best_state)
    out = {
        "family": "gcnv",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "in_dim": int(features.shape[1]),
        "hidden": int(hidden),
        "th_sim": float(th_sim),
        "loss": float(loss.item()),
        "stopped_at": int(done),
    }
    if stopper is not None:
        out["best_iteration"] = int(stopper.best_iteration)
        out["val_loss"] = float(stopper.best_loss)
    return out


class Inference:
    """A trained GCN-V applied to any rows of one graph, without the whole graph's tensors.

    The rows of A·X come from :func:`facecluster.graph.adjacency_rows` (the same bits as
    the whole normalised adjacency) times X; the dense layers run on batches of
    ``batch_size`` rows. Memory beyond the features and the kNN graph is that of one call's
    rows, so a 5.21M-item graph is inferred in chunks of :data:`CHUNK_ROWS`.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : the kNN graph of the features.
    model : the dict :func:`train` returns.  context : device and threads.
    batch_size : rows per forward of the dense layers.
    """

    def __init__(self, features: np.ndarray, knn: Knn, model: dict, *, context, batch_size=65536):
        if features.shape[1] != model["in_dim"]:
            raise ValueError(
                f"gcnv model expects {model['in_dim']}-d features, got {features.shape[1]}-d"
            )
        self.device = resolve_device(context.device)
        torch.set_num_threads(max(1, int(context.threads)))
        self.net = GCNV(model["in_dim"], model["hidden"])
        self.net.load_state_dict(model["state_dict"])
        self.net.to(self.device).eval()
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.x = torch.from_numpy(self.features).to(self.device)  # shared on the CPU
        self.knn, self.th_sim, self.batch_size = knn, model["th_sim"], int(batch_size)
        self.n, self.hidden_dim = self.features.shape[0], int(model["hidden"])

    @torch.no_grad()
    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Confidences float32 (m,) and hidden features float32 (m, hidden) of the sorted,
        distinct ``rows`` (m,)."""
        rows = np.asarray(rows, dtype=np.int64)
        adj = to_torch_csr(adjacency_rows(self.knn, rows, self.th_sim), self.device)
        ax = adj @ self.x
        del adj
        x = torch.from_numpy(self.features[rows]).to(self.device)
        conf = np.empty(rows.size, dtype=np.float32)
        hidden = np.empty((rows.size, self.hidden_dim), dtype=np.float32)
        for start in range(0, rows.size, self.batch_size):
            stop = min(rows.size, start + self.batch_size)
            c, h = self.net(x[start:stop], ax[start:stop])
            conf[start:stop] = c.cpu().numpy()
            hidden[start:stop] = h.cpu().numpy()
        return conf, hidden

    def chunks(self, chunk_rows: int = CHUNK_ROWS):
        """(rows, confidences, hidden features) of consecutive row ranges covering all N
        rows, each a multiple of ``batch_size`` rows long (the last excepted), so that every
        forward sees the rows a whole-graph pass in batches would."""
        step = max(self.batch_size, chunk_rows // self.batch_size * self.batch_size)
        for start in range(0, self.n, step):
            rows = np.arange(start, min(self.n, start + step))
            yield (rows, *self(rows))


def predict(
    features: np.ndarray,
    knn: Knn,
    model: dict,
    *,
    context,
    batch_size: int = 65536,
    chunk_rows: int = CHUNK_ROWS,
    hidden: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted confidences float32 (N,) and hidden GCN features float32 (N, hidden), in
    chunks of ``chunk_rows`` (:class:`Inference`); ``hidden=False`` keeps only the
    confidences (returns None for the features)."""
    inference = Inference(features, knn, model, context=context, batch_size=batch_size)
    conf = np.empty(inference.n, dtype=np.float32)
    out = np.empty((inference.n, inference.hidden_dim), np.float32) if hidden else None
    for rows, c, h in inference.chunks(chunk_rows):
        conf[rows[0] : rows[-1] + 1] = c
        if hidden:
            out[rows[0] : rows[-1] + 1] = h
    return conf, out


#: learn-to-cluster's ``vegcn/models/gcn_v.py`` parameter names (``GCN_V``: ``conv1`` a
#: GraphConv with ``weight`` (2·in, out) and ``bias`` (out,); ``classifier`` a
#: Sequential(Linear, PReLU, Linear)) -> ours
REFERENCE_NAMES = {**graphconv_names("conv1", "conv"), **HEAD_NAMES}

#: the affinity threshold the released model was trained and tested with (cfg ``th_sim``)
REFERENCE_TH_SIM = 0.0


def load_pretrained(path: str) -> dict:
    """learn-to-cluster's released GCN-V (``pretrained_gcn_v_ms1m.pth``) as our model dict.

    The sizes come from ``conv1.weight`` (2·in_dim, hidden); every reference parameter must
    map onto ours with the right shape (``module.``/``module.base.`` prefixes are removed),
    else :class:`facecluster.io.InputError` names the offending parameters.

    Returns
    -------
    The dict :func:`train` returns (``loss`` NaN: unknown), plus ``pretrained``: ``path``.
    """
    state = load_checkpoint(path)
    in_dim, hidden = graphconv_sizes(state, path, "a GCN-V checkpoint")
    net = GCNV(in_dim, hidden)
    ours = remap(state, REFERENCE_NAMES, net.state_dict(), source=path)
    net.load_state_dict(ours)
    return {
        "family": "gcnv",
        "state_dict": ours,
        "in_dim": in_dim,
        "hidden": hidden,
        "th_sim": REFERENCE_TH_SIM,
        "loss": math.nan,
        "pretrained": str(path),
    }
