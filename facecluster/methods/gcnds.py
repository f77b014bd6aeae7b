"""GCN-D+S (Yang et al., CVPR 2019): GCN-D's ranked proposals, cleaned by a segmentation GCN.

One model holds three DS-GCNs (:mod:`facecluster.nn.dsgcn`, hidden [512, 64]):

* the IoU detector of :mod:`facecluster.methods.gcnd` (trained on ``train.proposals``);
* an IoP detector, the same net regressing |P ∩ G| / |P| (trained on
  ``train.iop_proposals``; learn-to-cluster's ``train_cluster_det_iop_ms1m.sh`` uses the
  4-folder train set);
* the segmentation net GCN-S: input X plus a seed channel (D + 1), per-node
  ``Linear(64, 2)`` and ``log_softmax``, NLL loss. Trained on the proposals of
  ``train.proposals`` whose ground-truth IoP lies in [``seg_iop_min``, ``seg_iop_max``]
  (0.2, 0.8: the 84-folder config; the 4-folder config uses [0.3, 0.7] and featureless
  input), a random seed node per proposal drawn afresh every epoch, node label 1 if its
  identity equals the seed's. The reference trains it with batch 1 and ``iter_size`` 32;
  the mean loss of 32 proposals per step is computed here from padded batches of 32.

Every net trains with SGD lr 0.01, momentum 0.9, weight decay 1e-4, 30 epochs, steps at
epochs 15, 24 and 28 (``cfg_train_{det,seg}_ms1m_*``).

Clustering (``test_cluster_det_iop_ms1m.sh`` then ``test_cluster_seg_ms1m.sh``):

1. the IoU detector scores every proposal, the IoP detector predicts its IoP;
2. GCN-S runs on the proposals with predicted IoP in [``th_iou_min``, ``th_iou_max``]
   (0.1, 0.9; the reference's parameter names say "iou" but they filter the predicted
   IoP), seeded at the node of largest weighted degree (``use_max_degree_seed``, the test
   setting of the reference config) or at a random node;
3. in each segmented proposal the nodes with p(class 1) > ``th_outlier`` (0.5) stay; the
   removed ones form one extra "outlier" proposal per segmented proposal, ranked after all
   proposals (in the order of their parents) when ``keep_outlier``, else dropped;
4. de-overlap by the IoU scores (:func:`deoverlap_with_outliers`): ``th_pos``, optional
   NMS at ``th_iou`` over the cleaned and outlier proposals, every item to the first
   proposal containing it, the rest -1.

The reference test config reads the seg net's proposals with ``wo_weight=True`` (edge
weights 1) although it trains with similarity weights; here both use the similarity
weights.
"""

from __future__ import annotations

import logging

import numpy as np

from ..io import InputError, Knn
from ..proposals import Proposals
from . import Cost, FamilySpec
from .gcnd import (
    DEOVERLAP_PARAMS,
    SGD_PARAMS,
    assign_by_priority,
    get_proposals,
    nms,
    proposal_entries,
    proposal_targets,
    rank_proposals,
    train_detector,
    training_arrays,
    training_settings,
)
from .gcnd import estimate as gcnd_estimate

log = logging.getLogger(__name__)

__all__ = [
    "SPEC",
    "estimate",
    "segmented_proposals",
    "deoverlap_with_outliers",
    "train_segmenter",
    "train",
    "cluster",
    "load_pretrained",
]


def estimate(n, dim, k, *, params, train_params, train, threads, gpu=False) -> Cost:
    """:func:`facecluster.methods.gcnd.estimate` for three nets: training the IoU detector,
    the IoP detector and the seg net (on at most every proposal), clustering with the two
    detectors over every proposal and the seg net over at most every proposal."""
    return gcnd_estimate(
        n,
        dim,
        k,
        params=params,
        train_params=train_params,
        train=train,
        threads=threads,
        nets=3,
        gpu=gpu,
    )


def _fraction(description: str, default: float) -> dict:
    return {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": default,
        "description": description,
    }


SPEC = FamilySpec(
    summary="GCN-D+S (Yang et al., CVPR 2019): GCN-D proposals cleaned by a segmentation GCN "
    "(on proposals of predicted IoP in [0.1, 0.9]), outliers ranked last, de-overlap by IoU",
    supervised=True,
    gpu=True,
    conda_env="torch",
    threads=16,
    needs=("proposals",),
    params={
        "proposals": {
            "type": "string",
            "default": "ms1m_2",
            "description": "The proposal set (an entry of the config's proposals) to cluster.",
        },
        "th_iou_min": _fraction("Segment proposals with predicted IoP >= this.", 0.1),
        "th_iou_max": _fraction("Segment proposals with predicted IoP <= this.", 0.9),
        "th_outlier": _fraction("A segmented node stays if p(class 1) > this.", 0.5),
        "keep_outlier": {
            "type": "boolean",
            "default": True,
            "description": "Removed nodes form an outlier proposal ranked after all others "
            "(else they are dropped from that proposal).",
        },
        "use_max_degree_seed": {
            "type": "boolean",
            "default": True,
            "description": "Seed GCN-S at the node of largest degree (else a random node).",
        },
        **DEOVERLAP_PARAMS,
    },
    train_params={
        "proposals": {
            "type": "string",
            "default": "ms1m_train_4",
            "description": "Train proposal set of the IoU detector and the seg net.",
        },
        "iop_proposals": {
            "type": "string",
            "default": "ms1m_train_4",
            "description": "Train proposal set of the IoP detector.",
        },
        "seg_iop_min": _fraction("Seg training uses proposals with GT IoP >= this.", 0.2),
        "seg_iop_max": _fraction("Seg training uses proposals with GT IoP <= this.", 0.8),
        **SGD_PARAMS,
    },
    estimate=estimate,
)


# ---------------------------------------------------------------------- outlier handling


def segmented_proposals(
    proposals: Proposals,
    order: np.ndarray,
    seg_idx: np.ndarray,
    seg_prob: np.ndarray,
    *,
    th_outlier: float = 0.5,
    keep_outlier: bool = True,
) -> Proposals:
    """The ranked proposals after segmentation, as a new set in priority order.

    Parameters
    ----------
    proposals : the scored set.  order : int (R,) its ranked proposals (best first).
    seg_idx : int (S,) the proposals that were segmented.
    seg_prob : float (sum of their sizes,) p(class 1) per entry, the members of
        ``seg_idx[0]`` first (the layout of :func:`facecluster.nn.dsgcn.predict_seg`).
    th_outlier : a segmented node stays if its probability is > this.
    keep_outlier : append, after the R cleaned proposals, the R groups of removed nodes in
        the same order (empty where nothing was removed); else drop them.

    Returns
    -------
    R (or 2R) proposals: proposal r of ``order`` without its removed nodes, then (with
    ``keep_outlier``) the removed nodes of proposal r at position R + r. Vectorised over
    entries.
    """
    order = np.asarray(order, dtype=np.int64)
    keep = np.ones(proposals.items.size, dtype=bool)
    seg_entries, _, _ = proposal_entries(proposals.offsets, np.asarray(seg_idx, dtype=np.int64))
    if seg_entries.size != np.asarray(seg_prob).size:
        raise ValueError(f"{np.asarray(seg_prob).size} seg scores for {seg_entries.size} entries")
    keep[seg_entries] = np.asarray(seg_prob) > th_outlier
    entries, rank, _ = proposal_entries(proposals.offsets, order)
    kept = keep[entries]
    groups = [rank[kept]]
    items = [proposals.items[entries[kept]]]
    n_groups = order.size
    if keep_outlier:
        groups.append(rank[~kept] + order.size)
        items.append(proposals.items[entries[~kept]])
        n_groups = 2 * order.size
    group = np.concatenate(groups)  # ascending: entries are in rank order within each part
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=n_groups), out=offsets[1:])
    return Proposals(
        np.concatenate(items).astype(np.int64),
        offsets,
        np.zeros(n_groups, dtype=np.int32),
        ("segmented",),
    )


def deoverlap_with_outliers(
    proposals: Proposals,
    scores: np.ndarray,
    n_items: int,
    seg_idx: np.ndarray,
    seg_prob: np.ndarray,
    *,
    th_pos: float = -1.0,
    th_iou: float = 1.0,
    th_outlier: float = 0.5,
    keep_outlier: bool = True,
) -> np.ndarray:
    """Labels int64 (N,): learn-to-cluster's ``deoverlap`` with ``outlier_scores``.

    Proposals with score >= ``th_pos`` are ranked by descending score, cleaned by the seg
    output (:func:`segmented_proposals`), the outlier groups appended last, NMS at
    ``th_iou`` over all of them in that order, and every item takes the first group that
    contains it; items in none are -1.
    """
    order = rank_proposals(scores, th_pos)
    groups = segmented_proposals(
        proposals, order, seg_idx, seg_prob, th_outlier=th_outlier, keep_outlier=keep_outlier
    )
    ranked = nms(groups, np.arange(groups.n_proposals, dtype=np.int64), th_iou)
    return assign_by_priority(groups, ranked, n_items)


# --------------------------------------------------------------------------- train, cluster


def train_segmenter(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    proposals: Proposals,
    *,
    context,
    iop_min: float = 0.2,
    iop_max: float = 0.8,
    tag: str = "seg",
    run=None,
    seed_offset: int = 2,
    **sgd,
) -> dict:
    """Train GCN-S on the proposals with GT IoP in [``iop_min``, ``iop_max``].

    Every epoch each proposal gets a seed node drawn uniformly among its items (seeded by
    ``context.seed``, the epoch and ``seed_offset``). Returns the net dict of
    :func:`facecluster.nn.dsgcn.train_net`, or None (with a warning) when no proposal lies
    in the range (pure proposals only, as on an easy split): the reference would stop on
    an empty data set; here the model then clusters without segmentation.
    """
    from ..nn import dsgcn as impl

    _, _, iop = proposal_targets(proposals, labels)
    with np.errstate(invalid="ignore"):
        select = np.flatnonzero((iop >= iop_min) & (iop <= iop_max))
    if select.size == 0:
        log.warning(
            "gcnds %s: no train proposal with GT IoP in [%s, %s]: no seg net; clustering "
            "will not segment",
            tag,
            iop_min,
            iop_max,
        )
        return None
    sizes = proposals.sizes
    log.info("gcnds %s: %d of %d proposals", tag, select.size, proposals.n_proposals)

    def seeds(rng, idx):
        return (rng.random(idx.size) * sizes[idx]).astype(np.int64)

    return impl.train_net(
        features,
        knn,
        proposals,
        select,
        impl.seg_loss(np.asarray(labels, dtype=np.int64)),
        stage="seg",
        context=context,
        tag=tag,
        run=run,
        seeds=seeds,
        seed_offset=seed_offset,
        **sgd,
    )


def train(
    features: np.ndarray,
    labels: np.ndarray,
    knn: Knn,
    *,
    context,
    proposals: str = "ms1m_train_4",
    iop_proposals: str = "ms1m_train_4",
    seg_iop_min: float = 0.2,
    seg_iop_max: float = 0.8,
    **sgd,
) -> dict:
    """Train the IoU detector, the IoP detector and the seg net, one after the other.

    ``sgd``: the SGD settings shared by the three nets (see
    :data:`facecluster.methods.gcnd.SGD_PARAMS`). A ``context.checkpoint`` keeps the
    finished nets and the current net's last saved epoch. Returns ``{"family": "gcnds",
    "det", "iop", "seg"}`` (net dicts; ``seg`` is None when no train proposal has a GT IoP
    in the range).
    """
    from ..nn import dsgcn as impl

    n = features.shape[0]
    props = get_proposals(context, proposals, n)
    iop_props = get_proposals(context, iop_proposals, n)
    run = impl.start_run(
        context,
        "gcnds",
        settings=training_settings(
            sgd,
            proposals=proposals,
            iop_proposals=iop_proposals,
            seg_iop_min=seg_iop_min,
            seg_iop_max=seg_iop_max,
        ),
        arrays=training_arrays(features, labels, knn, {proposals: props, iop_proposals: iop_props}),
    )
    common = dict(context=context, run=run, **sgd)
    det = train_detector(features, labels, knn, props, target="iou", tag="det", **common)
    iop = train_detector(
        features, labels, knn, iop_props, target="iop", tag="iop", seed_offset=1, **common
    )
    seg = train_segmenter(
        features, labels, knn, props, iop_min=seg_iop_min, iop_max=seg_iop_max, **common
    )
    return {"family": "gcnds", "det": det, "iop": iop, "seg": seg}


def cluster(
    features: np.ndarray,
    knn: Knn,
    *,
    context,
    model: dict,
    proposals: str = "ms1m_2",
    th_iou_min: float = 0.1,
    th_iou_max: float = 0.9,
    th_outlier: float = 0.5,
    keep_outlier: bool = True,
    use_max_degree_seed: bool = True,
    th_pos: float = -1.0,
    th_iou: float = 1.0,
) -> np.ndarray:
    """Cluster with a trained GCN-D+S (see the module docstring). Returns int64 (N,)
    labels, -1 for items in no kept proposal."""
    from ..nn import dsgcn as impl

    n = features.shape[0]
    props = get_proposals(context, proposals, n)
    iou = impl.predict_det(features, knn, props, model["det"], context=context)
    if model.get("seg") is None:  # no seg net (no impure train proposal): GCN-D's ranking
        seg_idx = np.empty(0, dtype=np.int64)
        seg_prob = np.empty(0, dtype=np.float32)
    else:
        iop = impl.predict_det(features, knn, props, model["iop"], context=context)
        seg_idx = np.flatnonzero((iop >= th_iou_min) & (iop <= th_iou_max))
        seg_prob = impl.predict_seg(
            features,
            knn,
            props,
            model["seg"],
            seg_idx,
            context=context,
            max_degree_seed=use_max_degree_seed,
        )
    labels = deoverlap_with_outliers(
        props,
        iou,
        n,
        seg_idx,
        seg_prob,
        th_pos=th_pos,
        th_iou=th_iou,
        th_outlier=th_outlier,
        keep_outlier=keep_outlier,
    )
    log.info(
        "gcnds: %d proposals, %d segmented, %d nodes removed, %d clusters, %d uncovered",
        props.n_proposals,
        seg_idx.size,
        int((seg_prob <= th_outlier).sum()),
        np.unique(labels[labels >= 0]).size,
        int((labels < 0).sum()),
    )
    return labels


def load_pretrained(paths: dict[str, str]) -> dict:
    """The model dict from learn-to-cluster's released nets: ``{"det":
    "pretrained_gcn_d_ms1m.pth", "iop": "pretrained_gcn_d_iop_ms1m.pth", "seg":
    "pretrained_gcn_s_ms1m.pth"}`` (:func:`facecluster.nn.dsgcn.pretrained_net`)."""
    from ..nn import dsgcn as impl

    if set(paths) != {"det", "iop", "seg"}:
        raise InputError(f"gcnds pretrained weights: expected det, iop, seg; got {sorted(paths)}")
    return {
        "family": "gcnds",
        "det": impl.pretrained_net(paths["det"], "det"),
        "iop": impl.pretrained_net(paths["iop"], "det"),
        "seg": impl.pretrained_net(paths["seg"], "seg"),
    }
