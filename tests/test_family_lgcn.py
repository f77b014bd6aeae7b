"""L-GCN: instance pivot subgraphs, the model, training, clustering and released weights."""

import numpy as np
import pytest
import torch
from _problems import blobs

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import InputError, Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, get_spec
from facecluster.methods import lgcn as family
from facecluster.nn import lgcn as impl

CPU = torch.device("cpu")
#: a short training for tiny problems (the defaults are MS1M's): k 30 > the groups' 20
#: items, so a third of the hop-1 links are negatives to learn from
FAST = {
    "k_at_hop": [30, 2],
    "active_connection": 2,
    "epochs": 3,
    "lr": 0.05,
    "batch_size": 8,
    "milestones": [1.0],
}
TEST = {"k_at_hop": [30, 2], "active_connection": 2, "max_sz": 30, "step": 0.6}


def _groups(n=160, seed=1):
    """Eight blobs of about 20 items and their k=30 kNN."""
    x, y = blobs(n=n, groups=8, dim=16, noise=0.6, seed=seed)
    return x, y, brute_force_knn(x, 30)


def _tiny():
    """Six items on a path-like kNN (k 3, self first) and two identities."""
    nbrs = np.array(
        [[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 4], [4, 3, 5], [5, 4, 3]], dtype=np.int32
    )
    knn = Knn(nbrs, np.ones(nbrs.shape, np.float32))
    feats = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    return feats, knn, np.array([0, 0, 0, 1, 1, 1])


def test_subgraph_nodes_hop1_order_adjacency_and_labels():
    feats, knn, labels = _tiny()
    g = impl.SubgraphBuilder(feats, knn, [2, 1], 1, CPU, labels).build([0, 3, 5])
    # pivot first, hop-1 in kNN order, then hop-2 by first appearance; -1 pads
    assert g.nodes.tolist() == [[0, 1, 2, 3], [3, 2, 4, -1], [5, 4, 3, 2]]
    assert g.hop1.tolist() == [[1, 2]] * 3 and g.hop1_mask.all()
    assert g.labels.tolist() == [[1, 1], [0, 1], [1, 1]]
    a = g.adj.numpy()
    # pivot 3: 3 -> 2, 2 -> 3, 4 -> 3 (u = 1) gives 3-2 and 3-4, degree 2 at the pivot
    np.testing.assert_allclose(a[1, :3, :3], [[0, 0.5, 0.5], [1, 0, 0], [1, 0, 0]])
    assert not a[1, 3].any() and not a[1, :, 3].any()  # padding is isolated
    for b in range(3):
        real = g.node_mask[b].numpy()
        binary = a[b][np.ix_(real, real)] > 0
        assert (binary == binary.T).all() and not np.diag(binary).any()
        np.testing.assert_allclose(a[b][real].sum(axis=1), 1.0)
    # features are relative to the pivot, zero on padding
    np.testing.assert_allclose(g.features[1, 1].numpy(), feats[2] - feats[3], rtol=1e-6)
    assert not g.features[1, 3].any()


def test_subgraphs_match_a_per_pivot_construction():
    """The batched builder against the reference's set-based construction, pivot by pivot."""
    x, y = blobs(n=120, groups=5, dim=8)
    knn = brute_force_knn(x, 8)
    k_at_hop, u = [200, 3], 4
    g = impl.SubgraphBuilder(x, knn, k_at_hop, u, CPU, y).build(np.arange(knn.n))
    nb = knn.nbrs
    for p in range(knn.n):
        hop1 = list(nb[p, 1:])
        hop2 = {int(w) for h in hop1 for w in nb[h, 1 : 1 + k_at_hop[1]]}
        expected = {p, *hop1, *hop2}
        nodes = [v for v in g.nodes[p].tolist() if v >= 0]
        assert sorted(nodes) == sorted(expected) and nodes[0] == p
        assert [nodes[i] for i in g.hop1[p].tolist()] == hop1
        edges = {
            frozenset((int(v), int(w))) for v in nodes for w in nb[v, 1 : 1 + u] if w in expected
        }
        got = g.adj[p].numpy() > 0
        ours = {frozenset((nodes[i], nodes[j])) for i, j in zip(*np.nonzero(got), strict=True)}
        assert ours == edges
        assert g.labels[p].tolist() == [int(y[h] == y[p]) for h in hop1]


def test_missing_neighbours_and_unknown_labels_are_ignored():
    feats, knn, labels = _tiny()
    nbrs = knn.nbrs.copy()
    nbrs[0, 2] = -1
    labels = labels.copy()
    labels[1] = -1
    b = impl.SubgraphBuilder(feats, Knn(nbrs, knn.sims), [2, 2], 2, CPU, labels)
    g = b.build([0])
    assert g.hop1_mask.tolist() == [[True, False]]
    assert g.labels.tolist() == [[impl.IGNORE, impl.IGNORE]]
    assert torch.isfinite(g.adj).all()


def test_padded_batchnorm_equals_the_reference_padding():
    """Statistics over the virtual zero rows = nn.BatchNorm1d over explicitly padded rows."""
    x, y = blobs(n=80, groups=4, dim=8)
    knn = brute_force_knn(x, 6)
    g = impl.SubgraphBuilder(x, knn, [5, 5], 3, CPU).build(np.arange(4))
    pad = 40
    ours = impl.PaddedBatchNorm(8).train()
    out = ours(g.features, g.node_mask, pad)
    ref = torch.nn.BatchNorm1d(8, affine=False).train()
    b, n, d = g.features.shape
    padded = torch.zeros(b, pad, d)
    padded[:, :n] = g.features
    expect = ref(padded.reshape(-1, d)).reshape(b, pad, d)[:, :n]
    m = g.node_mask
    torch.testing.assert_close(out[m], expect[m], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(
        ours(g.features, m)[m], ref(g.features.reshape(-1, d)).reshape(b, n, d)[m]
    )


def test_forward_shapes_and_one_step_loss_decrease():
    torch.manual_seed(0)
    x, y = blobs(n=96, groups=4, dim=16)
    knn = brute_force_knn(x, 10)
    g = impl.SubgraphBuilder(x, knn, [200, 10], 10, CPU, y).build(np.arange(16))
    net = impl.LGCN(16).train()
    logits = net(g, impl.max_num_nodes([200, 10]))
    assert logits.shape == (16, 9, 2)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=impl.IGNORE)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    before = loss_fn(logits.reshape(-1, 2), g.labels.reshape(-1))
    opt.zero_grad()
    before.backward()
    opt.step()
    after = loss_fn(net(g, 2201).reshape(-1, 2), g.labels.reshape(-1))
    assert after.item() < before.item()


@pytest.fixture(scope="module")
def trained():
    x, y, knn = _groups()
    ctx = Context(seed=0, threads=1, device="cpu")
    return family.train(x, y, knn, context=ctx, **FAST), ctx


def test_train_then_cluster_finds_the_groups(trained):
    model, ctx = trained
    x, y, knn = _groups()
    pred = family.cluster(x, knn, context=ctx, model=model, **TEST)
    assert pred.shape == y.shape and pred.dtype == np.int64 and pred.min() >= 0
    m = metrics.evaluate(y, finalize_labels(pred))
    assert m["pairwise_f"] > 0.9, m
    # the propagation's first pass takes all kNN edges: one component when max_sz allows
    merged = family.cluster(x, knn, context=ctx, model=model, **{**TEST, "max_sz": 300})
    assert np.unique(merged).size == 1


def test_scores_separate_unseen_groups(trained):
    model, ctx = trained
    x, y, knn = _groups(seed=2)  # other groups than in training
    pairs, scores = family.predict_edges(
        x, knn, model, context=ctx, k_at_hop=[30, 2], active_connection=2
    )
    assert pairs.shape == (160 * 29, 2) and scores.dtype == np.float32
    same = y[pairs[:, 0]] == y[pairs[:, 1]]
    # ROC AUC of the link scores (ties count half): well above chance on new identities
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    auc = (ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert auc > 0.8, auc


@pytest.fixture(scope="module")
def small_model():
    """Two epochs on 64 items: (model, problem, train params)."""
    x, y, knn = _groups(n=64)
    fast = {**FAST, "epochs": 2}
    return family.train(x, y, knn, context=Context(seed=0, device="cpu"), **fast), (x, y, knn), fast


def test_training_and_clustering_are_deterministic(trained, small_model):
    model, (x, y, knn), fast = small_model
    again = family.train(x, y, knn, context=Context(seed=0, device="cpu"), **fast)
    for name, value in model["state_dict"].items():
        torch.testing.assert_close(value, again["state_dict"][name], rtol=0, atol=0)
    other = family.train(x, y, knn, context=Context(seed=1, device="cpu"), **fast)
    assert not torch.equal(
        other["state_dict"]["conv1.linear.weight"], again["state_dict"]["conv1.linear.weight"]
    )
    model, ctx = trained
    x, y, knn = _groups()
    a = family.cluster(x, knn, context=ctx, model=model, **TEST)
    b = family.cluster(x, knn, context=ctx, model=model, **{**TEST, "batch_size": 5})
    np.testing.assert_array_equal(a, b)  # batching does not change the partition


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_model(small_model, tmp_path, monkeypatch):
    full, (x, y, knn), fast = small_model
    ctx = Context(seed=0, device="cpu", checkpoint=str(tmp_path / "ckpt.pt"))
    save = impl._save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise _Stop  # the job dies right after epoch 1's checkpoint

    monkeypatch.setattr(impl, "_save_checkpoint", save_then_stop)
    with pytest.raises(_Stop):
        family.train(x, y, knn, context=ctx, **fast)
    monkeypatch.setattr(impl, "_save_checkpoint", save)
    resumed = family.train(x, y, knn, context=ctx, **fast)
    for name, value in full["state_dict"].items():
        torch.testing.assert_close(value, resumed["state_dict"][name], rtol=0, atol=0)


def test_max_pivots_subsamples_training():
    a = impl._epoch_pivots(300, 0, 0, 50)
    assert a.size == 50 and np.unique(a).size == 50
    assert not np.array_equal(a, impl._epoch_pivots(300, 0, 1, 50))
    assert impl._epoch_pivots(300, 0, 0, 0).size == 300
    x, y, knn = _groups(n=64)
    model = family.train(x, y, knn, context=Context(device="cpu"), **{**FAST, "max_pivots": 16})
    assert np.isfinite(model["loss"])


def test_model_is_saved_with_weights_only(trained, tmp_path):
    model, _ = trained
    torch.save(model, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert back["in_dim"] == 16 and back["k_at_hop"] == [30, 2]


def _reference_checkpoint(prefix="module."):
    """A fake learn-to-cluster checkpoint with the reference's names and shapes."""
    g = torch.Generator().manual_seed(0)
    state = {
        "bn0.running_mean": torch.randn(256, generator=g),
        "bn0.running_var": torch.rand(256, generator=g) + 0.5,
        "bn0.num_batches_tracked": torch.tensor(7),
    }
    for i, (a, b) in enumerate([(256, 512), (512, 512), (512, 256), (256, 256)], start=1):
        state[f"conv{i}.weight"] = torch.randn(2 * a, b, generator=g) * 0.02
        state[f"conv{i}.bias"] = torch.randn(b, generator=g) * 0.02
    state["classifier.0.weight"] = torch.randn(256, 256, generator=g) * 0.05
    state["classifier.0.bias"] = torch.randn(256, generator=g) * 0.05
    state["classifier.1.weight"] = torch.full((256,), 0.25)
    state["classifier.2.weight"] = torch.randn(2, 256, generator=g) * 0.05
    state["classifier.2.bias"] = torch.randn(2, generator=g) * 0.05
    return {"state_dict": {prefix + k: v for k, v in state.items()}, "meta": {"epoch": 4}}


def test_released_weights_map_onto_our_model(tmp_path):
    ckpt = _reference_checkpoint()
    path = tmp_path / "pretrained_lgcn_ms1m.pth"
    torch.save(ckpt, path)
    model = family.load_pretrained({"model": str(path)})
    ref = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    sd = model["state_dict"]
    assert model["in_dim"] == 256
    torch.testing.assert_close(sd["conv1.linear.weight"], ref["conv1.weight"].t())
    torch.testing.assert_close(sd["conv3.linear.bias"], ref["conv3.bias"])
    torch.testing.assert_close(sd["classifier.1.weight"], ref["classifier.1.weight"])
    assert int(sd["bn0.num_batches_tracked"]) == 7
    # the mapped model computes the reference's GraphConv: relu(cat[X, AX] @ W + b)
    net = impl.LGCN(256)
    net.load_state_dict(sd)
    x, a = torch.randn(2, 5, 256), torch.softmax(torch.randn(2, 5, 5), dim=-1)
    want = torch.relu(torch.cat([x, a @ x], -1) @ ref["conv1.weight"] + ref["conv1.bias"])
    torch.testing.assert_close(net.conv1(x, a), want, rtol=1e-4, atol=1e-4)
    # and clusters
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((40, 256)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    knn = brute_force_knn(feats, 6)
    ctx = Context(seed=0, threads=1, device="cpu")
    pred = family.cluster(feats, knn, context=ctx, model=model, k_at_hop=[80, 10])
    assert pred.shape == (40,)


def test_unknown_reference_parameter_is_named(tmp_path):
    ckpt = _reference_checkpoint(prefix="")
    ckpt["state_dict"]["conv5.weight"] = torch.zeros(512, 256)
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(InputError, match="conv5.weight"):
        family.load_pretrained({"model": str(path)})


def test_estimate_grows_with_n_and_subgraph_size():
    spec = get_spec("lgcn")
    small = spec.cost(6000, 256, 80, params={}, train_params={}, train=False, threads=2)
    big = spec.cost(52000, 256, 80, params={}, train_params={}, train=False, threads=2)
    lean = spec.cost(
        52000, 256, 10, params={"k_at_hop": [10, 3]}, train_params={}, train=False, threads=2
    )
    assert big.seconds > small.seconds and big.memory_bytes > small.memory_bytes
    assert lean.seconds < big.seconds / 5
    assert family.subgraph_nodes(80, [80, 10]) == 1 + 79 * 11
    tr = spec.cost(6000, 256, 80, params={}, train_params={}, train=True, threads=2)
    sub = spec.cost(
        6000, 256, 80, params={}, train_params={"max_pivots": 600}, train=True, threads=2
    )
    assert sub.seconds == pytest.approx(tr.seconds / 10)
