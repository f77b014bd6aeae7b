"""GCN-V (Yang et al., CVPR 2020): vertex confidence estimation, then peak linking.

Training (``train``): on the labelled train split, the target confidence of node i is
learn-to-cluster's ``s_nbr``: the sum over its kNN (self included) of +sim for neighbours of
its own identity and -sim for the others, divided by the global max |c| (the paper divides by
|N_i|; the reference code, which produced the published numbers, uses the global max). The
model is one concat+mean GraphConv (D -> hidden, ReLU) on the kNN affinity
max(A, A^T) + I, row-normalised, followed by Linear -> PReLU -> Linear(1), regressed with
MSE by full-batch SGD. With ``context.checkpoint`` set, training saves its state every
``checkpoint_every`` iterations and a killed job resumes from it, bit-identically on the same
device (:mod:`facecluster.nn.checkpoint`). ``val_fraction`` > 0 adds early stopping on a
held-out share of the train identities (not in the reference, off by default).
:func:`load_pretrained` reads learn-to-cluster's released ``pretrained_gcn_v_ms1m.pth``.

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

import numpy as np

from ..graph import components
from ..io import InputError, Knn
from ..knn import ComputedRows, build_knn_from_spec
from . import Clustering, Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "s_nbr_confidence",
    "confidence_to_peaks",
    "peaks_to_labels",
    "train",
    "predict",
    "gcn_features",
    "infer",
    "load_pretrained",
    "cluster",
]

#: sustained fp32 rates of the dense layers and the kNN on the hidden features: faiss'
#: exact search measures about 100 GFLOP/s per core here (platform-notes.md); 30 % of it
#: leaves room for the top-k selection, the linking and a busy machine (the default run
#: measured GCN-V's cluster job at 10.8 s on 27,601 items; this estimate says 14 s)
CPU_FLOPS_PER_THREAD = 3e10
GPU_FLOPS = 5e12

#: rows whose A·X and GCN outputs are computed at once in inference
#: (:class:`facecluster.nn.gcnv.Inference`): at k 80, D 256 and hidden 512, about 2.5 GB of
#: temporaries, whatever N (:func:`estimate`)
CHUNK_ROWS = 262144


def estimate(
    n, dim, k, *, params, train_params, train, threads, gpu=False, knn_backend=None
) -> Cost:
    """Peak memory and wall time of training (``train=True``, ``train_params["epochs"]``
    full-batch iterations) or clustering ``n`` items.

    Training (host; on a GPU the same tensors live in device memory): X and A·X (N x D
    each), their concatenation, the hidden features (N x hidden, with gradients), the kNN
    graph and the CSR adjacency with its transpose (about 24 bytes per edge); early stopping
    (``val_fraction`` > 0) adds copies of the held-out rows of X and A·X and a weight per
    node. Time: forward + backward (3 forwards) of the dense layers per iteration for all
    ``epochs`` (early stopping may end sooner: an upper bound), plus one forward of the
    held-out rows every ``eval_every`` iterations and after the last.

    Clustering, in chunks (:class:`facecluster.nn.gcnv.Inference`): the features, the kNN
    graph, the confidences, one chunk's temporaries (its adjacency rows and their scipy
    copies, about 40 bytes a kNN entry; X, A·X and the hidden activations; the scan of 2^20
    kNN rows for the reverse edges, 3 bytes an entry), and with
    ``use_gcn_feat`` the index on the hidden features (2 or 4 bytes a value, by
    ``gcn_feat_storage``) and its kNN graph. Time: three passes of the dense layers (four
    when the backend samples rows: IVF training, a recall target) and the kNN on the
    hidden features with ``knn_backend`` (exact when None:
    :func:`facecluster.resources.knn_cost`), at 30 GFLOP/s per thread (5 TFLOP/s on a GPU).
    """
    from ..resources import knn_visits

    hidden = train_params.get("hidden", 512)
    rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
    layers = 2.0 * n * (2 * dim + 2 * hidden) * hidden
    if train:
        per_item = 4 * (4 * dim + 4 * hidden) + 24 * k
        epochs = train_params["epochs"]
        seconds = epochs * 3 * layers / rate
        val_fraction = train_params.get("val_fraction", 0.0)
        if val_fraction > 0:
            evaluations = epochs // train_params.get("eval_every", 100) + 1
            seconds += evaluations * val_fraction * layers / rate
            per_item += 4 * (1 + 2 * dim * val_fraction)
        return Cost(n * per_item, seconds)
    backend = dict(knn_backend or {"index": "flat"})
    chunk = min(n, CHUNK_ROWS) * (40 * k + 8 * dim + 8 * hidden) + 3 * k * min(n, 2**20)
    memory = n * (4 * dim + 8 * k + 4) + chunk
    seconds = layers / rate
    if params.get("use_gcn_feat", True):
        index = backend.get("index", "flat")
        width = 2 if params.get("gcn_feat_storage", "float32") == "float16" else 4
        links = 8 * backend.get("M", 32) if index == "hnsw" else 0
        memory += n * (width * hidden + 8 * k + links)
        sampled = index == "ivf" or backend.get("recall_target")
        seconds += (3 if sampled else 2) * layers / rate
        seconds += 2.0 * n * hidden * knn_visits(n, index, backend) / rate
    return Cost(memory, seconds)


SPEC = FamilySpec(
    summary="GCN-V (Yang et al., CVPR 2020): GCN vertex confidence, peak linking at tau_0, "
    "then at tau on a kNN of the GCN features",
    thresholds={"tau_0": "similarity"},
    supervised=True,
    gpu=True,
    conda_env="torch",
    threads=16,
    params={
        "tau_0": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.65,
            "description": "Similarity cut of peak links on the feature kNN.",
        },
        "tau": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.8,
            "description": "Cut of peak links on the kNN rebuilt on the GCN features.",
        },
        "use_gcn_feat": {
            "type": "boolean",
            "default": True,
            "description": "Rebuild the kNN on the GCN features and relink with tau (the "
            "published output); false stops after tau_0.",
        },
        "gcn_feat_storage": {
            "type": "string",
            "enum": ["float32", "float16"],
            "default": "float32",
            "description": "How the kNN index on the GCN features stores them: float16 "
            "halves it (5.3 GB instead of 10.7 at 5.21M items x 512); the similarities are "
            "then those of the rounded features.",
        },
    },
    train_params={
        "hidden": {
            "type": "integer",
            "minimum": 1,
            "default": 512,
            "description": "GCN hidden size.",
        },
        "epochs": {
            "type": "integer",
            "minimum": 1,
            "default": 80000,
            "description": "Full-batch SGD iterations (the reference: 80,000 on MS1M).",
        },
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1, "description": "SGD rate."},
        "momentum": {
            "type": "number",
            "minimum": 0,
            "default": 0.9,
            "description": "SGD momentum.",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "default": 1.0e-5,
            "description": "SGD weight decay.",
        },
        "milestones": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "default": [0.5, 0.8, 0.9],
            "description": "Fractions of epochs where the rate is multiplied by 0.1.",
        },
        "th_sim": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "default": 0.0,
            "description": "Affinity threshold of the GCN's kNN graph (stored with the model).",
        },
        "checkpoint_every": {
            "type": "integer",
            "minimum": 0,
            "default": 5000,
            "description": "Iterations between training checkpoints a killed job resumes "
            "from (the reference: 5000 on MS1M, 1000 on DeepFashion); 0: never.",
        },
        "val_fraction": {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.0,
            "description": "Early stopping (not in the reference): share of the train "
            "identities held out of the loss (seeded; the graph stays whole) whose MSE "
            "picks the returned weights; 0: off.",
        },
        "patience": {
            "type": "integer",
            "minimum": 1,
            "default": 5,
            "description": "Early stopping: validation evaluations without a lower MSE "
            "before training stops.",
        },
        "eval_every": {
            "type": "integer",
            "minimum": 1,
            "default": 100,
            "description": "Early stopping: iterations between validation evaluations.",
        },
    },
    estimate=estimate,
)


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


def train(features: np.ndarray, labels: np.ndarray, knn: Knn, *, context, **train_params) -> dict:
    """Train GCN-V on a labelled split: :func:`facecluster.nn.gcnv.train`."""
    from ..nn import gcnv as impl

    return impl.train(features, labels, knn, context=context, **train_params)


def predict(features: np.ndarray, knn: Knn, model: dict, *, context, **kwargs):
    """Predicted confidences and hidden features, in chunks of rows:
    :func:`facecluster.nn.gcnv.predict` (``batch_size``, ``chunk_rows``, ``hidden``)."""
    from ..nn import gcnv as impl

    return impl.predict(features, knn, model, context=context, **kwargs)


def gcn_features(features: np.ndarray, knn: Knn, model: dict, *, context) -> ComputedRows:
    """GCN-V's L2-normalised hidden features as rows computed on demand (for the kNN on
    them): float32 (N, hidden), never all in memory at once. ReLU can zero a whole row:
    such rows stay zero instead of being divided by 0."""
    from ..nn import gcnv as impl

    inference = impl.Inference(features, knn, model, context=context)

    def compute(rows: np.ndarray) -> np.ndarray:
        hidden = inference(rows)[1]
        hidden /= np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
        return hidden

    return ComputedRows(inference.n, inference.hidden_dim, compute, chunk_rows=CHUNK_ROWS)


def load_pretrained(paths: dict[str, str]) -> dict:
    """learn-to-cluster's released GCN-V weights as the model dict :func:`train` returns.

    Parameters
    ----------
    paths : ``{"model": "pretrained_gcn_v_ms1m.pth"}`` (MODEL_ZOO; reference parameter names
        of ``vegcn/models/gcn_v.py`` are mapped onto ours by
        :func:`facecluster.nn.gcnv.load_pretrained`).
    """
    if "model" not in paths:
        raise InputError(f"gcnv released weights: paths needs a 'model' entry, got {sorted(paths)}")
    from ..nn import gcnv as impl

    return impl.load_pretrained(paths["model"])


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    tau_0: float = 0.65,
    tau: float = 0.8,
    use_gcn_feat: bool = True,
    gcn_feat_storage: str = "float32",
) -> np.ndarray:
    """Cluster with a trained GCN-V.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : kNN graph of the features.
    model : the dict returned by :func:`train`.
    tau_0 : similarity cut of peak links on the feature kNN (0.65 on MS1M).
    tau : cut on the kNN rebuilt on GCN features (0.8 on MS1M).
    use_gcn_feat : rebuild the kNN on the hidden features (the published setting).
    gcn_feat_storage : ``"float32"`` or ``"float16"``: how that kNN's index stores them.

    Memory: beyond the features and the kNN graph, the confidences, the index on the hidden
    features and its kNN graph. The hidden features are never held whole: the confidences
    come from one pass of chunked inference, and the rows of the hidden features are
    computed again, chunk by chunk, to fill the index and to be searched
    (:func:`gcn_features`), which costs two or three more passes of the dense layers.

    Returns
    -------
    :class:`Clustering`: labels int64 (N,), every node in a cluster (roots and unlinked
    nodes as singletons), and the predicted vertex confidence (N,) as the per-item score.
    """
    conf, _ = predict(features, knn, model, context=context, hidden=False)
    peaks, peak_sims = confidence_to_peaks(knn, conf)
    labels = peaks_to_labels(peaks, peak_sims, tau_0)
    log.info("gcnv: %d clusters at tau_0=%.3f", np.unique(labels).size, tau_0)
    if not use_gcn_feat:
        return Clustering(labels, {"confidence": conf})
    del peaks, peak_sims, labels
    gknn = build_knn_from_spec(
        gcn_features(features, knn, model, context=context),
        knn.k,
        context.knn_backend,
        threads=context.threads,
        seed=context.seed,
        source="gcnv hidden features",
        storage=gcn_feat_storage,
    )
    peaks, peak_sims = confidence_to_peaks(gknn, conf)
    labels = peaks_to_labels(peaks, peak_sims, tau)
    log.info("gcnv: %d clusters at tau=%.3f on GCN features", np.unique(labels).size, tau)
    return Clustering(labels, {"confidence": conf})


def infer(features: np.ndarray, knn: Knn, model: dict, *, context) -> dict[str, np.ndarray]:
    """GCN-V's inference output, the ``upstream`` input of GCN-E.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : kNN graph of the features.
    model : the dict returned by :func:`train`.

    Returns
    -------
    ``{"confidence": float32 (N,), "features": float32 (N, hidden)}``: the predicted vertex
    confidences and the hidden GCN features, not normalised (as the reference dumps them;
    GCN-E L2-normalises them itself).
    """
    conf, hidden = predict(features, knn, model, context=context)
    return {
        "confidence": np.ascontiguousarray(conf, dtype=np.float32),
        "features": np.ascontiguousarray(hidden, dtype=np.float32),
    }
