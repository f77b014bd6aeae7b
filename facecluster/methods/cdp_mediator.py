"""CDP with a committee, "mediator" strategy (Zhan et al., ECCV 2018; XiaohangZhan/cdp).

A small MLP, the *mediator*, decides which base kNN pairs join clusters, from what the base
model and a committee of C other embedding models of the same images say about the pair.

Candidate pairs are the undirected unique base kNN pairs (i, j), i != j, j != -1 (at most
N (k - 1)). Each gets a feature vector, the concatenation in the order of ``inputs`` of

* ``relationship`` (C values): for member c, 1 if j is in c's kNN list of i or i is in c's
  list of j, else 0;
* ``affinity`` (C + 1 values, base first): the cosine similarity of i and j in each model's
  feature space;
* ``structure`` (C + 1 values, base first): the raw number of common entries of the kNN
  lists of i and j in each model (``-1`` ignored, self entries counted, so 0..k and at least
  2 for a mutual pair), as the reference code computes it. The ECCV paper describes a
  "neighbour distribution" statistic instead; the code's count produced the README numbers.

With the reference's committee of 4 the input has 4 + 5 + 5 = 14 dimensions.

Training (``train``, on the labelled train split with its own base and committee kNN graphs):
the target of a pair is 1 if its two items share an identity. The mediator is
Linear(d, 3d) - ReLU - Linear(3d, 3d) - ReLU - Linear(3d, 2) trained with cross-entropy by SGD
(lr 0.001, momentum 0.9, weight decay 1e-4, batches of 1024, shuffled, 2 epochs), as the
reference. The reference's MultiStepLR (milestone 2) never changes the rate within its 2
epochs and is omitted; its DataParallel wrapper is irrelevant to the result.

Clustering (``cluster``): the probability of class 1 for every candidate pair; pairs with
probability > ``th`` (strict) are kept with that probability as their score and turned into
clusters by CDP's size-capped propagation (:func:`facecluster.graph.propagate`). Items in no
kept pair are discarded (-1).

Reference settings (k=15, max_sz=600, step=0.05, base + 4 committee members, inputs "111"):
emore_u200k th 0.9925 (pairwise F 95.79, the default here), u600k and u1.4m th 0.982; inputs
"110" (relationship + affinity): th 0.9938 / 0.985 / 0.99.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from ..graph import knn_pairs, propagate, unique_pairs
from ..io import Knn
from ..progress import Progress
from . import Cost, FamilySpec
from .cdp import PROPAGATION_PARAMS
from .cdp_vote import check_propagation, committee_from_context, knn_contains

log = logging.getLogger(__name__)

__all__ = [
    "INPUTS",
    "SPEC",
    "estimate",
    "candidate_pairs",
    "common_neighbours",
    "pair_features",
    "train",
    "predict",
    "cluster",
]

#: the pair features of the reference, in its default order
INPUTS = ("relationship", "affinity", "structure")

#: pairs per chunk of inference (bounds the temporary memory)
CHUNK = 1 << 18
#: elements (pairs x k, or pairs x D) per chunk of the feature computation: about 16 MB of
#: gathered float32 rows for the affinities, about 100 MB of sparse rows for the structure
CHUNK_ELEMENTS = 1 << 22


def _in_dim(inputs, size: int) -> int:
    return sum(size if name == "relationship" else size + 1 for name in inputs)


def estimate(
    n: int,
    dim: int,
    k: int,
    *,
    params: dict | None = None,
    train_params: dict | None = None,
    train: bool = False,
    **_,
) -> Cost:
    """Peak memory and time of training or clustering for a committee of 4 (the reference's).

    Pairs are counted at their upper bound ``P = n (k - 1)`` (synthetic data at k 15 has
    about 0.7 of that), so both numbers are ceilings. Memory: the Python process with torch
    loaded (about 350 MB), the base and committee feature sets (read, 4 bytes x dim each) and
    kNN graphs (8 bytes per entry each), the pair features (4 bytes x d per pair, d = 14 with
    all inputs) and about 150 more bytes per pair (pair indices, labels or probabilities,
    sorting and feature chunks). Time: about 2 s of start-up, the pair features (about
    2 microseconds per pair at k 15, growing with k through the sparse-row intersections),
    and, when training, 2.5 microseconds per pair per epoch for the SGD steps (one thread),
    or 0.3 microseconds per pair for inference plus the propagation. Measured with torch
    2.13 on this machine (2 cores) at 20K and 50K synthetic items, k 15.
    """
    members = 4
    train_params = train_params or {}
    pairs = max(0, n * (k - 1))
    d = _in_dim(train_params.get("inputs") or INPUTS, members)
    memory = 350e6 + n * (members + 1) * (4.0 * dim + 8.0 * k) + pairs * (4.0 * d + 150.0)
    seconds = 2.0 + pairs * 2e-6 * max(1.0, k / 15) ** 0.5
    if train:
        seconds += pairs * 2.5e-6 * int(train_params.get("epochs", 2))
    else:
        seconds += pairs * 0.3e-6 + 3e-7 * n * k
    return Cost(memory, seconds)


_INPUTS_SCHEMA = {
    "type": "array",
    "items": {"enum": list(INPUTS)},
    "minItems": 1,
    "uniqueItems": True,
}

SPEC = FamilySpec(
    summary="CDP committee mediator (Zhan et al., ECCV 2018): an MLP on committee "
    "relationship/affinity/structure features scores base kNN pairs, size-capped propagation",
    supervised=True,
    conda_env="torch",
    threads=1,
    needs=("committee",),
    params={
        "th": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.9925,
            "description": "Keep pairs whose mediator probability of a shared identity is > th; "
            "0.9925 on emore_u200k.",
        },
        "inputs": {
            **_INPUTS_SCHEMA,
            "type": ["array", "null"],
            "default": None,
            "description": "Pair features; null uses the trained model's, a list must equal the "
            "model's.",
        },
        **PROPAGATION_PARAMS,
    },
    train_params={
        "inputs": {
            **_INPUTS_SCHEMA,
            "default": list(INPUTS),
            "description": "Pair features in column order, among relationship, affinity and "
            "structure (the reference: all).",
        },
        "epochs": {
            "type": "integer",
            "minimum": 1,
            "default": 2,
            "description": "SGD epochs over the shuffled training pairs (the reference: 2).",
        },
        "lr": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.001,
            "description": "SGD learning rate (the reference: 0.001).",
        },
        "momentum": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.9,
            "description": "SGD momentum (the reference: 0.9).",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "default": 1e-4,
            "description": "SGD weight decay (the reference: 1e-4).",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 1024,
            "description": "Training pairs per SGD step (the reference: 1024).",
        },
    },
    estimate=estimate,
)


def _check_inputs(inputs) -> list[str]:
    inputs = list(inputs)
    bad = [name for name in inputs if name not in INPUTS]
    if not inputs or bad or len(set(inputs)) != len(inputs):
        raise ValueError(
            f"inputs must be a non-empty list of distinct names among {list(INPUTS)}, got {inputs}"
        )
    return inputs


def candidate_pairs(knn: Knn) -> np.ndarray:
    """The undirected unique base kNN pairs (i < j), int64 (P, 2), sorted."""
    pairs, scores = knn_pairs(knn, -np.inf, strict=False)
    return unique_pairs(pairs, scores, pool="first")[0]


def _binary_knn(knn: Knn) -> sp.csr_matrix:
    """B[i, j] = 1 for the valid entries j of i's kNN list (int8 CSR, sorted indices)."""
    valid = knn.nbrs >= 0
    indptr = np.zeros(knn.n + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    b = sp.csr_matrix(
        (np.ones(int(indptr[-1]), dtype=np.int8), knn.nbrs[valid], indptr),
        shape=(knn.n, knn.n),
    )
    b.sum_duplicates()  # sorts the indices (and would merge a repeated neighbour)
    return b


def common_neighbours(knn: Knn, pairs: np.ndarray, *, chunk: int | None = None) -> np.ndarray:
    """|kNN(i) ∩ kNN(j)| for every pair (i, j), ``-1`` entries ignored.

    Each chunk of pairs takes the rows i and j of the binary kNN matrix and multiplies them
    elementwise (a merge of two sorted lists per pair: O(k) per pair and O(chunk k) memory,
    never a P x k x k array); ``chunk`` defaults to ``CHUNK_ELEMENTS // k`` pairs.

    Returns int64 (P,).
    """
    chunk = chunk or max(1, CHUNK_ELEMENTS // knn.k)
    b = _binary_knn(knn)
    out = np.empty(pairs.shape[0], dtype=np.int64)
    for start in range(0, pairs.shape[0], chunk):
        stop = min(pairs.shape[0], start + chunk)
        both = b[pairs[start:stop, 0]].multiply(b[pairs[start:stop, 1]])
        out[start:stop] = np.asarray(both.sum(axis=1), dtype=np.int64).ravel()
    return out


def _cosine(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity of the two rows of every pair (rows need not be normalised)."""
    chunk = max(1, CHUNK_ELEMENTS // features.shape[1])
    norms = np.linalg.norm(features, axis=1).astype(np.float32)
    norms[norms == 0] = 1.0
    out = np.empty(pairs.shape[0], dtype=np.float32)
    for start in range(0, pairs.shape[0], chunk):
        i = pairs[start : start + chunk, 0]
        j = pairs[start : start + chunk, 1]
        dots = np.einsum("pd,pd->p", features[i], features[j], dtype=np.float32)
        out[start : start + chunk] = dots / (norms[i] * norms[j])
    return out


def pair_features(
    features: np.ndarray,
    knn: Knn,
    committee: list[tuple[np.ndarray, Knn]],
    pairs: np.ndarray,
    inputs=INPUTS,
) -> np.ndarray:
    """The mediator's input for every pair (see the module docstring).

    Parameters
    ----------
    features : float32 (N, D), the base model's features.
    knn : the base kNN graph.
    committee : C ``(features (N, D_c), Knn)`` members.
    pairs : int64 (P, 2).
    inputs : names among :data:`INPUTS`, in the order of their columns.

    Returns
    -------
    float32 (P, d), d = C per ``relationship`` and C + 1 per ``affinity``/``structure``.
    """
    inputs = _check_inputs(inputs)
    models = [(features, knn), *committee]
    i, j = pairs[:, 0], pairs[:, 1]
    columns = []
    for name in inputs:
        if name == "relationship":
            for _, mknn in committee:
                columns.append(knn_contains(mknn, i, j) | knn_contains(mknn, j, i))
        elif name == "affinity":
            for feats, _ in models:
                columns.append(_cosine(feats, pairs))
        else:
            for _, mknn in models:
                columns.append(common_neighbours(mknn, pairs))
    out = np.empty((pairs.shape[0], len(columns)), dtype=np.float32)
    for c, col in enumerate(columns):
        out[:, c] = col
    return out


def _mediator_net(d: int):
    from torch import nn

    return nn.Sequential(
        nn.Linear(d, 3 * d), nn.ReLU(), nn.Linear(3 * d, 3 * d), nn.ReLU(), nn.Linear(3 * d, 2)
    )


class _Threads:
    """Set torch's intra-op threads for a block and restore them after."""

    def __init__(self, torch, threads: int):
        self.torch, self.threads = torch, max(1, int(threads))

    def __enter__(self):
        self.saved = self.torch.get_num_threads()
        self.torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        self.torch.set_num_threads(self.saved)


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    inputs=INPUTS,
    epochs: int = 2,
    lr: float = 0.001,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
) -> dict:
    """Train the mediator on a labelled split.

    Parameters
    ----------
    features : float32 (N, D), the base features of the labelled split.
    labels : int (N,) identities.
    knn : the base kNN graph of the split.
    context : :class:`facecluster.methods.Context`: ``extra["committee"]`` holds the
        committee's ``(features, Knn)`` of the same split; ``seed`` seeds the initial weights
        (``torch.manual_seed``) and the shuffling (a ``torch.Generator``); ``device`` as in
        :func:`facecluster.nn.resolve_device` (on the CPU the result is deterministic). Torch
        runs on one thread (the MLP is too small to gain from more).
    inputs : pair features (see :data:`INPUTS`), in column order.
    epochs, lr, momentum, weight_decay, batch_size : SGD settings (the reference's defaults).

    Returns
    -------
    model : dict with ``state_dict`` (CPU tensors of the MLP), ``in_dim``, ``inputs``,
        ``committee_size``, ``k`` (the base kNN's), ``final_loss`` (mean cross-entropy of the
        last epoch), ``pairs`` and ``positive_fraction`` of the training pairs.
    """
    import torch

    from ..nn import resolve_device

    inputs = _check_inputs(inputs)
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= momentum <= 1 or weight_decay < 0:
        raise ValueError(
            f"momentum must be in [0, 1] and weight_decay >= 0, got {momentum}, {weight_decay}"
        )
    labels = np.asarray(labels)
    if labels.shape != (knn.n,):
        raise ValueError(f"labels must have shape ({knn.n},), got {labels.shape}")
    committee = committee_from_context(context, knn.n)
    t0 = time.perf_counter()
    pairs = candidate_pairs(knn)
    if pairs.shape[0] == 0:
        raise ValueError("the kNN graph has no pair to train the mediator on")
    x = pair_features(features, knn, committee, pairs, inputs)
    y = (labels[pairs[:, 0]] == labels[pairs[:, 1]]).astype(np.int64)
    log.info(
        "mediator: %d training pairs (%.1f %% positive), %d inputs, features in %.1f s",
        y.size,
        100.0 * y.mean(),
        x.shape[1],
        time.perf_counter() - t0,
    )
    device = resolve_device(context.device)
    # one thread: the MLP is far too small for intra-op threads (on this 2-core machine a
    # batch takes about 1 ms with one thread and 9-14 ms with two)
    with _Threads(torch, 1):
        torch.manual_seed(int(context.seed))
        net = _mediator_net(x.shape[1]).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(int(context.seed))
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(y)
        n_batches = (y.size + batch_size - 1) // batch_size
        progress = Progress(epochs * n_batches, "mediator training", unit="batches", logger=log)
        net.train()
        for epoch in range(int(epochs)):
            order = torch.randperm(y.size, generator=gen)
            total = torch.zeros((), dtype=torch.float64)
            for b in range(n_batches):
                idx = order[b * batch_size : (b + 1) * batch_size]
                xb, yb = xt[idx].to(device), yt[idx].to(device)
                loss = loss_fn(net(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.detach().cpu().double() * idx.numel()
                progress.update(1)
            final_loss = float(total) / y.size
            log.info("mediator epoch %d: mean loss %.5f", epoch + 1, final_loss)
        progress.close()
    return {
        "state_dict": {name: t.detach().cpu().clone() for name, t in net.state_dict().items()},
        "in_dim": int(x.shape[1]),
        "inputs": inputs,
        "committee_size": len(committee),
        "k": knn.k,
        "final_loss": final_loss,
        "pairs": int(y.size),
        "positive_fraction": float(y.mean()),
    }


def _check_model(model, size: int, inputs) -> list[str]:
    if not isinstance(model, dict) or "state_dict" not in model:
        raise ValueError("cdp_mediator needs a trained model (the dict returned by train)")
    if model["committee_size"] != size:
        raise ValueError(
            f"the mediator was trained with a committee of {model['committee_size']} members, "
            f"but this call's committee has {size}"
        )
    if inputs is not None and list(inputs) != list(model["inputs"]):
        raise ValueError(
            f"inputs {list(inputs)} do not match the inputs the mediator was trained with, "
            f"{list(model['inputs'])}"
        )
    if model["in_dim"] != _in_dim(model["inputs"], size):
        raise ValueError(
            f"the mediator's input dimension {model['in_dim']} does not fit inputs "
            f"{list(model['inputs'])} with {size} committee members"
        )
    return list(model["inputs"])


def predict(
    features: np.ndarray, knn: Knn, *, context, model: dict, inputs=None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs int64 (P, 2) and their probability of sharing an identity, float32 (P,).

    Raises ``ValueError`` if the model's committee size or inputs differ from this call's.
    """
    import torch

    from ..nn import resolve_device

    committee = committee_from_context(context, knn.n)
    inputs = _check_model(model, len(committee), inputs)
    if model.get("k") is not None and model["k"] != knn.k:
        log.warning(
            "the mediator was trained on a k=%d kNN graph and is applied to k=%d; its "
            "structure inputs (common-neighbour counts) scale with k",
            model["k"],
            knn.k,
        )
    pairs = candidate_pairs(knn)
    x = pair_features(features, knn, committee, pairs, inputs)
    device = resolve_device(context.device)
    prob = np.empty(pairs.shape[0], dtype=np.float32)
    with _Threads(torch, 1), torch.no_grad():
        net = _mediator_net(model["in_dim"])
        net.load_state_dict(model["state_dict"])
        net.to(device).eval()
        for start in range(0, pairs.shape[0], CHUNK):
            xb = torch.from_numpy(x[start : start + CHUNK]).to(device)
            prob[start : start + CHUNK] = torch.softmax(net(xb), dim=1)[:, 1].cpu().numpy()
    return pairs, prob


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context=None,
    model: dict | None = None,
    th: float = 0.9925,
    inputs=None,
    max_sz: int = 600,
    step: float = 0.05,
    max_iter: int = 100,
) -> np.ndarray:
    """Cluster with the trained mediator and CDP's size-capped propagation.

    Parameters
    ----------
    features : float32 (N, D), the base features.
    knn : the base kNN graph over the N items.
    context : :class:`facecluster.methods.Context` with ``extra["committee"]`` (the same
        number of members, in the same order, as in training).
    model : the dict returned by :func:`train`.
    th : keep pairs whose probability of sharing an identity is > th (strict).
    inputs : ``None`` uses the model's; a list must equal the model's.
    max_sz, step, max_iter : CDP's propagation (see :func:`facecluster.graph.propagate`).

    Returns
    -------
    labels : int64 (N,), -1 for discarded items.
    """
    if model is None:
        raise ValueError("cdp_mediator is supervised: cluster needs the model from train")
    if not 0.0 <= th <= 1.0:
        raise ValueError(f"th must be in [0, 1], got {th}")
    check_propagation(max_sz, step, max_iter)
    if inputs is not None:
        inputs = _check_inputs(inputs)
    pairs, prob = predict(features, knn, context=context, model=model, inputs=inputs)
    keep = prob > th
    log.info(
        "cdp mediator: %d of %d candidate pairs with P(same) > %.4f", keep.sum(), keep.size, th
    )
    return propagate(knn.n, pairs[keep], prob[keep], max_sz=max_sz, step=step, max_iter=max_iter)
