"""GCN-E: candidate subgraphs, ignore set, the batched model and loss, end-to-end on blobs
(on top of a tiny GCN-V), determinism, and the released-weights mapping."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _problems import blobs

from facecluster import metrics
from facecluster.graph import symmetric_normalized_adjacency
from facecluster.io import InputError, Knn
from facecluster.knn import brute_force_knn, build_knn
from facecluster.methods import Context, gcne, gcnv
from facecluster.nn import gcne as impl
from facecluster.nn import gcnv as gcnv_impl

# ----------------------------------------------------------------------------- subgraphs

#: hand-made graph: 6 nodes, k = 4, self first, rows by descending similarity
CONF = np.array([0.9, 0.5, 0.7, 0.1, 0.3, 0.8], dtype=np.float32)
NBRS = np.array(
    [[0, 5, 2, 1], [1, 2, 0, 3], [2, 1, 5, 0], [3, 4, 1, -1], [4, 3, 2, 5], [5, 0, 2, 4]],
    dtype=np.int32,
)
SIMS = np.array(
    [[1, 0.9, 0.8, 0.7], [1, 0.9, 0.8, 0.7], [1, 0.9, 0.8, 0.7], [1, 0.9, 0.8, -1]]
    + [[1, 0.9, 0.8, 0.7]] * 2,
    dtype=np.float32,
)


def test_ignore_set_is_the_smallest_confidences():
    assert np.flatnonzero(gcne.ignore_mask(CONF, 1 / 3)).tolist() == [3, 4]
    assert np.flatnonzero(gcne.ignore_mask(CONF, 0.5)).tolist() == [1, 3, 4]
    assert not gcne.ignore_mask(CONF, 0.0).any()
    assert gcne.ignore_mask(CONF, 1.0).all()
    # ties: the lower index is ignored first (deterministic)
    assert np.flatnonzero(gcne.ignore_mask(np.zeros(4, np.float32), 0.5)).tolist() == [0, 1]


def test_plan_roots_heuristic_peaks_and_subgraph_nodes():
    knn = Knn(NBRS, SIMS)
    plan = gcne.plan_subgraphs(knn, CONF, gcne.ignore_mask(CONF, 1 / 3))
    # node 0: highest confidence -> root; 5: one candidate (0); 3, 4: ignored
    assert plan.count.tolist() == [0, 2, 2, 2, 2, 1]
    assert plan.peaks.tolist() == [-1, 2, 5, 4, 2, 0]
    np.testing.assert_allclose(plan.peak_sims, [-np.inf, 0.9, 0.8, 0.9, 0.8, 0.9])
    assert plan.subgraph_nodes.tolist() == [1, 2]
    cand, pos = gcne.candidates(knn, CONF, np.array([1, 2, 3, 5]))
    # kNN order kept, self and padding excluded, left-aligned with -1 padding
    assert cand.tolist() == [[2, 0], [5, 0], [4, 1], [0, -1]]
    assert pos.tolist() == [[1, 2], [2, 3], [1, 2], [1, -1]]


def test_subgraph_tensors_match_a_direct_construction():
    rng = np.random.default_rng(0)
    x, y = blobs(n=60, groups=3, dim=8, seed=1)
    knn = brute_force_knn(x, 12)
    conf = rng.random(60).astype(np.float32)
    adj = symmetric_normalized_adjacency(knn, 0.0)
    centres = np.array([3, 17, 40, 59])
    cand, pos = gcne.candidates(knn, conf, centres)
    a = gcne.subgraph_adjacency(adj, cand)
    f = gcne.subgraph_features(x, centres, cand)
    lab = gcne.subgraph_labels(y, centres, cand)
    for b, i in enumerate(centres):
        c = cand[b][cand[b] >= 0]
        want = [j for j in knn.nbrs[i] if j != i and conf[j] > conf[i]]
        assert c.tolist() == want
        np.testing.assert_array_equal(knn.nbrs[i, pos[b, : c.size]], c)
        sub = adj[c][:, c].toarray()
        sub = sub / sub.sum(axis=1, keepdims=True)
        m = c.size
        np.testing.assert_allclose(a[b, :m, :m], sub, rtol=1e-6)
        assert not a[b, m:].any() and not a[b, :, m:].any()
        np.testing.assert_allclose(f[b, :m], x[c] - x[i], rtol=1e-6)
        assert not f[b, m:].any()
        assert lab[b, :m].tolist() == (y[c] == y[i]).astype(int).tolist()
        assert (lab[b, m:] == -1).all()


def test_unknown_labels_are_masked():
    y = np.array([0, 0, -1, 1])
    cand = np.array([[1, 2, 3, -1]])
    assert gcne.subgraph_labels(y, np.array([0]), cand).tolist() == [[1, -1, 0, -1]]
    assert (gcne.subgraph_labels(y, np.array([2]), cand) == -1).all()


def test_subgraph_adjacency_of_padding_only():
    adj = sp.identity(3, format="csr", dtype=np.float32)
    assert not gcne.subgraph_adjacency(adj, np.full((2, 3), -1)).any()


# ----------------------------------------------------------------------------- model


def _random_graphs(sizes, dim, seed=0):
    """Unpadded subgraphs: list of (x (m, dim), adj (m, m) row-normalised, y (m,))."""
    rng = np.random.default_rng(seed)
    out = []
    for m in sizes:
        a = (rng.random((m, m)) < 0.5).astype(np.float32) + np.eye(m, dtype=np.float32)
        a = a / a.sum(axis=1, keepdims=True)
        x = rng.standard_normal((m, dim)).astype(np.float32)
        out.append((x, a, rng.integers(0, 2, m)))
    return out


def _pad(graphs, dim):
    m = max(g[0].shape[0] for g in graphs)
    x = np.zeros((len(graphs), m, dim), np.float32)
    a = np.zeros((len(graphs), m, m), np.float32)
    y = np.full((len(graphs), m), -1, np.int64)
    for b, (gx, ga, gy) in enumerate(graphs):
        k = gx.shape[0]
        x[b, :k], a[b, :k, :k], y[b, :k] = gx, ga, gy
    return torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(y)


def test_forward_shapes_and_log_probabilities():
    torch.manual_seed(0)
    net = impl.GCNE(8, 16)
    x, a, _ = _pad(_random_graphs([3, 5, 2], 8), 8)
    out = net(x, a)
    assert out.shape == (3, 5, 2)
    np.testing.assert_allclose(out.exp().sum(-1).detach().numpy(), 1.0, rtol=1e-5)
    half = [p.shape for n, p in net.named_parameters() if n.startswith("conv4")]
    assert half == [torch.Size([8, 16]), torch.Size([8])]


def test_batched_gradient_equals_the_accumulated_one():
    """Padding is isolated and masked: one padded batch gives the reference's gradient of
    single-graph iterations accumulated and averaged over iter_size."""
    torch.manual_seed(0)
    net = impl.GCNE(8, 16)
    graphs = _random_graphs([3, 6, 2, 5], 8)
    x, a, y = _pad(graphs, 8)
    batched = {}
    for valid in (None, y >= 0):  # padding computed and isolated, or skipped
        net.zero_grad()
        impl.masked_loss(net(x, a, valid), y).backward()
        batched[valid is None] = {n: p.grad.clone() for n, p in net.named_parameters()}
        # padded nodes do not change the real nodes' outputs
        out = net(x, a, valid)
        for b, (gx, ga, _) in enumerate(graphs):
            alone = net(torch.from_numpy(gx)[None], torch.from_numpy(ga)[None])[0]
            torch.testing.assert_close(out[b, : gx.shape[0]], alone, rtol=1e-5, atol=1e-6)
    net.zero_grad()
    for gx, ga, gy in graphs:  # the reference: one graph per iteration, loss / iter_size
        logp = net(torch.from_numpy(gx)[None], torch.from_numpy(ga)[None]).view(-1, 2)
        loss = torch.nn.functional.nll_loss(logp, torch.from_numpy(gy)) / len(graphs)
        loss.backward()
    for grads in batched.values():
        for n, p in net.named_parameters():
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_one_sgd_step_lowers_the_loss():
    torch.manual_seed(0)
    net = impl.GCNE(8, 16)
    x, a, y = _pad(_random_graphs([4, 6, 3], 8, seed=2), 8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    before = impl.masked_loss(net(x, a), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert impl.masked_loss(net(x, a), y).item() < before.item()


# ----------------------------------------------------------------------------- end to end

K = 10
GCN_K = 20


@pytest.fixture(scope="module")
def upstream():
    """A tiny GCN-V trained on blobs, and its inference output (the ``upstream`` input)."""
    x, y = blobs(n=240, groups=6, dim=16, noise=0.4, seed=0)
    knn = brute_force_knn(x, K)
    ctx = Context(seed=0, threads=1, device="cpu")
    model = gcnv_impl.train(x, y, knn, context=ctx, hidden=16, epochs=200, lr=0.1)
    out = gcnv.infer(x, knn, model, context=ctx)
    return x, y, knn, model, out


def _ctx(out, seed=0):
    return Context(seed=seed, threads=1, device="cpu", extra={"upstream": out})


def _train(x, y, knn, out, seed=0):
    return gcne.train(
        x, y, knn, context=_ctx(out, seed), gcn_k=GCN_K, ignore_ratio=0.0, hidden=16, epochs=20
    )


def test_infer_returns_confidence_and_raw_features(upstream):
    x, _, knn, model, out = upstream
    assert set(out) == {"confidence", "features"}
    assert out["confidence"].shape == (240,) and out["confidence"].dtype == np.float32
    assert out["features"].shape == (240, 16) and out["features"].dtype == np.float32
    conf, hidden = gcnv.predict(x, knn, model, context=Context(device="cpu"))
    np.testing.assert_array_equal(out["features"], hidden)  # not normalised
    np.testing.assert_array_equal(out["confidence"], conf)


def test_end_to_end_on_blobs_and_determinism(upstream):
    x, y, knn, _, out = upstream
    model = _train(x, y, knn, out)
    assert np.isfinite(model["loss"]) and model["loss"] < 0.2
    labels, scores = gcne.cluster(
        x, knn, context=_ctx(out), model=model, tau=0.5, gcn_k=GCN_K, ignore_ratio=0.0
    )
    np.testing.assert_array_equal(scores["confidence"], out["confidence"])
    assert labels.dtype == np.int64 and labels.shape == (240,)
    assert metrics.evaluate(y, labels)["pairwise_f"] > 0.85
    # same seed: the same model and the same labels
    again = _train(x, y, knn, out)
    for name, value in model["state_dict"].items():
        torch.testing.assert_close(value, again["state_dict"][name], rtol=0, atol=0)
    labels2 = gcne.cluster(
        x, knn, context=_ctx(out), model=again, tau=0.5, gcn_k=GCN_K, ignore_ratio=0.0
    ).labels
    np.testing.assert_array_equal(labels, labels2)
    # ignore_ratio 1: every node keeps GCN-V's nearest higher-confidence peak
    heuristic = impl.predict_peaks(x, knn, model, context=_ctx(out), gcn_k=GCN_K, ignore_ratio=1.0)
    gknn = build_knn(gcne.read_upstream(_ctx(out), 240)[1], GCN_K, threads=1)
    peaks, _ = gcnv.confidence_to_peaks(gknn, out["confidence"])
    np.testing.assert_array_equal(heuristic[0], peaks)


def test_max_nodes_subsamples_and_the_model_round_trips(upstream, tmp_path):
    x, y, knn, _, out = upstream
    model = gcne.train(
        x, y, knn, context=_ctx(out), gcn_k=GCN_K, hidden=8, epochs=2, max_nodes=10, iter_size=4
    )
    torch.save(model, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert back["family"] == "gcne" and back["in_dim"] == 16 and back["hidden"] == 8


def test_missing_or_mismatched_upstream_is_an_input_error(upstream):
    x, y, knn, _, out = upstream
    with pytest.raises(InputError, match="upstream"):
        gcne.train(x, y, knn, context=Context(device="cpu"), epochs=1)
    short = {"confidence": out["confidence"][:5], "features": out["features"][:5]}
    with pytest.raises(InputError, match="240 items"):
        gcne.cluster(x, knn, context=_ctx(short), model={})


def test_estimate_grows_with_n_and_gcn_k():
    spec = gcne.SPEC
    kw = {"train_params": {}, "threads": 2}
    small = spec.cost(6000, 256, 80, params={}, train=False, **kw)
    big = spec.cost(52000, 256, 80, params={}, train=False, **kw)
    assert big.memory_bytes > small.memory_bytes and big.seconds > small.seconds
    k40 = spec.cost(6000, 256, 80, params={"gcn_k": 40}, train=False, **kw)
    assert k40.seconds < small.seconds
    t = spec.cost(6000, 256, 80, params={}, train=True, threads=2, train_params={})
    t_sub = spec.cost(
        6000, 256, 80, params={}, train=True, threads=2, train_params={"max_nodes": 200}
    )
    assert t_sub.seconds < t.seconds
    assert spec.needs == ("upstream",) and spec.supervised and spec.gpu


# ----------------------------------------------------------------------------- model zoo


def _reference_state(in_dim=12, nhid=8, prefix="module."):
    """A fake checkpoint with learn-to-cluster's GCN_E names and shapes."""
    g = torch.Generator().manual_seed(0)
    half = nhid // 2
    dims = {1: (in_dim, nhid), 2: (nhid, nhid), 3: (nhid, half), 4: (half, half)}
    state = {}
    for i, (a, b) in dims.items():
        state[f"{prefix}conv{i}.weight"] = torch.randn(2 * a, b, generator=g)
        state[f"{prefix}conv{i}.bias"] = torch.randn(b, generator=g)
    state[f"{prefix}classifier.0.weight"] = torch.randn(half, half, generator=g)
    state[f"{prefix}classifier.0.bias"] = torch.randn(half, generator=g)
    state[f"{prefix}classifier.1.weight"] = torch.rand(half, generator=g)
    state[f"{prefix}classifier.2.weight"] = torch.randn(2, half, generator=g)
    state[f"{prefix}classifier.2.bias"] = torch.randn(2, generator=g)
    return state


@pytest.mark.parametrize("prefix", ["", "module.", "module.base."])
def test_released_weights_map_onto_our_model(tmp_path, prefix):
    state = _reference_state(prefix=prefix)
    path = tmp_path / "pretrained_gcn_e_ms1m.pth"
    torch.save({"state_dict": state, "meta": {}}, path)
    model = gcne.load_pretrained({"model": str(path)})
    assert (model["in_dim"], model["hidden"]) == (12, 8)
    sd = model["state_dict"]
    torch.testing.assert_close(sd["conv1.linear.weight"], state[f"{prefix}conv1.weight"].t())
    torch.testing.assert_close(sd["conv4.linear.bias"], state[f"{prefix}conv4.bias"])
    torch.testing.assert_close(sd["head.1.weight"], state[f"{prefix}classifier.1.weight"])
    torch.testing.assert_close(sd["head.2.weight"], state[f"{prefix}classifier.2.weight"])
    # the mapped model computes the reference GraphConv: ReLU([X | AX] W + b)
    net = impl.GCNE(12, 8)
    net.load_state_dict(sd)
    x, a, _ = _pad(_random_graphs([4], 12), 12)
    w, b = state[f"{prefix}conv1.weight"], state[f"{prefix}conv1.bias"]
    want = torch.relu(torch.cat([x, a @ x], -1) @ w + b)
    torch.testing.assert_close(net.conv1(x, a), want, rtol=1e-5, atol=1e-5)


def test_unknown_reference_name_is_an_input_error(tmp_path):
    state = _reference_state()
    state["module.conv5.weight"] = torch.zeros(8, 8)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(InputError, match="module.conv5.weight"):
        gcne.load_pretrained({"model": str(path)})
    state = _reference_state()
    state["module.classifier.2.weight"] = torch.zeros(1, 4)  # a regressor head (nclass 1)
    state["module.classifier.2.bias"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(InputError, match="classifier.2"):
        gcne.load_pretrained({"model": str(path)})
