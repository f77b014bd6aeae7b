"""Released weights (learn-to-cluster's model zoo) mapped onto our modules.

The reference checkpoints are ``torch.save`` files of a dict with ``state_dict`` (mmcv) or a
bare state dict, with parameter names of the reference modules, sometimes prefixed by
``module.`` (``DataParallel``) or a stray ``module.base.`` (learn-to-cluster issue #35).
Each family maps the reference names onto its own with :func:`remap`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..io import InputError

__all__ = [
    "PREFIXES",
    "HEAD_NAMES",
    "load_checkpoint",
    "strip_prefixes",
    "transposed",
    "graphconv_names",
    "graphconv_sizes",
    "remap",
]

#: prefixes removed from reference parameter names, longest first
PREFIXES = ("module.base.", "module.", "base.")

#: the reference heads ``classifier`` = Sequential(Linear, PReLU, Linear) -> our ``head``
HEAD_NAMES = {
    "classifier.0.weight": "head.0.weight",
    "classifier.0.bias": "head.0.bias",
    "classifier.1.weight": "head.1.weight",
    "classifier.2.weight": "head.2.weight",
    "classifier.2.bias": "head.2.bias",
}


def load_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict of a released checkpoint (the ``state_dict`` entry if there is one)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise several types
        raise InputError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise InputError(f"{path}: no state dict of tensors in the checkpoint")
    return dict(ckpt)


def strip_prefixes(name: str) -> str:
    """``name`` without one of :data:`PREFIXES`."""
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def transposed(weight: torch.Tensor) -> torch.Tensor:
    """The reference GraphConv's (2·in, out) weight as nn.Linear's (out, 2·in)."""
    return weight.t().contiguous()


def graphconv_names(ref: str, ours: str) -> dict:
    """The names of a learn-to-cluster GraphConv ``ref`` (``weight`` (2·in, out), ``bias``)
    -> those of our :class:`facecluster.nn.GraphConv` ``ours`` (``linear``)."""
    return {
        f"{ref}.weight": (f"{ours}.linear.weight", transposed),
        f"{ref}.bias": f"{ours}.linear.bias",
    }


def graphconv_sizes(state: Mapping[str, torch.Tensor], source: str, what: str) -> tuple[int, int]:
    """(in_dim, out_dim) of the first GraphConv ``conv1`` of a reference checkpoint; an
    :class:`InputError` naming ``source`` and ``what`` it should be when it has none of
    shape (2·in_dim, out_dim)."""
    conv = {strip_prefixes(k): v for k, v in state.items()}.get("conv1.weight")
    if conv is None or conv.ndim != 2 or conv.shape[0] % 2:
        shape = None if conv is None else tuple(conv.shape)
        raise InputError(
            f"{source}: {what} needs conv1.weight of shape (2*in_dim, hidden), found {shape}"
        )
    return int(conv.shape[0]) // 2, int(conv.shape[1])


def remap(
    state: Mapping[str, torch.Tensor],
    mapping: Mapping[str, str | tuple[str, Callable[[torch.Tensor], torch.Tensor]]],
    expected: Mapping[str, torch.Tensor],
    *,
    source: str,
) -> dict[str, torch.Tensor]:
    """Rename the reference parameters ``state`` onto our module's names.

    Parameters
    ----------
    state : the reference state dict (prefixes of :data:`PREFIXES` are removed first).
    mapping : reference name -> our name, or (our name, transform) where the tensor needs
        a transform (a GraphConv weight stored (in, out) where ``nn.Linear`` keeps (out, in)).
    expected : our module's ``state_dict()``: every one of its entries must be filled, with
        the same shape.
    source : the checkpoint's path, for error messages.

    Returns
    -------
    Our state dict. :class:`InputError` names every reference parameter that does not map,
    every one of ours that stays unfilled, and every shape that differs.
    """
    out: dict[str, torch.Tensor] = {}
    unmapped, shapes = [], []
    for name, value in state.items():
        ref = strip_prefixes(name)
        if ref not in mapping:
            unmapped.append(name)
            continue
        target = mapping[ref]
        fn = None
        if isinstance(target, tuple):
            target, fn = target
        value = fn(value) if fn is not None else value
        if target in expected and tuple(expected[target].shape) != tuple(value.shape):
            shapes.append(
                f"{name}: {tuple(value.shape)} -> {target} {tuple(expected[target].shape)}"
            )
            continue
        out[target] = value.detach().clone().float()
    missing = [name for name in expected if name not in out]
    problems = []
    if unmapped:
        problems.append("parameters that do not map: " + ", ".join(unmapped))
    if shapes:
        problems.append("shapes that differ: " + "; ".join(shapes))
    if missing:
        problems.append("our parameters left unfilled: " + ", ".join(missing))
    if problems:
        raise InputError(f"{source}: " + "; ".join(problems))
    return out
