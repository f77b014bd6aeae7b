"""GCN-D+S: the segmentation net, outlier handling, three-net training and the model zoo."""

import numpy as np
import pytest
import torch
from _problems import blobs

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import InputError
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, gcnd, gcnds
from facecluster.nn import dsgcn
from facecluster.proposals import Proposals

FAST = {"epochs": 30, "hidden": [32, 16], "batch_size": 8, "lr": 0.05}


def blob_proposals(labels, seed=0):
    """Every true cluster, merged neighbouring pairs, random halves, and halves polluted by
    5 items of other identities (the seg net trains on the last three kinds)."""
    rng = np.random.default_rng(seed)
    cls = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    groups = list(cls)
    groups += [np.r_[a, b] for a, b in zip(cls[:-1], cls[1:], strict=True)]
    for c in cls:
        groups.append(rng.choice(c, size=max(3, c.size // 2), replace=False))
        others = np.flatnonzero(labels != labels[c[0]])
        half = rng.choice(c, size=c.size // 2, replace=False)
        groups.append(np.r_[half, rng.choice(others, 5, replace=False)])
    order = rng.permutation(len(groups))
    return Proposals.from_lists([groups[i] for i in order])


@pytest.fixture(scope="module")
def problem():
    x, y = blobs(n=240, groups=6, dim=16, noise=0.6, seed=0)
    return x, y, brute_force_knn(x, 10), blob_proposals(y)


def context(props, seed=1):
    return Context(seed=seed, threads=1, device="cpu", extra={"proposals": props})


# ------------------------------------------------------------------------ outlier handling


def test_segmented_proposals_put_outliers_after_every_proposal():
    props = Proposals.from_lists([[0, 1, 2, 3], [4, 5, 6], [7, 8]])
    order = np.array([1, 0, 2])  # ranked by score
    seg_idx = np.array([0, 1])
    prob = np.array([0.9, 0.2, 0.8, 0.5, 0.1, 0.7, 0.6])  # entries of proposal 0, then 1
    out = gcnds.segmented_proposals(props, order, seg_idx, prob, th_outlier=0.5)
    groups = [out.members(p).tolist() for p in range(out.n_proposals)]
    assert groups == [[5, 6], [0, 2], [7, 8], [4], [1, 3], []]
    out = gcnds.segmented_proposals(props, order, seg_idx, prob, keep_outlier=False)
    assert [out.members(p).tolist() for p in range(out.n_proposals)] == [[5, 6], [0, 2], [7, 8]]
    with pytest.raises(ValueError, match="seg scores"):
        gcnds.segmented_proposals(props, order, seg_idx, prob[:-1])


def test_deoverlap_with_outliers_ranks_removed_nodes_last():
    props = Proposals.from_lists([[0, 1, 2, 3], [3, 4, 5], [1, 6]])
    scores = np.array([0.9, 0.8, 0.1])
    # proposal 0 drops 1 and 3; proposal 2 is not segmented
    prob = np.array([0.9, 0.1, 0.8, 0.2])
    labels = gcnds.deoverlap_with_outliers(props, scores, 9, np.array([0]), prob)
    # 0, 2 -> cleaned proposal 0; 3 -> proposal 1 (ranked before any outlier group);
    # 1 -> proposal 2 (a real proposal, before the outlier group of 0); 7, 8 uncovered
    np.testing.assert_array_equal(labels, [0, 2, 0, 1, 1, 1, 2, -1, -1])
    # a removed node in no other proposal stays in its outlier group, or is dropped
    props = Proposals.from_lists([[0, 1, 2], [3, 4]])
    prob = np.array([0.9, 0.9, 0.3])
    keep = gcnds.deoverlap_with_outliers(props, np.array([0.9, 0.8]), 5, np.array([0]), prob)
    np.testing.assert_array_equal(keep, [0, 0, 2, 1, 1])
    drop = gcnds.deoverlap_with_outliers(
        props, np.array([0.9, 0.8]), 5, np.array([0]), prob, keep_outlier=False
    )
    np.testing.assert_array_equal(drop, [0, 0, -1, 1, 1])
    # without segmentation it is GCN-D's de-overlap
    np.testing.assert_array_equal(
        gcnds.deoverlap_with_outliers(props, np.array([0.9, 0.8]), 5, [], []),
        gcnd.deoverlap(props, np.array([0.9, 0.8]), 5),
    )


# ------------------------------------------------------------------------------- seg net


def test_seg_targets_follow_the_seed_identity(problem):
    x, _, knn, _ = problem
    labels = np.array([0, 0, 1, 1, -1, 2])
    props = Proposals.from_lists([[0, 1, 2, 4], [2, 3, 0], [4, 5]])
    batch = dsgcn.build_batch(x, knn, props, np.arange(3), seed_local=np.array([2, 0, 0]))
    t = dsgcn.seg_targets(batch, labels)
    np.testing.assert_array_equal(t[0], [0, 0, 1, -100])  # seed item 2 (identity 1)
    np.testing.assert_array_equal(t[1], [1, 1, 0, -100])  # seed item 2 again, padding last
    np.testing.assert_array_equal(t[2], [-100, -100, -100, -100])  # unknown seed


def test_one_sgd_step_lowers_the_seg_loss(problem):
    x, y, knn, props = problem
    torch.manual_seed(0)
    net = dsgcn.DSGCN(x.shape[1] + 1, [32, 16], "seg", dropout=0.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    idx = np.arange(props.n_proposals)
    batch = dsgcn.build_batch(x, knn, props, idx, seed_local=np.zeros(idx.size, dtype=np.int64))
    loss_fn = dsgcn.seg_loss(y)
    before, count = loss_fn(net, batch, idx, torch.device("cpu"))
    assert count == idx.size
    (before / count).backward()
    opt.step()
    with torch.no_grad():
        after, _ = loss_fn(net, batch, idx, torch.device("cpu"))
    assert after.item() < before.item()


def test_max_degree_seed_is_the_best_connected_node(problem):
    x, _, knn, props = problem
    batch = dsgcn.build_batch(x, knn, props, np.arange(props.n_proposals))
    # the degree is 1 + the summed similarity of the node's intra-proposal edges
    for b in range(3):
        members = props.members(b)
        s = x[members] @ x[members].T
        inside = np.zeros_like(s, dtype=bool)
        for a, i in enumerate(members):
            hit = np.isin(members, knn.nbrs[i])
            inside[a] |= hit
            inside[:, a] |= hit
        np.fill_diagonal(inside, False)
        want = 1 + (np.where(inside, np.maximum(s, 0), 0)).sum(axis=1)
        np.testing.assert_allclose(batch.degree[b, : members.size], want, rtol=1e-4)


# ------------------------------------------------------------------------------- model zoo


def _fake(path, dims, classes):
    gen = torch.Generator().manual_seed(classes)
    state = {
        f"module.base.layers.{i}.gc.weight": torch.randn(a, b, generator=gen)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
    }
    state["module.base.classifier.weight"] = torch.randn(classes, dims[-1], generator=gen)
    state["module.base.classifier.bias"] = torch.randn(classes, generator=gen)
    torch.save({"state_dict": state}, path)
    return state


def test_released_weights_of_the_three_nets(tmp_path, problem):
    paths = {name: str(tmp_path / f"{name}.pth") for name in ("det", "iop", "seg")}
    ref = {
        "det": _fake(paths["det"], [16, 32, 8], 1),
        "iop": _fake(paths["iop"], [16, 32, 8], 1),
        "seg": _fake(paths["seg"], [17, 32, 8], 2),
    }
    model = gcnds.load_pretrained(paths)
    for name in ("det", "iop", "seg"):
        sd = model[name]["state_dict"]
        torch.testing.assert_close(
            sd["layers.0.weight"], ref[name]["module.base.layers.0.gc.weight"]
        )
        torch.testing.assert_close(sd["classifier.bias"], ref[name]["module.base.classifier.bias"])
    assert model["seg"]["stage"] == "seg" and model["seg"]["in_dim"] == 17
    x, _, knn, props = problem
    labels = gcnds.cluster(x, knn, context=context({"te": props}), model=model, proposals="te")
    assert labels.shape == (x.shape[0],)
    with pytest.raises(InputError, match="not a seg net"):
        gcnds.load_pretrained({**paths, "seg": paths["det"]})
    with pytest.raises(InputError, match="expected det, iop, seg"):
        gcnds.load_pretrained({"det": paths["det"]})


# --------------------------------------------------------------------------- end to end


def test_train_and_cluster_blobs_deterministically(problem):
    x, y, knn, props = problem
    ctx = context({"tr": props, "tr_iop": props, "te": props})
    kw = {"proposals": "tr", "iop_proposals": "tr_iop"}
    model = gcnds.train(x, y, knn, context=ctx, **kw, **FAST)
    assert set(model) == {"family", "det", "iop", "seg"}
    assert model["seg"]["stage"] == "seg" and model["seg"]["in_dim"] == x.shape[1] + 1
    labels = gcnds.cluster(x, knn, context=ctx, model=model, proposals="te")
    m = metrics.evaluate(y, finalize_labels(labels))
    assert m["pairwise_f"] > 0.9, m
    again = gcnds.train(x, y, knn, context=ctx, **kw, **FAST)
    for net in ("det", "iop", "seg"):
        for name, value in model[net]["state_dict"].items():
            torch.testing.assert_close(value, again[net]["state_dict"][name], rtol=0, atol=0)
    np.testing.assert_array_equal(
        labels, gcnds.cluster(x, knn, context=ctx, model=again, proposals="te")
    )
    # random seeds (seeded) instead of the max-degree node, every proposal segmented
    a, b = (
        gcnds.cluster(
            x,
            knn,
            context=ctx,
            model=model,
            proposals="te",
            use_max_degree_seed=False,
            th_iou_min=0.0,
            th_iou_max=1.0,
        )
        for _ in range(2)
    )
    np.testing.assert_array_equal(a, b)


def test_a_killed_training_skips_finished_nets_and_resumes_the_current_one(
    problem, tmp_path, monkeypatch
):
    x, y, knn, props = problem
    settings = {**FAST, "epochs": 3}
    kw = {"proposals": "tr", "iop_proposals": "tr"}
    full = gcnds.train(x, y, knn, context=context({"tr": props}), **kw, **settings)
    ckpt = tmp_path / "ckpt.pt"
    ctx = Context(
        seed=1, threads=1, device="cpu", extra={"proposals": {"tr": props}}, checkpoint=str(ckpt)
    )
    real = dsgcn.det_loss
    made = {"n": 0}

    def failing(targets):
        made["n"] += 1
        fn, calls = real(targets), {"n": 0}

        def wrapped(*args):
            calls["n"] += 1
            if made["n"] == 2 and calls["n"] > 12:  # the IoP detector, in its second epoch
                raise KeyboardInterrupt
            return fn(*args)

        return wrapped

    monkeypatch.setattr(dsgcn, "det_loss", failing)
    with pytest.raises(KeyboardInterrupt):
        gcnds.train(x, y, knn, context=ctx, **kw, **settings)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["extra"]["tag"] == "iop" and set(saved["extra"]["finished"]) == {"det"}
    monkeypatch.setattr(dsgcn, "det_loss", real)
    made["n"] = 0
    resumed = gcnds.train(x, y, knn, context=ctx, **kw, **settings)
    for net in ("det", "iop", "seg"):
        for name, value in full[net]["state_dict"].items():
            torch.testing.assert_close(value, resumed[net]["state_dict"][name], rtol=0, atol=0)


def test_without_impure_train_proposals_there_is_no_seg_net(problem):
    x, y, knn, props = problem
    pure = Proposals.from_lists([np.flatnonzero(y == c) for c in np.unique(y)])  # IoP 1
    ctx = context({"tr": pure, "te": props})
    model = gcnds.train(x, y, knn, context=ctx, proposals="tr", iop_proposals="tr", **FAST)
    assert model["seg"] is None
    labels = gcnds.cluster(x, knn, context=ctx, model=model, proposals="te")
    scores = dsgcn.predict_det(x, knn, props, model["det"], context=ctx)
    np.testing.assert_array_equal(labels, gcnd.deoverlap(props, scores, x.shape[0]))
