"""Shared torch building blocks: devices, seeding, sparse matrices, the concat+mean GraphConv."""

from __future__ import annotations

import logging
import random
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "GraphConv",
    "resolve_device",
    "seed_everything",
    "to_torch_csr",
    "aggregate",
    "milestone_steps",
]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``/``"cuda"`` force one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed python, numpy and torch; make CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is None or device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def milestone_steps(fractions, total: int) -> list[int]:
    """Fractions of ``total`` scheduler steps (epochs or iterations) as the step numbers
    (>= 1, sorted, distinct) where ``MultiStepLR`` multiplies the rate by its gamma."""
    return sorted({max(1, int(round(float(f) * total))) for f in fractions})


def to_torch_csr(a: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """A scipy CSR matrix (float32) as a torch sparse CSR tensor on ``device``."""
    a = a.tocsr()
    index_dtype = torch.int32 if a.nnz < 2**31 - 1 and a.shape[0] < 2**31 - 1 else torch.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        t = torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)).to(index_dtype),
            torch.from_numpy(a.indices.astype(np.int64)).to(index_dtype),
            torch.from_numpy(a.data.astype(np.float32)),
            size=a.shape,
            check_invariants=False,  # scipy's CSR is valid by construction
        )
    return t.to(device)


def aggregate(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean aggregation A·X for a row-normalised A: sparse 2-D (N, N) or dense (B, n, n)."""
    if adj.is_sparse or adj.layout == torch.sparse_csr:
        return adj @ x
    return torch.bmm(adj, x)


class GraphConv(nn.Module):
    """learn-to-cluster's GraphConv with mean aggregation: h = ReLU([X ‖ AX] W + b).

    W has shape (2·in_dim, out_dim), Xavier-uniform initialised; b starts at 0. Dropout (after
    the ReLU) is applied when ``dropout > 0``.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(2 * in_dim, out_dim)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def combine(self, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """The layer given a precomputed aggregation ``ax`` = A·X (same shape as ``x``)."""
        return self.dropout(torch.relu(self.linear(torch.cat([x, ax], dim=-1))))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.combine(x, aggregate(adj, x))
