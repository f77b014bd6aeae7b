"""STAR-FC: SPSS sampling, the exact rewrites, node intimacy, training, clustering, weights."""

import logging

import numpy as np
import pytest
import torch
from _problems import blobs

from facecluster import metrics
from facecluster.io import InputError
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, get_spec
from facecluster.methods import starfc as family
from facecluster.nn import checkpoint
from facecluster.nn import starfc as impl

#: a short SPSS training for 20 groups of 30: 5 of each seed's 8 nearest clusters per sample
FAST = {
    "hidden": 32,
    "clusters": 5,
    "candidates": 8,
    "min_nodes": 10,
    "edge_chunks": 4,
    "epochs": 4,
    "lr": 0.05,
    "stop_loss": 0.0,
    "checkpoint_every": 7,
}


def _groups(seed=1, n=600, groups=20):
    x, y = blobs(n=n, groups=groups, dim=32, noise=0.8, seed=seed)
    return x, y, brute_force_knn(x, 20)


def _ctx(path=None, seed=0):
    return Context(seed=seed, threads=1, device="cpu", checkpoint=path and str(path))


@pytest.fixture(scope="module")
def trained():
    x, y, knn = _groups()
    return family.train(x, y, knn, context=_ctx(), **FAST)


# ---------------------------------------------------------------------------------- sampling


def test_class_centres_and_nearest_centres():
    x = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0], [0.8, 0.6]], np.float32)
    y = np.array([3, 3, 7, -1, 9])
    classes, centres = impl.class_centres(x, y)
    assert classes.tolist() == [3, 7, 9]
    np.testing.assert_allclose(centres[0], np.array([1.6, 0.8]) / np.hypot(1.6, 0.8), rtol=1e-6)
    np.testing.assert_allclose(centres[1:], x[[2, 4]])
    near = impl.nearest_centres(centres, 2)
    assert near[:, 0].tolist() == [0, 1, 2]  # self first
    assert near[1, 1] == 2 and near[2, 1] == 0  # cos(7, 9) = 0.6 < cos(9, 3)
    assert impl.nearest_centres(centres, 10).shape == (3, 3)  # capped at C


def test_sampler_keeps_cluster_membership_and_sizes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 40, size=30)
    y = np.repeat(np.arange(30) * 10, sizes)  # identities 0, 10, ... with gaps
    y = y[rng.permutation(y.size)]
    y[:5] = -1  # unknown items are never sampled
    x, _ = blobs(n=y.size, groups=1, dim=8, seed=1)
    sampler = impl.SubgraphSampler(x, y, clusters=6, candidates=9, node_ratio=0.9)
    assert sampler.n_classes == 30
    for seed_class in (0, 7, 29):
        items, picked = sampler.sample(seed_class, np.random.default_rng(seed_class))
        # the picks are `clusters` distinct classes among the seed's candidates
        assert picked.size == 6 and np.unique(picked).size == 6
        assert set(picked) <= set(sampler.nearest[seed_class])
        assert np.all(np.diff(items) > 0)  # sorted, no repeats
        # every item belongs to a picked cluster; each contributes int(0.9 x its size)
        ids = sampler.classes[picked]
        assert set(y[items]) <= set(ids) and (y[items] >= 0).all()
        for c in ids:
            size = int((y == c).sum())
            assert int((y[items] == c).sum()) == int(0.9 * size)
    a = sampler.sample(3, np.random.default_rng(5))[0]
    b = sampler.sample(3, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sampler.sample(3, np.random.default_rng(6))[0])


def test_sampler_takes_every_candidate_when_there_are_few():
    x, y = blobs(n=60, groups=3, dim=8)
    sampler = impl.SubgraphSampler(x, y, clusters=1300, candidates=1500, node_ratio=1.0)
    items, picked = sampler.sample(0, np.random.default_rng(0))
    assert picked.tolist() == [0, 1, 2] and items.tolist() == list(range(60))
    with pytest.raises(InputError, match="labelled"):
        impl.SubgraphSampler(x, np.full(60, -1), clusters=2, candidates=2, node_ratio=0.9)


def test_edge_chunks_cover_every_edge_once_per_pass():
    chunks = impl._edge_chunks(1000, 2, 40, np.random.default_rng(0))
    assert len(chunks) == 80 and {c.size for c in chunks} == {25}
    ids = np.concatenate(chunks)
    assert np.array_equal(np.sort(ids[:1000]), np.arange(1000))
    assert np.array_equal(np.sort(ids[1000:]), np.arange(1000))
    assert not np.array_equal(ids[:1000], ids[1000:])  # independent orders


# ------------------------------------------------------------------------- the exact rewrites


def test_head_on_node_terms_equals_the_head_on_the_concatenation():
    torch.manual_seed(0)
    net = impl.StarFC(16, 12)
    h = torch.randn(9, 12)
    src, dst = torch.tensor([0, 3, 3, 8, 5]), torch.tensor([1, 3, 7, 0, 2])
    u, v = net.node_terms(h)
    torch.testing.assert_close(net.pair_logits(u[src], v[dst]), net(h[src], h[dst]))


def test_subgraph_graph_is_the_symmetric_normalised_knn_with_self_loops():
    x, _ = blobs(n=50, groups=2, dim=8)
    adj = impl.subgraph_graph(x, 6, 0.0, threads=1, seed=0)
    np.testing.assert_allclose(np.asarray(adj.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    assert (adj.diagonal() > 0).all()
    pattern = (adj > 0).toarray()
    assert (pattern == pattern.T).all()


# ----------------------------------------------------------------------------- node intimacy


def test_node_intimacy_by_hand():
    # 0 -> 1, 0 -> 2, 1 -> 2, 2 -> 1, 2 -> 0, 3 -> 0; node 1 -> 3 only via 1 -> 2 -> ...
    src = np.array([0, 0, 1, 2, 2, 3, 1])
    dst = np.array([1, 2, 2, 1, 0, 0, 4])
    ni = family.node_intimacy(5, src, dst)
    # out-degrees: 0: 2, 1: 2, 2: 2, 3: 1, 4: 0
    # paths of length 2: 0->1: 0->2->1 (1); 0->2: 0->1->2 (1); 1->2: none (1->4 has no out)
    # 2->1: 2->0->1 (1); 2->0: none; 3->0: none; 1->4: deg(4) = 0 -> 0
    expected = [max(1 / 2, 1 / 2), 1 / 2, 0, 1 / 2, 0, 0, 0]
    np.testing.assert_allclose(ni, expected)
    assert ni.dtype == np.float32


def test_node_intimacy_equals_dense_products_in_any_chunking():
    rng = np.random.default_rng(3)
    n = 60
    dense = rng.random((n, n)) < 0.15
    np.fill_diagonal(dense, False)
    src, dst = np.nonzero(dense)
    perm = rng.permutation(src.size)  # any input order
    src, dst = src[perm], dst[perm]
    b = dense.astype(np.int64)
    share = (b @ b)[src, dst]
    deg = b.sum(axis=1)
    expected = np.where(
        deg[dst] > 0, np.maximum(share / deg[src], share / np.maximum(deg[dst], 1)), 0
    )
    for budget in (1, 50, 1 << 25):
        np.testing.assert_allclose(
            family.node_intimacy(n, src, dst, max_products=budget), expected, rtol=1e-6
        )
    # a repeated edge counts once in B and gets its edge's value
    twice = family.node_intimacy(n, np.r_[src, src[:3]], np.r_[dst, dst[:3]])
    np.testing.assert_allclose(twice[-3:], expected[:3], rtol=1e-6)
    assert family.node_intimacy(n, src[:0], dst[:0]).size == 0


# ---------------------------------------------------------------------- training and clustering


def test_one_step_decreases_the_loss():
    x, y = blobs(n=120, groups=4, dim=16)
    adj = impl.subgraph_graph(x, 10, 0.0, threads=1, seed=0)
    torch.manual_seed(0)
    net = impl.StarFC(16, 16)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    xt = torch.from_numpy(x)
    ax = torch.from_numpy(adj.toarray()) @ xt
    src = torch.from_numpy(np.repeat(np.arange(120), np.diff(adj.indptr)))
    dst = torch.from_numpy(adj.indices.astype(np.int64))
    target = torch.from_numpy((y[src] == y[dst]).astype(np.int64))

    def loss():
        u, v = net.node_terms(net.embed(xt, ax))
        return torch.nn.functional.cross_entropy(net.pair_logits(u[src], v[dst]), target)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_training_records_its_stop_and_learns(trained):
    assert trained["stop_reason"] == "epochs" and trained["stopped_at"] == 4 * 20
    curve = trained["loss_curve"]
    assert curve.numel() == trained["trained"] == 80
    assert curve[-20:].mean() < 0.5 * curve[0]  # the first subgraph starts from scratch
    x, y, knn = _groups()
    stopped = family.train(x, y, knn, context=_ctx(), **{**FAST, "stop_loss": 0.5})
    assert stopped["stop_reason"] == "loss" and stopped["stopped_at"] < 80
    assert stopped["loss"] <= 0.5
    skipped = family.train(x, y, knn, context=_ctx(), **{**FAST, "max_nodes": 5, "epochs": 1})
    assert skipped["trained"] == 0 and skipped["stopped_at"] == 20


def test_cluster_finds_unseen_groups(trained):
    x, y, knn = _groups(seed=2)
    labels = family.cluster(x, knn, context=_ctx(), model=trained)
    assert labels.shape == y.shape and labels.dtype == np.int64 and labels.min() >= 0
    assert metrics.evaluate(y, labels)["pairwise_f"] > 0.9
    # tau2 above every intimacy: every item alone
    alone = family.cluster(x, knn, context=_ctx(), model=trained, tau2=1.0)
    assert np.unique(alone).size == y.size


def test_edge_scores_equal_the_reference_head_and_parse_at_tau1(trained):
    x, _, knn = _groups(seed=2, n=200, groups=10)
    nbrs = knn.nbrs.copy()
    nbrs[0, 5] = -1  # padding is skipped
    from facecluster.io import Knn

    knn = Knn(nbrs, knn.sims)
    src, dst, scores = family.predict_edges(x, knn, trained, context=_ctx())
    assert src.dtype == np.int32 and src.size == 200 * 19 - 1
    assert not (src == dst).any()
    # the reference: the GCN on the whole graph, the head on [h_i ‖ h_j], softmax
    net = impl.StarFC(32, 32)
    net.load_state_dict(trained["state_dict"])
    adj = impl.symmetric_normalized_adjacency(knn, 0.0)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        h = net.embed(xt, torch.from_numpy(adj.toarray()) @ xt)
        s, d = torch.from_numpy(src.astype(np.int64)), torch.from_numpy(dst.astype(np.int64))
        ref = torch.softmax(net(h[s], h[d]), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-6)
    kept = family.predict_edges(x, knn, trained, context=_ctx(), tau1=0.7)
    np.testing.assert_array_equal(kept[0], src[scores > 0.7])
    np.testing.assert_array_equal(kept[1], dst[scores > 0.7])
    small = impl.predict_edges(x, knn, trained, context=_ctx(), pair_budget=100)
    np.testing.assert_allclose(small[2], scores, rtol=1e-5)  # chunking changes nothing


def test_training_is_deterministic_and_seeded(trained):
    x, y, knn = _groups()
    again = family.train(x, y, knn, context=_ctx(), **FAST)
    for name, value in trained["state_dict"].items():
        assert torch.equal(value, again["state_dict"][name]), name
    other = family.train(x, y, knn, context=_ctx(seed=1), **{**FAST, "epochs": 1})
    assert not torch.equal(
        other["state_dict"]["conv.linear.weight"], again["state_dict"]["conv.linear.weight"]
    )


class Killed(Exception):
    """Stands for the job being killed."""


def test_killed_training_resumes_to_the_same_model(trained, tmp_path, monkeypatch, caplog):
    x, y, knn = _groups()
    path = tmp_path / "m.pt.ckpt"
    real = checkpoint.save

    def save_then_die(p, fp, iteration, *args, **kwargs):
        real(p, fp, iteration, *args, **kwargs)
        if iteration == 35:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_die)
        with pytest.raises(Killed):
            family.train(x, y, knn, context=_ctx(path), **FAST)
    with caplog.at_level(logging.INFO, logger="facecluster.nn.checkpoint"):
        resumed = family.train(x, y, knn, context=_ctx(path), **FAST)
    assert "resuming from iteration 35" in caplog.text
    for name, value in trained["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
    assert torch.equal(trained["loss_curve"], resumed["loss_curve"])
    assert resumed["stopped_at"] == trained["stopped_at"]


def test_model_file_round_trip(trained, tmp_path):
    from facecluster.tasks import load_model, save_model

    save_model(dict(trained), str(tmp_path / "m.pt"))
    back = load_model(str(tmp_path / "m.pt"))
    assert back["stop_reason"] == "epochs" and back["hidden"] == 32
    x, _, knn = _groups(seed=2)
    np.testing.assert_array_equal(
        family.cluster(x, knn, context=_ctx(), model=back),
        family.cluster(x, knn, context=_ctx(), model=trained),
    )


# --------------------------------------------------------------------------- released weights


def _released(tmp_path, model, prefix="module."):
    """Our model written as the reference's Backbone.pth and Head.pth."""
    sd = model["state_dict"]
    backbone = {
        "conv1.weight": sd["conv.linear.weight"].t().contiguous(),
        "conv1.bias": sd["conv.linear.bias"],
    }
    head = {f"classifier.{k[5:]}": v for k, v in sd.items() if k.startswith("head.")}
    torch.save({prefix + k: v for k, v in backbone.items()}, tmp_path / "Backbone.pth")
    torch.save({"state_dict": head}, tmp_path / "Head.pth")
    return {"backbone": str(tmp_path / "Backbone.pth"), "head": str(tmp_path / "Head.pth")}


def test_released_weights_load_and_score_the_same(trained, tmp_path):
    model = family.load_pretrained(_released(tmp_path, trained))
    assert model["in_dim"] == 32 and model["hidden"] == 32 and model["th_sim"] == 0.0
    x, _, knn = _groups(seed=2)
    np.testing.assert_array_equal(
        family.cluster(x, knn, context=_ctx(), model=model),
        family.cluster(x, knn, context=_ctx(), model=trained),
    )
    with pytest.raises(InputError, match=r"needs \['head'\]"):
        family.load_pretrained({"backbone": "Backbone.pth"})
    torch.save({"conv1.weight": torch.zeros(3, 4)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="conv1.weight of shape"):
        family.load_pretrained({"backbone": str(tmp_path / "bad.pth"), "head": "x"})
    torch.save({"classifier.9.weight": torch.zeros(2)}, tmp_path / "odd_head.pth")
    paths = _released(tmp_path, trained)
    with pytest.raises(InputError, match="classifier.9.weight"):
        family.load_pretrained({**paths, "head": str(tmp_path / "odd_head.pth")})


def test_estimates_scale_with_the_published_settings():
    spec = get_spec("starfc")
    train = spec.cost(576_494, 256, 80, params={}, train_params={}, train=True, threads=16)
    shorter = spec.cost(
        576_494, 256, 80, params={}, train_params={"clusters": 13}, train=True, threads=16
    )
    assert train.seconds > 100 * shorter.seconds
    part9 = spec.cost(5_206_761, 256, 80, params={}, train_params={}, train=False, threads=16)
    # bounded: tens of GB at 5.21M items, within one large node
    assert 20e9 < part9.memory_bytes < 100e9
