"""GCN-D: proposal graphs and batches, the DS-GCN, targets, de-overlap, training, model zoo."""

import numpy as np
import pytest
import torch
from _problems import blobs

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import InputError, Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, gcnd
from facecluster.nn import dsgcn
from facecluster.proposals import Proposals

FAST = {"epochs": 30, "hidden": [32, 16], "batch_size": 8, "lr": 0.05}


def blob_proposals(labels, seed=0):
    """Hand-made proposals: every true cluster, merged neighbouring pairs, random halves,
    and halves polluted by 5 items of other identities."""
    rng = np.random.default_rng(seed)
    cls = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    groups = list(cls)
    groups += [np.r_[a, b] for a, b in zip(cls[:-1], cls[1:], strict=True)]
    for c in cls:
        groups.append(rng.choice(c, size=max(3, c.size // 2), replace=False))
        others = np.flatnonzero(labels != labels[c[0]])
        half = rng.choice(c, size=c.size // 2, replace=False)
        groups.append(np.r_[half, rng.choice(others, 5, replace=False)])
    order = rng.permutation(len(groups))  # the true clusters are not simply first
    return Proposals.from_lists([groups[i] for i in order])


@pytest.fixture(scope="module")
def problem():
    x, y = blobs(n=240, groups=6, dim=16, noise=0.6, seed=0)
    knn = brute_force_knn(x, 10)
    return x, y, knn, blob_proposals(y)


def context(props, seed=1, **kw):
    return Context(seed=seed, threads=1, device="cpu", extra={"proposals": props}, **kw)


# ----------------------------------------------------------------------- graphs and batches


def test_batch_adjacency_holds_every_intra_proposal_knn_edge():
    rng = np.random.default_rng(3)
    n, k = 30, 6
    others = [rng.choice(np.delete(np.arange(n), i), k - 1, replace=False) for i in range(n)]
    nbrs = np.column_stack([np.arange(n), np.array(others)]).astype(np.int32)
    nbrs[4, 3] = -1  # padding is ignored
    sims = rng.uniform(0.1, 0.9, (n, k)).astype(np.float32)
    sims[2, 1] = -0.3  # a negative similarity is clipped to 0
    knn = Knn(nbrs, sims)
    x = np.eye(n, dtype=np.float32)
    props = Proposals.from_lists([rng.choice(n, 12, replace=False) for _ in range(5)] + [[7]])
    idx = np.array([3, 0, 5, 1])
    batch = dsgcn.build_batch(x, knn, props, idx)
    raw = batch.adj * batch.degree[:, :, None]  # undo the row normalisation
    for b, p in enumerate(idx):
        members = list(props.members(p))
        want = np.eye(batch.adj.shape[1], dtype=np.float32)
        for a, i in enumerate(members):
            for c, j in enumerate(nbrs[i]):
                if j >= 0 and j != i and j in members:
                    m = members.index(j)
                    w = max(sims[i, c], 0.0)
                    want[a, m] = max(want[a, m], w)
                    want[m, a] = max(want[m, a], w)
        size = len(members)
        assert (want[:size, :size] > 0).sum() > size or size == 1
        np.testing.assert_allclose(raw[b, :size, :size], want[:size, :size], atol=1e-6)


def test_batch_is_padded_with_zero_rows_and_identity(problem):
    x, _, knn, props = problem
    idx = np.array([0, 5, 7])
    batch = dsgcn.build_batch(x, knn, props, idx)
    sizes = props.sizes[idx]
    n = sizes.max()
    assert batch.x.shape == (3, n, x.shape[1]) and batch.adj.shape == (3, n, n)
    np.testing.assert_allclose(batch.adj.sum(axis=2), 1.0, rtol=1e-5)
    for b, p in enumerate(idx):
        s = sizes[b]
        assert batch.mask[b, :s].all() and not batch.mask[b, s:].any()
        np.testing.assert_array_equal(batch.items[b, :s], props.members(p))
        np.testing.assert_allclose(batch.x[b, :s], x[props.members(p)])
        assert not batch.x[b, s:].any()
        np.testing.assert_array_equal(batch.adj[b, s:, s:], np.eye(n - s))
        assert not batch.adj[b, :s, s:].any() and not batch.adj[b, s:, :s].any()
        raw = batch.adj[b, :s, :s] * batch.degree[b, :s, None]  # undo the row normalisation
        np.testing.assert_allclose(raw, raw.T, atol=1e-6)
        np.testing.assert_allclose(np.diag(raw), 1.0, rtol=1e-6)
    seeded = dsgcn.with_seed(batch, np.array([0, 2, 1]))
    assert seeded.x.shape[2] == x.shape[1] + 1
    np.testing.assert_array_equal(seeded.x[:, :, -1].argmax(axis=1), [0, 2, 1])
    assert seeded.x[:, :, -1].sum() == 3


def test_size_batches_cover_every_proposal_once_with_bounded_padding():
    sizes = np.random.default_rng(0).integers(3, 301, 2000)
    batches = dsgcn.size_batches(sizes, max_batch=64, cell_budget=1 << 20, ratio=1.25)
    flat = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(flat), np.arange(sizes.size))
    for b in batches:
        assert b.size <= 64 and b.size * sizes[b].max() ** 2 <= max(1 << 20, sizes[b].max() ** 2)
        assert sizes[b].max() <= 1.25 * sizes[b].min() + 1


# ------------------------------------------------------------------------------- the net


def test_forward_shapes_det_and_seg(problem):
    x, _, knn, props = problem
    batch = dsgcn.build_batch(x, knn, props, np.array([1, 2, 3]))
    det = dsgcn.DSGCN(x.shape[1], [32, 16], "det").eval()
    out = det(*batch.to(torch.device("cpu")))
    assert out.shape == (3,)
    seg = dsgcn.DSGCN(x.shape[1] + 1, [32, 16], "seg").eval()
    seeded = dsgcn.with_seed(batch, np.zeros(3, dtype=np.int64))
    logp = seg(*seeded.to(torch.device("cpu")))
    assert logp.shape == (3, batch.x.shape[1], 2)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, batch.x.shape[1]))
    # reference parameter layout: (in, out) weights without bias, a Linear classifier
    names = {k: tuple(v.shape) for k, v in det.state_dict().items()}
    assert names == {
        "layers.0.weight": (16, 32),
        "layers.1.weight": (32, 16),
        "classifier.weight": (1, 16),
        "classifier.bias": (1,),
    }
    assert det.layers[0].weight.abs().max() <= 1 / np.sqrt(32)


def test_padding_does_not_change_the_outputs(problem):
    x, _, knn, props = problem
    torch.manual_seed(0)
    det = dsgcn.DSGCN(x.shape[1], [32, 16], "det").eval()
    seg = dsgcn.DSGCN(x.shape[1] + 1, [32, 16], "seg").eval()
    idx = np.array([2, 9, 4])
    cpu = torch.device("cpu")
    together = dsgcn.build_batch(x, knn, props, idx, seed_local=np.array([1, 0, 2]))
    with torch.no_grad():
        d_all = det(*dsgcn.build_batch(x, knn, props, idx).to(cpu))
        s_all = seg(*together.to(cpu))
        for b, (p, s) in enumerate(zip(idx, [1, 0, 2], strict=True)):
            alone = dsgcn.build_batch(x, knn, props, np.array([p]), seed_local=np.array([s]))
            n = props.sizes[p]
            torch.testing.assert_close(
                det(*dsgcn.build_batch(x, knn, props, [p]).to(cpu))[0], d_all[b]
            )
            torch.testing.assert_close(seg(*alone.to(cpu))[0], s_all[b, :n])


def test_dropout_drops_whole_node_rows():
    torch.manual_seed(0)
    x = torch.ones(4, 50, 8)
    out = dsgcn.row_dropout(x, 0.5, training=True)
    rows = out[:, :, 0]
    assert set(torch.unique(out).tolist()) <= {0.0, 2.0}
    torch.testing.assert_close(out, rows[:, :, None].expand_as(out))  # whole rows
    assert 0 < (rows == 0).float().mean() < 1
    torch.testing.assert_close(dsgcn.row_dropout(x, 0.5, training=False), x)


def test_one_sgd_step_lowers_the_det_loss(problem):
    x, y, knn, props = problem
    _, iou, _ = gcnd.proposal_targets(props, y)
    torch.manual_seed(0)
    net = dsgcn.DSGCN(x.shape[1], [32, 16], "det", dropout=0.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    idx = np.arange(props.n_proposals)
    batch = dsgcn.build_batch(x, knn, props, idx)
    loss_fn = dsgcn.det_loss(iou)
    before, count = loss_fn(net, batch, idx, torch.device("cpu"))
    (before / count).backward()
    opt.step()
    with torch.no_grad():
        after, _ = loss_fn(net, batch, idx, torch.device("cpu"))
    assert after.item() < before.item()


# -------------------------------------------------------------------------------- targets


def test_targets_on_a_known_case():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, -1, -1, 3, 3])
    props = Proposals.from_lists(
        [
            [0, 1, 2, 3],  # exactly class 0
            [0, 1, 4, 7],  # tie 0 (2 items) vs 1 (2): the smaller identity
            [4, 5, 6, 8],  # class 1 majority with an unknown item
            [7, 8],  # no labelled item
            [9, 0],  # tie 3 vs 0 -> 0 (smaller)
        ]
    )
    majority, iou, iop = gcnd.proposal_targets(props, labels)
    np.testing.assert_array_equal(majority, [0, 0, 1, -1, 0])
    np.testing.assert_allclose(iou[[0, 1, 2, 4]], [1.0, 2 / 6, 2 / 4, 1 / 5], rtol=1e-6)
    np.testing.assert_allclose(iop[[0, 1, 2, 4]], [1.0, 2 / 4, 2 / 4, 1 / 2], rtol=1e-6)
    assert np.isnan(iou[3]) and np.isnan(iop[3])


# ----------------------------------------------------------------------------- de-overlap


def test_deoverlap_gives_each_item_its_best_proposal():
    props = Proposals.from_lists([[0, 1, 2], [2, 3, 4], [4, 5], [6, 7], [1, 8]])
    scores = np.array([0.5, 0.9, 0.5, 0.1, -2.0])
    labels = gcnd.deoverlap(props, scores, 10)
    # ranking: 1 (0.9), 0 (0.5, earlier of the tie), 2 (0.5), 3 (0.1); 4 below th_pos -1
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0, 2, 3, 3, -1, -1])
    labels = gcnd.deoverlap(props, scores, 10, th_pos=0.3)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0, 2, -1, -1, -1, -1])
    # NMS: proposal 0 (IoU 3/4 with the higher-ranked [0, 1, 2, 9]) is suppressed below 0.75
    props = Proposals.from_lists([[0, 1, 2], [0, 1, 2, 9], [5, 6]])
    scores = np.array([0.5, 0.9, 0.2])
    labels = gcnd.deoverlap(props, scores, 10, th_iou=0.7)
    np.testing.assert_array_equal(gcnd.nms(props, np.array([1, 0, 2]), 0.7), [1, 2])
    np.testing.assert_array_equal(labels, [0, 0, 0, -1, -1, 1, 1, -1, -1, 0])
    np.testing.assert_array_equal(gcnd.nms(props, np.array([1, 0, 2]), 0.8), [1, 0, 2])


# ------------------------------------------------------------------------------- model zoo


def _fake_reference(path, dims, classes, extra=None):
    gen = torch.Generator().manual_seed(0)
    state = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        state[f"module.base.layers.{i}.gc.weight"] = torch.randn(a, b, generator=gen)
    state["module.base.classifier.weight"] = torch.randn(classes, dims[-1], generator=gen)
    state["module.base.classifier.bias"] = torch.randn(classes, generator=gen)
    state.update(extra or {})
    torch.save({"state_dict": state, "meta": {"epoch": 30}}, path)
    return state


def test_released_weights_map_onto_the_net(tmp_path, problem):
    path = tmp_path / "pretrained_gcn_d_ms1m.pth"
    ref = _fake_reference(path, [16, 32, 8], 1)
    model = gcnd.load_pretrained({"det": str(path)})
    sd = model["det"]["state_dict"]
    torch.testing.assert_close(sd["layers.0.weight"], ref["module.base.layers.0.gc.weight"])
    torch.testing.assert_close(sd["layers.1.weight"], ref["module.base.layers.1.gc.weight"])
    torch.testing.assert_close(sd["classifier.weight"], ref["module.base.classifier.weight"])
    torch.testing.assert_close(sd["classifier.bias"], ref["module.base.classifier.bias"])
    assert model["det"]["hidden"] == [32, 8] and model["det"]["in_dim"] == 16
    x, _, knn, props = problem
    ctx = context({"te": props})
    labels = gcnd.cluster(x, knn, context=ctx, model=model, proposals="te")
    assert labels.shape == (x.shape[0],)

    bad = tmp_path / "extra.pth"
    _fake_reference(bad, [16, 32, 8], 1, {"module.base.layers.0.gc.bias": torch.zeros(32)})
    with pytest.raises(InputError, match=r"module\.base\.layers\.0\.gc\.bias"):
        gcnd.load_pretrained({"det": str(bad)})
    seg = tmp_path / "seg.pth"
    _fake_reference(seg, [17, 32, 8], 2)
    with pytest.raises(InputError, match="not a det net"):
        gcnd.load_pretrained({"det": str(seg)})


# --------------------------------------------------------------------------- end to end


def test_train_and_cluster_blobs_deterministically(problem, tmp_path):
    x, y, knn, props = problem
    ctx = context({"tr": props, "te": props})
    model = gcnd.train(x, y, knn, context=ctx, proposals="tr", **FAST)
    labels = gcnd.cluster(x, knn, context=ctx, model=model, proposals="te")
    m = metrics.evaluate(y, finalize_labels(labels))
    assert m["pairwise_f"] > 0.9, m
    again = gcnd.train(x, y, knn, context=ctx, proposals="tr", **FAST)
    for name, value in model["det"]["state_dict"].items():
        torch.testing.assert_close(value, again["det"]["state_dict"][name], rtol=0, atol=0)
    np.testing.assert_array_equal(
        labels, gcnd.cluster(x, knn, context=ctx, model=again, proposals="te")
    )
    # the model survives torch.save / weights_only load
    torch.save(model, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    np.testing.assert_array_equal(
        labels, gcnd.cluster(x, knn, context=ctx, model=loaded, proposals="te")
    )


def test_training_resumes_from_its_checkpoint(problem, tmp_path, monkeypatch):
    x, y, knn, props = problem
    settings = {**FAST, "epochs": 3}
    full = gcnd.train(x, y, knn, context=context({"tr": props}), proposals="tr", **settings)
    ckpt = tmp_path / "ckpt.pt"
    ctx = context({"tr": props}, checkpoint=str(ckpt))
    real = dsgcn.det_loss
    calls = {"n": 0}

    def failing(targets):
        fn = real(targets)

        def wrapped(*args):
            calls["n"] += 1
            if calls["n"] > 12:  # fails during the second epoch
                raise KeyboardInterrupt
            return fn(*args)

        return wrapped

    monkeypatch.setattr(dsgcn, "det_loss", failing)
    with pytest.raises(KeyboardInterrupt):
        gcnd.train(x, y, knn, context=ctx, proposals="tr", **settings)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["iteration"] == 1 and saved["extra"]["tag"] == "det"
    monkeypatch.setattr(dsgcn, "det_loss", real)
    resumed = gcnd.train(x, y, knn, context=ctx, proposals="tr", **settings)
    for name, value in full["det"]["state_dict"].items():
        torch.testing.assert_close(value, resumed["det"]["state_dict"][name], rtol=0, atol=0)


def test_a_missing_proposal_set_is_named(problem):
    x, y, knn, props = problem
    with pytest.raises(InputError, match="'nope'.*'tr'"):
        gcnd.train(x, y, knn, context=context({"tr": props}), proposals="nope", **FAST)
    out_of_range = Proposals.from_lists([[0, 1, x.shape[0]]])
    with pytest.raises(InputError, match="'te'.*outside"):
        gcnd.cluster(x, knn, context=context({"te": out_of_range}), model={}, proposals="te")


def test_estimate_grows_with_n_and_epochs():
    spec = gcnd.SPEC
    small = spec.cost(10_000, 256, 80, params={}, train_params={}, train=False, threads=2)
    big = spec.cost(100_000, 256, 80, params={}, train_params={}, train=False, threads=2)
    assert big.memory_bytes > small.memory_bytes and big.seconds > 5 * small.seconds
    tr = spec.cost(10_000, 256, 80, params={}, train_params={}, train=True, threads=2)
    assert tr.seconds > 30 * small.seconds
