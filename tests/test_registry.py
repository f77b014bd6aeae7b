"""The method registry: light specs, generated schemas, and one contract every family keeps.

In the spirit of scikit-learn's common estimator checks, every registered family is run on
the same small problem and must return int64 labels (N,) in item order (permuting the items
permutes the labels), identical labels for the same seed, and clean output after discarded
items become singletons; every numeric parameter's range is enforced by the config schema.
"""

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecluster import metrics
from facecluster.config import ConfigError, load_schema, validate_config
from facecluster.graph import finalize_labels
from facecluster.knn import brute_force_knn
from facecluster.methods import (
    FAMILIES,
    NEEDS,
    Context,
    Cost,
    FamilySpec,
    as_clustering,
    get_family,
    get_spec,
)

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "faiss", "infomap", "sklearn")

#: short training for the contract (the families' defaults train for hours)
FAST_TRAIN = {
    "gcnv": {"hidden": 16, "epochs": 60},
    "gcne": {"hidden": 16, "epochs": 5, "gcn_k": 10},
    "lgcn": {"epochs": 20, "milestones": [1.0]},
    "cdp_mediator": {"epochs": 200, "lr": 0.05, "batch_size": 64},
    "starfc": {"hidden": 16, "min_nodes": 10, "edge_chunks": 4, "epochs": 10, "lr": 0.05},
}
#: parameters for the small contract problem where a family's defaults suit MS1M only
CONTRACT_PARAMS = {
    "gcnv": {"tau_0": 0.5, "tau": 0.5},
    "gcne": {"tau": 0.5, "gcn_k": 10},
    "lgcn": {"max_sz": 15},
    "cdp": {"th": 0.5},
    "cdp_vote": {"th": 0.5},
    "cdp_mediator": {"th": 0.5},
    "infomap": {"min_sim": 0.5},
    # k 10: K = 9 neighbours besides self, so the outlier window must be below 8
    "facemap": {"window": 4},
    "cw": {"th": 0.5},
    "knn_dbscan": {"eps": 0.5},
    "fast_hac": {"distance": 1.0},
    "meanshift": {"bandwidth": 0.8},
    "dbscan": {"eps": 0.8, "min_samples": 3},
    "hdbscan": {"min_cluster_size": 3},
    "hac": {"n_neighbors": 5},
    "spectral": {"n_neighbors": 5, "n_clusters": 4},
}


def test_every_family_has_a_spec_and_entry_points():
    for name in FAMILIES:
        module = get_family(name)
        assert isinstance(module.SPEC, FamilySpec), name
        assert callable(module.cluster), name
        assert callable(getattr(module, "train", None)) == module.SPEC.supervised, name
        assert set(module.SPEC.needs) <= set(NEEDS), name
        assert module.SPEC.threads >= 1
        assert (ROOT / "envs" / f"{module.SPEC.conda_env}.yaml").is_file()
        for pname, prop in {**module.SPEC.params, **module.SPEC.train_params}.items():
            assert "default" in prop or pname in module.SPEC.required, (name, pname)
    with pytest.raises(KeyError, match="unknown method family 'nope'.*cdp"):
        get_family("nope")


def test_specs_load_no_heavy_library():
    """The Snakemake driver reads every spec: that must not import torch, faiss, ..."""
    code = (
        "import sys\n"
        "from facecluster.methods import all_specs\n"
        "import facecluster.config, facecluster.resources\n"
        "all_specs()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported: {proc.stdout}"


def test_spec_rejects_unknown_needs():
    with pytest.raises(ValueError, match="unknown needs"):
        FamilySpec(summary="x", needs=("proposals_of_the_moon",))


def test_schema_family_list_comes_from_the_registry():
    schema = load_schema()
    method = schema["$defs"]["method"]
    assert set(method["properties"]["family"]["enum"]) == set(FAMILIES)
    branches = {b["if"]["properties"]["family"]["const"] for b in method["allOf"]}
    assert branches == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_estimates_are_finite_and_grow_with_n(family):
    spec = get_spec(family)
    costs = [
        spec.cost(n, 256, 20, params={}, train_params={}, train=False, threads=2)
        for n in (1_000, 100_000)
    ]
    for c in costs:
        assert isinstance(c, Cost) and math.isfinite(c.memory_bytes) and math.isfinite(c.seconds)
        assert c.memory_bytes > 0 and c.seconds >= 0
    assert costs[1].memory_bytes > costs[0].memory_bytes
    assert costs[1].seconds > costs[0].seconds


def _base_config(family: str, params: dict) -> dict:
    spec = get_spec(family)
    method = {"family": family, "k": 5, "params": params}
    if "upstream" in spec.needs:
        method["upstream"] = "up"
    # every proposal set a family's defaults name
    sets = {
        v["default"]
        for block in (spec.params, spec.train_params)
        for name, v in block.items()
        if name.endswith("proposals") and "default" in v
    }
    return {
        "datasets": {"d": {"source": "synthetic", "methods": ["m"], "committee": ["a"]}},
        "methods": {"m": method, "up": {"family": "gcnv", "k": 5}},
        "proposals": {s: {"iter0": [{"th": 0.5}]} for s in sets},
    }


def _bad_values(prop: dict):
    """Values the schema of one parameter must reject."""
    if prop.get("type") in ("number", "integer"):
        if "minimum" in prop:
            yield prop["minimum"] - 1
        if "exclusiveMinimum" in prop:
            yield prop["exclusiveMinimum"]
        if "maximum" in prop:
            yield prop["maximum"] + 1
        yield "high"
    if prop.get("type") == "boolean":
        yield "yes"
    if "enum" in prop:
        yield "no-such-choice"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bad_parameters_are_rejected_by_the_config(family):
    spec = get_spec(family)
    validate_config(_base_config(family, {}))  # the defaults are valid
    with pytest.raises(ConfigError, match=r"methods\.m\.params: unknown key"):
        validate_config(_base_config(family, {"no_such_param": 1}))
    for pname, prop in spec.params.items():
        for bad in _bad_values(prop):
            with pytest.raises(ConfigError, match=rf"methods\.m\.params\.{pname}"):
                validate_config(_base_config(family, {pname: bad}))


# ----------------------------------------------------------------------------- the contract


def _problem(seed=0, n_groups=4, size=15, d=16):
    """Well-separated groups and two far outliers, items in shuffled order."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((d, d)))[0][:n_groups]
    labels = np.repeat(np.arange(n_groups), size)
    feats = centres[labels] + 0.05 * rng.standard_normal((labels.size, d))
    outliers = np.linalg.qr(rng.standard_normal((d, d)))[0][n_groups : n_groups + 2]
    outliers = -centres[:2] * 0.2 + outliers  # far from every group
    feats = np.vstack([feats, outliers])
    labels = np.concatenate([labels, [n_groups, n_groups + 1]])
    order = rng.permutation(labels.size)
    feats, labels = feats[order], labels[order]
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    return feats, labels.astype(np.int64)


def _members(feats, seed, n=3):
    rng = np.random.default_rng(seed + 100)
    out = []
    for _ in range(n):
        f = feats + 0.02 * rng.standard_normal(feats.shape).astype(np.float32)
        out.append((f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32))
    return out


def _run(family, feats, labels, members, *, seed=3, k=10):
    spec = get_spec(family)
    module = get_family(family)
    knn = brute_force_knn(feats, k)
    params = {**{p: v["default"] for p, v in spec.params.items() if "default" in v}}
    params.update(CONTRACT_PARAMS.get(family, {}))
    train_params = {p: v["default"] for p, v in spec.train_params.items() if "default" in v}
    train_params.update(FAST_TRAIN.get(family, {}))
    extra = _extra(spec, feats, labels, knn, members, params, train_params, seed=seed, k=k)
    n_true = int(np.unique(labels).size)
    ctx = Context(seed=seed, threads=1, device="cpu", n_true_clusters=n_true, extra=extra)
    model = None
    if spec.supervised:
        model = module.train(feats, labels, knn, context=ctx, **train_params)
    return as_clustering(module.cluster(feats, knn, context=ctx, model=model, **params)).labels


#: the contract's proposal set: size-capped components at two thresholds, and super-vertices
CONTRACT_PROPOSALS = {
    "k": 10,
    "iter0": [{"th": 0.5}, {"th": 0.8}],
    "iter1": [{"k": 2, "sv_maxsz": 4}],
}


def _extra(spec, feats, labels, knn, members, params, train_params, *, seed, k):
    """The extra inputs of ``spec.needs`` for the contract problem (train and test split
    are the same items here)."""
    from facecluster.config import proposal_sets
    from facecluster.proposals import generate

    extra = {}
    if "committee" in spec.needs:
        extra["committee"] = [(m, brute_force_knn(m, k)) for m in members]
    if "proposals" in spec.needs:
        props = generate(feats, knn, CONTRACT_PROPOSALS)
        names = proposal_sets(params) + proposal_sets(train_params)
        extra["proposals"] = dict.fromkeys(names, props)
    if "upstream" in spec.needs:
        gcnv = get_family("gcnv")
        ctx = Context(seed=seed, threads=1, device="cpu")
        model = gcnv.train(feats, labels, knn, context=ctx, **FAST_TRAIN["gcnv"])
        extra["upstream"] = gcnv.infer(feats, knn, model, context=ctx)
    return extra


@pytest.fixture(scope="module")
def problem():
    feats, labels = _problem()
    return feats, labels, _members(feats, 0)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def result(request, problem):
    feats, labels, members = problem
    return request.param, _run(request.param, feats, labels, members)


def test_contract_shape_dtype_and_quality(result, problem):
    family, pred = result
    feats, labels, _ = problem
    assert isinstance(pred, np.ndarray) and pred.shape == labels.shape, family
    assert np.issubdtype(pred.dtype, np.integer), family
    assert pred.min() >= -1, family
    final = finalize_labels(pred)  # discarded items become singletons
    assert final.dtype == np.int64 and final.min() == 0 and np.unique(final).size == final.max() + 1
    # on four well-separated groups every method finds them
    in_groups = labels < 4
    m = metrics.evaluate(labels[in_groups], final[in_groups])
    assert m["pairwise_f"] > 0.9, (family, m)


def test_contract_deterministic_under_the_seed(result, problem):
    family, pred = result
    feats, labels, members = problem
    again = _run(family, feats, labels, members)
    np.testing.assert_array_equal(pred, again, err_msg=family)


def test_contract_permuting_items_permutes_labels(result, problem):
    family, pred = result
    feats, labels, members = problem
    perm = np.random.default_rng(5).permutation(labels.size)
    permuted = _run(family, feats[perm], labels[perm], [m[perm] for m in members])
    a, b = finalize_labels(pred)[perm], finalize_labels(permuted)
    # the same partition: a label of one is always the same label of the other
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    assert len(pairs) == np.unique(a).size == np.unique(b).size, family


def test_contract_per_dataset_override_keeps_other_params():
    from facecluster.config import method_config

    cfg = {
        "datasets": {
            "a": {"source": "synthetic", "methods": ["cdp"]},
            "b": {"source": "synthetic", "methods": ["cdp"]},
        },
        "methods": {
            "cdp": {
                "family": "cdp",
                "k": 15,
                "params": {"th": 0.7, "max_sz": 600},
                "per_dataset": {"b": {"k": 2, "params": {"th": 0.5}}},
            }
        },
    }
    validate_config(cfg)
    a, b = method_config(cfg, "cdp", "a"), method_config(cfg, "cdp", "b")
    assert (a["k"], a["params"]["th"], a["params"]["max_sz"]) == (15, 0.7, 600)
    assert (b["k"], b["params"]["th"], b["params"]["max_sz"]) == (2, 0.5, 600)
    assert b["params"]["step"] == 0.05  # the family default, not reset by the override
    bad = copy.deepcopy(cfg)
    bad["methods"]["cdp"]["per_dataset"]["b"]["params"]["th"] = 3
    with pytest.raises(ConfigError, match=r"methods\.cdp\.per_dataset\.b\.params\.th"):
        validate_config(bad)


def test_docs_methods_page_is_generated_from_the_specs():
    """docs/methods.md is `python -m facecluster.methods`: regenerate it after a spec change."""
    from facecluster.methods.__main__ import markdown

    assert (ROOT / "docs" / "methods.md").read_text() == markdown()
