"""STAR-FC (Shen et al., CVPR 2021): structure-preserved subgraph sampling, edge scores,
graph parsing and node-intimacy refinement.

Training (``train``): structure-preserved subgraph sampling (SPSS) on the labelled train
split, one-layer GCN + pairwise edge head (:mod:`facecluster.nn.starfc`, which also states
the two exact rewrites that make it cheap). Training stops on the loss, as the authors
advise, and the model file records when and why.

Clustering (``cluster``), as the public ``test_final.py`` computes it (cdp-infomap-starfc.md
§3.5):

1. the GCN on the whole kNN graph (max(A, Aᵀ) + I row-normalised, similarities >= 0);
2. every directed pair (i, j), j != i a kNN neighbour of i, scored P(same) by the head;
3. graph parsing: keep the pairs scoring above ``tau1`` (0.7);
4. node intimacy (:func:`node_intimacy`, sparse products in row chunks; the reference loops
   over edges in Python): with B the binary directed adjacency of the kept pairs,
   deg(i) its out-degree and share(i, j) = (B·B)[i, j], keep (i, j) when deg(i), deg(j) > 0
   and max(share / deg(i), share / deg(j)) > ``tau2`` (0.72);
5. connected components of the kept edges (undirected); items without a kept edge are
   singletons (labels are never -1).

Unlike the reference, nothing needs the split's labels (its ``GCNDataset`` fails without
them, and ``test_final.py`` hard-codes N and reads an undocumented ``gt_labels.npy``).
Released ``Backbone.pth`` / ``Head.pth`` load with :func:`load_pretrained` (``pretrained:
{backbone: ..., head: ...}``). The hierarchical (TPAMI) version is not built.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..graph import components
from ..io import InputError, Knn
from . import Cost, FamilySpec

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "estimate",
    "node_intimacy",
    "train",
    "predict_edges",
    "load_pretrained",
    "cluster",
]

#: sustained fp32 rates of the dense products (measured like GCN-V's, 30 GFLOP/s per thread
#: on this project's CPU) and a conservative GPU rate
CPU_FLOPS_PER_THREAD = 3e10
GPU_FLOPS = 5e12
#: mean items per identity of MS1M's train split (576,494 / 8,573), for the training
#: estimate, which does not see the labels
ITEMS_PER_CLASS = 67
#: products B[i, k]·B[k, j] per row chunk of the node-intimacy step (bounds its memory:
#: about 20 bytes each)
NI_PRODUCTS = 1 << 25


def node_intimacy(
    n: int, src: np.ndarray, dst: np.ndarray, *, max_products: int = NI_PRODUCTS
) -> np.ndarray:
    """STAR-FC's node intimacy of every directed edge src -> dst.

    With B the binary (N, N) adjacency of the edges (row = source; repeated edges count
    once), deg(i) = out-degree of i and share(i, j) = (B·B)[i, j] (paths i -> k -> j; the
    common neighbours when B is symmetric):
    NI(i, j) = max(share / deg(i), share / deg(j)), and 0 where deg(j) = 0 (the reference
    keeps an edge only when both degrees are positive).

    (B·B) is evaluated only at B's entries, by row chunks of at most ``max_products``
    multiplications, so memory stays O(E) whatever the degrees.

    Parameters
    ----------
    n : number of nodes.  src, dst : int (E,) edge endpoints.

    Returns
    -------
    float32 (E,) in the order of the input edges.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.size == 0:
        return np.empty(0, np.float32)
    b = sp.csr_matrix((np.ones(src.size, np.float32), (src, dst)), shape=(n, n))
    b.sum_duplicates()
    b.sort_indices()
    b.data[:] = 1.0
    deg = np.diff(b.indptr).astype(np.int64)
    # multiplications per row: sum of the out-degrees of its successors
    ops = np.asarray(b @ deg.astype(np.float64)).ravel()
    bounds = [0]
    cum = np.cumsum(ops)
    while bounds[-1] < n:
        base = cum[bounds[-1] - 1] if bounds[-1] > 0 else 0.0
        nxt = int(np.searchsorted(cum, base + max_products, side="right"))
        bounds.append(min(n, max(nxt, bounds[-1] + 1)))
    b_rows = np.repeat(np.arange(n, dtype=np.int64), deg)
    b_keys = b_rows * n + b.indices
    share = np.zeros(b.nnz, dtype=np.float32)
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        lo, hi = b.indptr[s], b.indptr[e]
        if lo == hi:
            continue
        c = (b[s:e] @ b).tocsr()
        c.sort_indices()
        c_keys = np.repeat(np.arange(s, e, dtype=np.int64), np.diff(c.indptr)) * n + c.indices
        if c_keys.size == 0:
            continue
        keys = b_keys[lo:hi]
        at = np.searchsorted(c_keys, keys).clip(max=c_keys.size - 1)
        found = c_keys[at] == keys
        share[lo:hi][found] = c.data[at[found]]
    degf = deg.astype(np.float32)
    ni = share / degf[b_rows]  # float32 throughout: 4 bytes per edge and temporary
    del b_rows
    dj = degf[b.indices]
    np.maximum(ni, np.divide(share, dj, out=np.zeros_like(share), where=dj > 0), out=ni)
    ni[dj == 0] = 0.0  # the reference's "both degrees > 0"
    # back to the input order (duplicates get their edge's value)
    return ni[np.searchsorted(b_keys, src * n + dst)]


def estimate(n, dim, k, *, params, train_params, train, threads, gpu=False) -> Cost:
    """Peak memory (bytes) and wall time (s) of training on or clustering ``n`` items.

    Training: about n / 67 identities (MS1M's train split: 67 items each), so a sample holds
    S = min(max_nodes, min(clusters, n/67)·67·node_ratio) items; per subgraph an exact kNN
    (2·S²·D flops) and passes x chunks SGD steps on all S nodes (3 x the forward:
    2·S·(2D·H + 2H²) flops; the pair terms are small). With ``stop_loss`` > 0 the loss
    criterion is expected within one epoch (MS1M: 0.45 epoch, issue #16), else all
    ``epochs``. Memory: the features, one subgraph's kNN, graph and activations (with
    gradients), the model with momentum.

    Clustering: X and A·X (N x D), the per-node terms u, v (N x 2H), the kNN and the CSR
    graph (about 32 bytes per edge), the kept pairs with the node-intimacy work (about 40
    bytes per pair, at most N·(k-1) of them); time: A·X, the GCN and the pair scores (about
    6H flops per pair), plus 1 µs per pair for parsing, intimacy and components.
    """
    rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
    if train:
        p = train_params
        h = int(p["hidden"])
        n_classes = max(1.0, n / ITEMS_PER_CLASS)
        s = min(float(p["max_nodes"]), min(p["clusters"], n_classes) * ITEMS_PER_CLASS)
        s *= float(p["node_ratio"])
        steps = int(p["edge_passes"]) * int(p["edge_chunks"])
        per_batch = 2.0 * s * s * dim + steps * 3 * 2.0 * s * (2 * dim * h + 2 * h * h)
        epochs = 1 if p["stop_loss"] > 0 else int(p["epochs"])
        seconds = n_classes * epochs * per_batch / rate
        memory = (
            n * 4 * dim
            + s * (8 * k + 32 * 2 * k + 4 * (2 * dim + 8 * h))
            + 4 * 3 * (2 * dim * h + 2 * h * h)
        )
        return Cost(float(memory), float(seconds))
    h = int(train_params.get("hidden", 512))  # the variant's model (the released: 512)
    pairs = n * max(k - 1, 0)
    # + four (pairs x hidden) chunk buffers of predict_edges' pair_budget (128 MB each)
    memory = n * (4 * 2 * dim + 4 * 2 * h + 8 * k + 32 * 2 * k) + 40 * pairs + 4 * 2**27
    flops = 2.0 * n * 2 * k * dim + 2.0 * n * (2 * dim * h + 2 * h * h) + 6.0 * h * pairs
    seconds = flops / rate + 1e-6 * pairs
    return Cost(float(memory), float(seconds))


def _int(default, description, minimum=1):
    return {"type": "integer", "minimum": minimum, "default": default, "description": description}


def _number(default, description, **bounds):
    return {"type": "number", "default": default, "description": description, **bounds}


SPEC = FamilySpec(
    summary="STAR-FC (Shen et al., CVPR 2021): SPSS-trained GCN edge scores, graph parsing "
    "at tau1, node-intimacy refinement at tau2, connected components",
    supervised=True,
    gpu=True,
    conda_env="torch",
    threads=16,
    params={
        "tau1": _number(
            0.7,
            "Graph parsing: keep kNN pairs whose P(same) is above it (CVPR: 0.7).",
            minimum=0,
            maximum=1,
        ),
        "tau2": _number(
            0.72,
            "Graph refinement: keep kept pairs whose node intimacy is above it (CVPR: 0.72).",
            minimum=0,
            maximum=1,
        ),
    },
    train_params={
        "hidden": _int(512, "Embedding size of the one-layer GCN (and of the head)."),
        "clusters": _int(
            1300,
            "SPSS cluster randomness: clusters picked at random per sample among the seed's "
            "candidates (MS1M: 1300).",
        ),
        "candidates": _int(
            1500,
            "Nearest cluster centres considered per seed, itself included (MS1M: 1500 = "
            "1300 + 200).",
        ),
        "node_ratio": _number(
            0.9,
            "SPSS sample randomness: share of each picked cluster's items taken.",
            exclusiveMinimum=0,
            maximum=1,
        ),
        "min_nodes": _int(100, "Samples with fewer items are skipped."),
        "max_nodes": _int(100000, "Samples with more items are skipped."),
        "edge_chunks": _int(
            40, "Each pass over a subgraph's edges is cut into this many SGD steps."
        ),
        "edge_passes": _int(2, "Independent random passes over a subgraph's edges."),
        "epochs": _int(
            50,
            "Upper bound on passes over the seed clusters (the loss criterion usually stops "
            "first; MS1M: within one).",
        ),
        "lr": _number(
            0.01,
            "SGD rate (the code's 0.01; its config's 0.1 is never used).",
            exclusiveMinimum=0,
        ),
        "momentum": _number(0.9, "SGD momentum.", minimum=0),
        "weight_decay": _number(1.0e-5, "SGD weight decay.", minimum=0),
        "milestones": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "default": [0.5, 0.8, 0.9],
            "description": "Fractions of epochs where the rate is multiplied by 0.1.",
        },
        "stop_loss": _number(
            0.02,
            "Stop once the mean loss of the last stop_window subgraphs is at most this "
            "(the authors: 0.01-0.02); 0: train every epoch.",
            minimum=0,
        ),
        "stop_window": _int(20, "Subgraphs averaged by the loss criterion."),
        "th_sim": _number(
            0.0,
            "Similarity threshold of the GCN graphs (stored with the model).",
            minimum=-1,
            maximum=1,
        ),
        "checkpoint_every": _int(
            100,
            "Subgraphs between training checkpoints a killed job resumes from (the "
            "reference saves every 100); 0: never.",
            minimum=0,
        ),
    },
    estimate=estimate,
)


def train(features: np.ndarray, labels: np.ndarray, knn: Knn, *, context, **train_params) -> dict:
    """Train STAR-FC on a labelled split: :func:`facecluster.nn.starfc.train`."""
    from ..nn import starfc as impl

    return impl.train(features, labels, knn, context=context, **train_params)


def load_pretrained(paths: dict[str, str]) -> dict:
    """The released weights: ``paths["backbone"]`` = ``Backbone.pth``, ``paths["head"]`` =
    ``Head.pth`` (the README's pretrained_model folder)."""
    missing = {"backbone", "head"} - set(paths)
    if missing:
        raise InputError(
            f"starfc released weights: paths needs {sorted(missing)} (Backbone.pth, "
            f"Head.pth), got {sorted(paths)}"
        )
    from ..nn import starfc as impl

    return impl.load_pretrained(paths["backbone"], paths["head"])


def predict_edges(features: np.ndarray, knn: Knn, model: dict, *, context, tau1=None):
    """(src, dst, P(same)) of the directed kNN pairs: see
    :func:`facecluster.nn.starfc.predict_edges`."""
    from ..nn import starfc as impl

    return impl.predict_edges(features, knn, model, context=context, tau1=tau1)


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    tau1: float = 0.7,
    tau2: float = 0.72,
) -> np.ndarray:
    """Cluster with a trained (or released) STAR-FC.

    Parameters
    ----------
    features : float32 (N, D) L2-normalised.  knn : the split's kNN graph (self first).
    model : the dict of :func:`train` or :func:`load_pretrained`.
    tau1 : graph-parsing threshold on P(same) (0.7).
    tau2 : node-intimacy threshold (0.72).

    Returns
    -------
    labels : int64 (N,), items without a kept edge as singletons.
    """
    src, dst, _ = predict_edges(features, knn, model, context=context, tau1=tau1)
    ni = node_intimacy(knn.n, src, dst)
    keep = ni > tau2
    labels = components(knn.n, src[keep], dst[keep])
    log.info(
        "starfc: %d pairs above tau1 %.2f, %d above tau2 %.2f, %d clusters",
        src.size,
        tau1,
        int(keep.sum()),
        tau2,
        np.unique(labels).size,
    )
    return labels
