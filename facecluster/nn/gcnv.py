"""GCN-V's torch parts: the model, full-batch training and batched inference.

The family module :mod:`facecluster.methods.gcnv` (light: no torch at import) calls these.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ..graph import symmetric_normalized_adjacency
from ..io import Knn
from ..methods.gcnv import s_nbr_confidence
from . import GraphConv, resolve_device, seed_everything, to_torch_csr

log = logging.getLogger(__name__)

__all__ = ["GCNV", "train", "predict"]


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
) -> dict:
    """Train GCN-V full-batch on one labelled graph.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  labels : int (N,) identities.
    knn : kNN graph of the features (the same backend and k as at test time).
    hidden : GCN hidden size (512 in the reference).
    epochs : full-batch iterations (80,000 for MS1M in the reference).
    lr, momentum, weight_decay : SGD settings (0.1, 0.9, 1e-5 in the reference).
    milestones : fractions of ``epochs`` where the learning rate is multiplied by 0.1
        (the reference's [40000, 64000, 72000] of 80,000).
    th_sim : affinity threshold of the graph.

    Returns
    -------
    A dict with ``state_dict``, ``in_dim``, ``hidden``, ``th_sim`` and the final ``loss``.
    """
    device = resolve_device(context.device)
    seed_everything(context.seed, device)
    torch.set_num_threads(max(1, int(context.threads)))
    target = torch.from_numpy(s_nbr_confidence(knn, labels)).to(device)
    x, ax = _aggregated(features, knn, th_sim, device)
    model = GCNV(features.shape[1], hidden).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = sorted({max(1, int(round(f * epochs))) for f in milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
    loss_fn = nn.MSELoss()
    t0 = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for epoch in range(epochs):
        opt.zero_grad(set_to_none=True)
        pred, _ = model(x, ax)
        loss = loss_fn(pred, target)
        loss.backward()
        opt.step()
        sched.step()
        if epoch % max(1, epochs // 20) == 0 or epoch == epochs - 1:
            log.info("gcnv train: epoch %d/%d loss %.6f", epoch + 1, epochs, loss.item())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"gcnv training diverged at epoch {epoch + 1} (loss {loss})")
    log.info("gcnv train: %d epochs in %.1f s", epochs, time.perf_counter() - t0)
    return {
        "family": "gcnv",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "in_dim": int(features.shape[1]),
        "hidden": int(hidden),
        "th_sim": float(th_sim),
        "loss": float(loss.item()),
    }


@torch.no_grad()
def predict(
    features: np.ndarray, knn: Knn, model: dict, *, context, batch_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted confidences float32 (N,) and hidden GCN features float32 (N, hidden)."""
    device = resolve_device(context.device)
    torch.set_num_threads(max(1, int(context.threads)))
    if features.shape[1] != model["in_dim"]:
        raise ValueError(
            f"gcnv model expects {model['in_dim']}-d features, got {features.shape[1]}-d"
        )
    net = GCNV(model["in_dim"], model["hidden"])
    net.load_state_dict(model["state_dict"])
    net.to(device).eval()
    x, ax = _aggregated(features, knn, model["th_sim"], device)
    n = features.shape[0]
    conf = np.empty(n, dtype=np.float32)
    hidden = np.empty((n, model["hidden"]), dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        c, h = net(x[start:stop], ax[start:stop])
        conf[start:stop] = c.cpu().numpy()
        hidden[start:stop] = h.cpu().numpy()
    return conf, hidden
