import numpy as np
import pytest

from facecluster import metrics
from facecluster.graph import finalize_labels
from facecluster.io import Knn
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, cdp_vote, get_spec
from facecluster.methods import cdp_mediator as med


def _arc(angles):
    """Unit vectors in the plane at the given angles (radians), float32 (N, 2)."""
    a = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def _drop(knn: Knn, row: int, item: int) -> Knn:
    """A copy of ``knn`` where ``item`` is no longer in ``row``'s list (padding instead)."""
    nbrs, sims = knn.nbrs.copy(), knn.sims.copy()
    at = np.flatnonzero(nbrs[row] == item)
    rest = [c for c in range(nbrs.shape[1]) if c not in at]
    nbrs[row] = np.r_[nbrs[row, rest], [-1] * at.size]
    sims[row] = np.r_[sims[row, rest], [-1.0] * at.size]
    return Knn(nbrs, sims)


# two tight triples {0, 1, 2} and {3, 4, 5}; the only pair across above th=0.96 is the
# bridge 2-3 (0.25 rad: cos 0.969; 1-3 and 2-4 are 0.3 rad: cos 0.955); item 6 is far away
BRIDGE = _arc([0.0, 0.05, 0.1, 0.35, 0.4, 0.45, 2.0])
TH = 0.96


def _vote(knn, committee, **params):
    ctx = Context(extra={"committee": committee})
    return cdp_vote.cluster(None, knn, context=ctx, th=TH, **params)


def test_specs():
    vote, mediator = get_spec("cdp_vote"), get_spec("cdp_mediator")
    assert vote.needs == ("committee",) and not vote.supervised
    assert vote.params["th"]["default"] == 0.605 and vote.params["accept"]["default"] is None
    assert {"max_sz", "step", "max_iter"} <= set(vote.params) & set(mediator.params)
    assert mediator.supervised and mediator.conda_env == "torch"
    assert mediator.needs == ("committee",)
    assert mediator.train_params["inputs"]["default"] == list(med.INPUTS)
    assert mediator.train_params["epochs"]["default"] == 2
    for spec in (vote, mediator):
        c = spec.cost(50_000, 256, 15, params={}, train_params={}, train=True, threads=2)
        assert c.memory_bytes > 0 and c.seconds > 0


def test_votes_are_directional():
    knn = brute_force_knn(BRIDGE, 7)
    member = _drop(knn, 2, 3)
    rows, cols = np.array([2, 3, 0]), np.array([3, 2, 1])
    np.testing.assert_array_equal(cdp_vote.knn_contains(member, rows, cols), [False, True, True])
    np.testing.assert_array_equal(cdp_vote.votes([knn, member], rows, cols), [1, 2, 2])


def test_vote_drops_exactly_the_disputed_pair():
    knn = brute_force_knn(BRIDGE, 7)
    agree = [(BRIDGE, knn), (BRIDGE, knn)]
    together = _vote(knn, agree)
    assert np.unique(together[:6]).size == 1 and together[6] == -1
    # one member no longer links 2 and 3 (in either direction): with accept = all
    # members the bridge goes, and only the bridge
    split = _drop(_drop(knn, 2, 3), 3, 2)
    pred = _vote(knn, [(BRIDGE, knn), (BRIDGE, split)])
    assert pred[0] == pred[1] == pred[2] != pred[3] == pred[4] == pred[5] and pred[6] == -1
    # one vote is enough with accept=1
    np.testing.assert_array_equal(_vote(knn, [(BRIDGE, knn), (BRIDGE, split)], accept=1), together)
    # the vote is on i's list only: dropping 3 from 2's list keeps (3, 2), hence the pair
    np.testing.assert_array_equal(_vote(knn, [(BRIDGE, knn), (BRIDGE, _drop(knn, 2, 3))]), together)


def test_empty_committee_is_single_model_cdp():
    from facecluster.methods import cdp

    knn = brute_force_knn(BRIDGE, 7)
    np.testing.assert_array_equal(_vote(knn, []), cdp.cluster(BRIDGE, knn, th=TH))


def test_size_cap_splits_a_chain():
    # a chain whose middle link (0.1 rad) is weaker than the others (0.05 rad)
    x = _arc([0.0, 0.05, 0.1, 0.2, 0.25, 0.3])
    knn = brute_force_knn(x, 6)
    committee = [(x, knn)]
    ctx = Context(extra={"committee": committee})
    whole = cdp_vote.cluster(x, knn, context=ctx, th=0.9, max_sz=6)
    assert np.unique(whole).size == 1
    capped = cdp_vote.cluster(x, knn, context=ctx, th=0.9, max_sz=3)
    np.testing.assert_array_equal(capped == capped[0], [True] * 3 + [False] * 3)
    assert np.unique(capped[3:]).size == 1


@pytest.mark.parametrize(
    "params,committee,match",
    [
        ({"accept": 3}, 2, "accept"),
        ({"accept": -1}, 2, "accept"),
        ({"th": 1.5}, 2, "th"),
        ({"max_sz": 0}, 2, "max_sz"),
        ({"step": 0.0}, 2, "step"),
    ],
)
def test_vote_bad_params(params, committee, match):
    knn = brute_force_knn(BRIDGE, 7)
    with pytest.raises(ValueError, match=match):
        cdp_vote.cluster(
            None, knn, context=Context(extra={"committee": [(BRIDGE, knn)] * committee}), **params
        )


def test_vote_needs_a_matching_committee():
    knn = brute_force_knn(BRIDGE, 7)
    with pytest.raises(ValueError, match="committee"):
        cdp_vote.cluster(None, knn, context=Context())
    short = brute_force_knn(BRIDGE[:5], 3)
    with pytest.raises(ValueError, match="member 0"):
        cdp_vote.cluster(None, knn, context=Context(extra={"committee": [(BRIDGE[:5], short)]}))


# ---------------------------------------------------------------------------- mediator


def test_pair_features_by_hand():
    knn = Knn(
        np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, -1]], dtype=np.int32),
        np.array([[1, 0.9, 0.5], [1, 0.9, 0.4], [1, 0.8, 0.5], [1, 0.8, -1]], dtype=np.float32),
    )
    member = Knn(
        np.array([[0, 2, 1], [1, 3, 2], [2, 0, 1], [3, 1, 0]], dtype=np.int32), knn.sims.copy()
    )
    pairs = med.candidate_pairs(knn)
    np.testing.assert_array_equal(pairs, [[0, 1], [0, 2], [1, 3], [2, 3]])
    feats = _arc([0.0, 0.1, 0.5, 0.7])
    mfeats = 3.0 * _arc([0.0, 0.2, 0.5, 0.6])  # not normalised: affinity is a cosine
    x = med.pair_features(feats, knn, [(mfeats, member)], pairs)
    assert x.dtype == np.float32 and x.shape == (4, 1 + 2 + 2)
    # relationship: j in member's list of i, or i in member's list of j
    np.testing.assert_array_equal(x[:, 0], [1, 1, 1, 0])
    np.testing.assert_allclose(x[:, 1], np.cos([0.1, 0.5, 0.6, 0.2]), rtol=1e-5)
    np.testing.assert_allclose(x[:, 2], np.cos([0.2, 0.5, 0.4, 0.1]), rtol=1e-5)
    # structure: common entries (self included, -1 ignored), base then member
    np.testing.assert_array_equal(x[:, 3], [2, 2, 1, 2])
    np.testing.assert_array_equal(x[:, 4], [2, 3, 2, 2])
    only = med.pair_features(feats, knn, [(mfeats, member)], pairs, ["structure", "affinity"])
    np.testing.assert_array_equal(only, x[:, [3, 4, 1, 2]])


def test_common_neighbours_matches_a_loop(rng):
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn = brute_force_knn(x, 12)
    knn.nbrs[::7, -2:] = -1
    pairs = med.candidate_pairs(knn)
    got = med.common_neighbours(knn, pairs, chunk=101)
    sets = [set(r[r >= 0].tolist()) for r in knn.nbrs]
    want = [len(sets[i] & sets[j]) for i, j in pairs]
    np.testing.assert_array_equal(got, want)


def _blobs(seed, n_ids=60, d=16, noise=0.35):
    """Blobs of 3..20 items and two committee views of them (independent image noise)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 21, size=n_ids)
    labels = np.repeat(np.arange(n_ids), sizes)
    centres = rng.standard_normal((n_ids, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def view():
        x = centres[labels] + noise * rng.standard_normal((labels.size, d)) / np.sqrt(d)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    feats = view()
    committee = [(f, brute_force_knn(f, 20)) for f in (view(), view())]
    return feats, labels, brute_force_knn(feats, 20), committee


TRAIN = {"epochs": 20, "lr": 0.01, "batch_size": 256}


@pytest.fixture(scope="module")
def trained():
    feats, labels, knn, committee = _blobs(1)
    ctx = Context(seed=3, extra={"committee": committee})
    return med.train(feats, labels, knn, context=ctx, **TRAIN)


def test_mediator_learns_a_separable_problem(trained):
    assert trained["in_dim"] == 2 + 3 + 3 and trained["committee_size"] == 2
    assert trained["inputs"] == list(med.INPUTS) and np.isfinite(trained["final_loss"])
    # a new draw of identities: the mediator transfers
    feats, labels, knn, committee = _blobs(2)
    ctx = Context(extra={"committee": committee})
    pairs, prob = med.predict(feats, knn, context=ctx, model=trained)
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    accuracy = np.mean((prob > 0.5) == same)
    assert 0.2 < same.mean() < 0.8  # both classes are common: accuracy is not a majority vote
    assert accuracy > 0.95
    pred = med.cluster(feats, knn, context=ctx, model=trained, th=0.9)
    assert metrics.evaluate(labels, finalize_labels(pred))["pairwise_f"] > 0.9


def test_mediator_training_is_deterministic(trained):
    feats, labels, knn, committee = _blobs(1)
    again = med.train(
        feats, labels, knn, context=Context(seed=3, extra={"committee": committee}), **TRAIN
    )
    for name, t in trained["state_dict"].items():
        assert t.equal(again["state_dict"][name]), name
    assert again["final_loss"] == trained["final_loss"]


def test_mediator_model_must_match_the_call(trained):
    feats, _, knn, committee = _blobs(2)
    with pytest.raises(ValueError, match="committee of 2 members.*has 1"):
        med.cluster(feats, knn, context=Context(extra={"committee": committee[:1]}), model=trained)
    ctx = Context(extra={"committee": committee})
    with pytest.raises(ValueError, match="inputs"):
        med.cluster(feats, knn, context=ctx, model=trained, inputs=["relationship", "affinity"])
    with pytest.raises(ValueError, match="model"):
        med.cluster(feats, knn, context=ctx, model=None)
    with pytest.raises(ValueError, match="inputs"):
        med.cluster(feats, knn, context=ctx, model=trained, inputs=["nope"])
    with pytest.raises(ValueError, match="th"):
        med.cluster(feats, knn, context=ctx, model=trained, th=2.0)


def test_mediator_subset_of_inputs():
    feats, labels, knn, committee = _blobs(1, n_ids=10)
    ctx = Context(seed=0, extra={"committee": committee})
    model = med.train(feats, labels, knn, context=ctx, inputs=["affinity"], epochs=1)
    assert model["in_dim"] == 3 and model["inputs"] == ["affinity"]
    pred = med.cluster(feats, knn, context=ctx, model=model, th=0.5)
    assert pred.shape == labels.shape and pred.dtype == np.int64
    with pytest.raises(ValueError, match="inputs"):
        med.train(feats, labels, knn, context=ctx, inputs=["affinity", "affinity"])
    with pytest.raises(ValueError, match="epochs"):
        med.train(feats, labels, knn, context=ctx, epochs=0)
