"""Method families and their registry.

A family module exposes

* ``SUPERVISED: bool``;
* ``GPU: bool``: its rules request a GPU (``gpu: 1``) and use CUDA when present;
* ``CONDA_ENV: str``: the env of its rules, ``envs/<CONDA_ENV>.yaml``;
* ``memory_bytes(n, dim, k, *, train=False, **params) -> int``: peak memory of training
  (``train=True``) or clustering ``n`` items, for the rules' ``mem_mb`` requests;
* ``cluster(features, knn, *, context, model=None, **params) -> labels`` with ``features``
  float32 (N, D) L2-normalised, ``knn`` a :class:`facecluster.io.Knn`, and labels int64 (N,)
  where ``-1`` marks items the method discards (they become singletons before scoring);
* if supervised, ``train(features, labels, knn, *, context, **params) -> model`` returning a
  dict of plain values and tensors that :func:`torch.save` can store.

Method *variants* (``gcnv``, ``cdp``, later ``gcnd_20``...) are named entries of the config
with a ``family`` key; the family name is a key of :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

__all__ = ["FAMILIES", "Context", "get_family"]

#: family name -> module path; modules are imported on first use (torch is heavy)
FAMILIES: dict[str, str] = {
    "cdp": "facecluster.methods.cdp",
    "gcnv": "facecluster.methods.gcnv",
}


@dataclass(frozen=True)
class Context:
    """Run-time settings a method may need besides its parameters.

    Attributes
    ----------
    seed : seeds every random choice of the method.
    threads : CPU threads the job may use.
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    knn_backend : the kNN backend spec (``index`` plus its parameters) of the method, for
        methods that build further kNN graphs (GCN-V on its hidden features).
    """

    seed: int = 0
    threads: int = 1
    device: str = "auto"
    knn_backend: dict = field(default_factory=lambda: {"index": "flat"})


def get_family(name: str) -> ModuleType:
    """The module of method family ``name``; ``KeyError`` naming the known families."""
    try:
        path = FAMILIES[name]
    except KeyError:
        raise KeyError(
            f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}"
        ) from None
    return importlib.import_module(path)
