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

__all__ = ["PREFIXES", "load_checkpoint", "strip_prefixes", "remap"]

#: prefixes removed from reference parameter names, longest first
PREFIXES = ("module.base.", "module.", "base.")


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
