"""Periodic training checkpoints that a killed job resumes from, bit for bit.

A training job that gets ``context.checkpoint`` (a path; the task passes ``<model file>.ckpt``
and deletes it once the model is written) saves its whole training state there every few
iterations and, when it starts and finds a checkpoint of the *same* training, continues from
it. On the same device and thread count the resumed run ends with exactly the weights of an
uninterrupted one: everything the remaining iterations depend on is restored.

The file is a :func:`torch.save` of a dict of tensors and plain values (loaded with
``weights_only=True``)::

    format       "facecluster.train-checkpoint"      version  :data:`VERSION`
    fingerprint  what the training was (see :func:`fingerprint`)
    iteration    optimiser steps done (int); the loop restarts at this index
    model        the module's state_dict            optimizer / scheduler  their state_dicts
    rng          python, numpy (global), torch CPU and CUDA generator states
    extra        the family's own loop state (best weights of early stopping, a sampler's
                 generator state, ...): tensors and plain values only

It is written through :func:`facecluster.io.atomic_path`, so a kill during the write leaves
the previous checkpoint intact. A checkpoint is **ignored, with a warning, and training
starts from scratch** when

* its fingerprint differs from the current training's (other settings or other data: it
  must never be resumed silently; the warning names the differing entries), or
* it cannot be read or is not a checkpoint of this format/version (a corrupt file). Starting
  over costs only time and the next save replaces the file, whereas an error would make a
  retried job fail for good on a file nobody asked for.

Adopting it in a family (GCN-V's ``facecluster.nn.gcnv.train`` is the example)::

    fp = checkpoint.fingerprint("gcne", settings={...every setting that changes the
                                trajectory, seed included...}, arrays={"features": x, ...})
    start, extra = checkpoint.restore(context.checkpoint, fp, model, opt, sched)
    for it in range(start, total):
        ...one optimiser step (and scheduler step)...
        if checkpoint.due(it + 1, every, total) and context.checkpoint:
            checkpoint.save(context.checkpoint, fp, it + 1, model, opt, sched, extra={...})

Rules: build the model, optimiser and scheduler exactly as a fresh run does *before*
:func:`restore` (which overwrites their states and the RNGs); derive anything else from the
seed (held-out splits, ...) or keep it in ``extra``; checkpoint only at points where the
loop's state is fully (model, optimiser, scheduler, RNGs, extra) — for mini-batch training
that is an epoch boundary, or keep the sampler's ``torch.Generator.get_state()`` in
``extra``. Leave out of the fingerprint what does not change the trajectory (the checkpoint
interval, thread count, device), so a job may resume with another one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Mapping

import numpy as np
import torch

from ..io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "VERSION", "fingerprint", "due", "save", "load", "restore"]

FORMAT = "facecluster.train-checkpoint"
VERSION = 1


def _plain(value):
    """``value`` as JSON-like plain data (tuples -> lists, numpy scalars -> python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"fingerprint setting of type {type(value).__name__}: use plain values")


def _digest(array) -> str:
    """Shape, dtype and BLAKE2b digest of an array's bytes (numpy or CPU tensor)."""
    if torch.is_tensor(array):
        array = array.detach().cpu().numpy()
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(memoryview(a).cast("B"))
    return f"{a.dtype.str}{list(a.shape)}:{h.hexdigest()}"


def fingerprint(family: str, *, settings: Mapping, arrays: Mapping) -> dict:
    """What a training is, to recognise its checkpoint.

    Parameters
    ----------
    family : the family name.
    settings : every setting that changes the training trajectory (train params, seed, N...),
        plain values.
    arrays : the training data by name (features (N, D), labels (N,), the kNN arrays, a
        target, ...), numpy arrays or tensors: each is hashed (about 1 s per GB).

    Returns
    -------
    A dict of plain values; two trainings resume each other only if theirs are equal.
    """
    return {
        "family": str(family),
        "settings": _plain(settings),
        "data": {str(k): _digest(v) for k, v in sorted(arrays.items())},
    }


def due(done: int, every: int, total: int) -> bool:
    """Whether to save after ``done`` of ``total`` iterations every ``every`` (0: never);
    never after the last one (the model file follows it)."""
    return every > 0 and done % every == 0 and done < total


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    np_state = np.random.get_state(legacy=False)
    state["numpy"] = {
        "bit_generator": np_state["bit_generator"],
        "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "pos": int(np_state["state"]["pos"]),
        "has_gauss": int(np_state["has_gauss"]),
        "gauss": float(np_state["gauss"]),
    }
    return state


def _set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )


def save(
    path: str,
    fp: Mapping,
    iteration: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    *,
    extra: Mapping | None = None,
) -> None:
    """Write the training state after ``iteration`` optimiser steps to ``path`` atomically.

    ``extra`` holds the family's own loop state (tensors and plain values); tensors are
    stored on the CPU.
    """
    state = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": dict(fp),
        "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "extra": _to_cpu(dict(extra or {})),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    log.info("checkpoint: iteration %d saved to %s", iteration, path)


def _to_cpu(value):
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _differences(saved: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    """Names of the entries where two fingerprints differ."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} there, {b!r} now)")
    return out


def load(path: str | None, fp: Mapping) -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to the training ``fp``, else None.

    A missing file returns None quietly; an unreadable file, one of another format or
    version, or one of another training (fingerprint) returns None with a warning that says
    why. Tensors are loaded on the CPU.
    """
    if not path or not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt files raise several types
        log.warning("checkpoint %s is unreadable (%s): ignored, training from scratch", path, exc)
        return None
    keys = {"format", "version", "fingerprint", "iteration", "model", "rng", "extra"}
    if (
        not isinstance(state, Mapping)
        or state.get("format") != FORMAT
        or state.get("version") != VERSION
        or not keys <= set(state)
        or not isinstance(state["fingerprint"], Mapping)
    ):
        log.warning(
            "checkpoint %s is not a %s v%d file: ignored, training from scratch",
            path,
            FORMAT,
            VERSION,
        )
        return None
    diff = _differences(state["fingerprint"], fp)
    if diff:
        log.warning(
            "checkpoint %s is of another training (%s): ignored, training from scratch",
            path,
            "; ".join(diff),
        )
        return None
    return state


def restore(
    path: str | None,
    fp: Mapping,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
) -> tuple[int, dict]:
    """Resume from the checkpoint at ``path`` (see :func:`load`) if there is a valid one.

    Loads the model, optimiser and scheduler states and the RNG states in place. A
    checkpoint whose model does not fit ``model`` (missing/unexpected names, other shapes)
    is ignored with a warning before anything is changed.

    Returns
    -------
    (iteration, extra): the optimiser steps already done and the family's saved loop state
    (tensors on the CPU); ``(0, {})`` when training starts from scratch.
    """
    state = load(path, fp)
    if state is None:
        return 0, {}
    ours = model.state_dict()
    theirs = state["model"]
    bad = sorted(set(ours) ^ set(theirs)) + [
        k for k in ours if k in theirs and tuple(ours[k].shape) != tuple(theirs[k].shape)
    ]
    if bad or (optimizer is not None and state.get("optimizer") is None):
        log.warning(
            "checkpoint %s does not fit the model (%s): ignored, training from scratch",
            path,
            ", ".join(bad) or "no optimizer state",
        )
        return 0, {}
    model.load_state_dict(theirs)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    log.info("checkpoint: resuming from iteration %d of %s", state["iteration"], path)
    return int(state["iteration"]), dict(state["extra"])
