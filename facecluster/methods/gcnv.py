"""GCN-V (Yang et al., CVPR 2020): vertex confidence estimation, then peak linking.

Training (``train``): on the labelled train split, the target confidence of node i is
learn-to-cluster's ``s_nbr``: the sum over its kNN (self included) of +sim for neighbours of
its own identity and -sim for the others, divided by the global max |c| (the paper divides by
|N_i|; the reference code, which produced the published numbers, uses the global max). The
model is one concat+mean GraphConv (D -> hidden, ReLU) on the kNN affinity
max(A, A^T) + I, row-normalised, followed by Linear -> PReLU -> Linear(1), regressed with
MSE by full-batch SGD.

Because the model has a single graph convolution without dropout, A·X is the same at every
step: it is computed once and training is a dense MLP on [X ‖ A·X], which is exactly the
reference computation at a fraction of its cost.

Clustering (``cluster``): predict confidences c' for all nodes; link every node to its nearest
kNN neighbour of strictly higher confidence; keep links with similarity > tau_0 and take
connected components. With ``use_gcn_feat`` (the published configuration) the kNN graph is
rebuilt on the L2-normalised hidden GCN features and the linking repeated with ``tau``; that
is the final output.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ..graph import components, symmetric_normalized_adjacency
from ..io import Knn
from ..knn import build_knn_from_spec
from ..nn import GraphConv, resolve_device, seed_everything, to_torch_csr

log = logging.getLogger(__name__)

SUPERVISED = True
#: the conda env (envs/<name>.yaml) of its rules
CONDA_ENV = "torch"
#: training and inference run on CUDA when present (``device: auto``)
GPU = True


def memory_bytes(n: int, dim: int, k: int, *, train: bool = False, hidden: int = 512, **_) -> int:
    """Peak bytes of training or clustering on ``n`` items (host memory; on a GPU the same
    tensors live in device memory): X and A·X (N x D each), their concatenation, the hidden
    features (N x hidden, with gradients when training), the kNN graph and the CSR adjacency
    with its transpose (about 24 bytes per edge), and, for clustering, the kNN graph rebuilt
    on the hidden features."""
    per_item = 4 * (4 * dim + (4 if train else 2) * hidden) + 24 * k
    if not train:
        per_item += 8 * k  # the second kNN graph (GCN features)
    return int(n * per_item)


__all__ = [
    "GCNV",
    "s_nbr_confidence",
    "confidence_to_peaks",
    "peaks_to_labels",
    "train",
    "predict",
    "cluster",
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


def s_nbr_confidence(knn: Knn, labels: np.ndarray) -> np.ndarray:
    """Ground-truth confidence ``s_nbr`` (N,) float32 in [-1, 1] (see module docstring)."""
    valid = knn.nbrs >= 0
    nb = np.where(valid, knn.nbrs, 0)
    same = labels[nb] == labels[:, None]
    signed = np.where(same, knn.sims, -knn.sims) * valid
    conf = signed.sum(axis=1, dtype=np.float64)
    scale = np.abs(conf).max()
    return (conf / (scale if scale > 0 else 1.0)).astype(np.float32)


def confidence_to_peaks(
    knn: Knn, conf: np.ndarray, *, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Each node's nearest kNN neighbour of strictly higher confidence.

    Parameters
    ----------
    knn : rows sorted by descending similarity (= ascending distance).
    conf : float (N,) confidences.
    chunk : rows processed at once (bounds memory to O(chunk * k)).

    Returns
    -------
    peaks : int64 (N,), -1 where no neighbour has higher confidence (a root).
    peak_sims : float32 (N,), the similarity to the peak (-inf for roots).
    """
    n = knn.n
    peaks = np.full(n, -1, dtype=np.int64)
    peak_sims = np.full(n, -np.inf, dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        nb = knn.nbrs[start:stop]
        valid = nb >= 0
        nbc = np.where(valid, nb, 0)
        rows = np.arange(start, stop)
        higher = valid & (nb != rows[:, None]) & (conf[nbc] > conf[rows][:, None])
        has = higher.any(axis=1)
        first = higher.argmax(axis=1)
        r = np.flatnonzero(has)
        peaks[start + r] = nb[r, first[r]]
        peak_sims[start + r] = knn.sims[start:stop][r, first[r]]
    return peaks, peak_sims


def peaks_to_labels(peaks: np.ndarray, peak_sims: np.ndarray, tau: float) -> np.ndarray:
    """Connected components (N,) int64 of the links i -> peak(i) with similarity > tau."""
    keep = (peaks >= 0) & (peak_sims > tau)
    src = np.flatnonzero(keep)
    return components(peaks.size, src, peaks[keep])


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


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    tau_0: float = 0.65,
    tau: float = 0.8,
    use_gcn_feat: bool = True,
) -> np.ndarray:
    """Cluster with a trained GCN-V.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : kNN graph of the features.
    model : the dict returned by :func:`train`.
    tau_0 : similarity cut of peak links on the feature kNN (0.65 on MS1M).
    tau : cut on the kNN rebuilt on GCN features (0.8 on MS1M).
    use_gcn_feat : rebuild the kNN on the hidden features (the published setting).

    Returns
    -------
    labels : int64 (N,), every node in a cluster (roots and unlinked nodes as singletons).
    """
    conf, hidden = predict(features, knn, model, context=context)
    peaks, peak_sims = confidence_to_peaks(knn, conf)
    labels = peaks_to_labels(peaks, peak_sims, tau_0)
    log.info("gcnv: %d clusters at tau_0=%.3f", np.unique(labels).size, tau_0)
    if not use_gcn_feat:
        return labels
    # ReLU can zero a whole row: keep such rows at zero instead of dividing by 0
    hidden /= np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
    gknn = build_knn_from_spec(
        hidden,
        knn.k,
        context.knn_backend,
        threads=context.threads,
        seed=context.seed,
        source="gcnv hidden features",
    )
    del hidden
    peaks, peak_sims = confidence_to_peaks(gknn, conf)
    labels = peaks_to_labels(peaks, peak_sims, tau)
    log.info("gcnv: %d clusters at tau=%.3f on GCN features", np.unique(labels).size, tau)
    return labels
