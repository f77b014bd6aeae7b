import copy
from pathlib import Path

import pytest
import yaml

from facecluster.config import ConfigError, load_schema, validate_config
from facecluster.methods import FAMILIES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(config):
    out = validate_config(copy.deepcopy(config))
    assert out["datasets"]["synth"]["synthetic"]["centre_rank"] == 12
    assert out["methods"]["cdp"]["train"] == {}
    assert out["knn_backends"]["flat"]["batch_size"] == 16384


def test_schema_families_match_registry():
    schema = load_schema()
    assert set(schema["$defs"]["method"]["properties"]["family"]["enum"]) == set(FAMILIES)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(sedd=1), "sedd"),
        (lambda c: c.update(seed="x"), "seed"),
        (lambda c: c["methods"]["gcnv"].update(family="nope"), "methods.gcnv.family"),
        (lambda c: c["methods"]["gcnv"].update(k="80"), "methods.gcnv.k"),
        (lambda c: c["methods"]["gcnv"]["params"].update(tau="high"), "methods.gcnv.params.tau"),
        (lambda c: c["methods"]["cdp"]["params"].update(thresh=0.7), "methods.cdp.params"),
        (lambda c: c["datasets"]["synth"].update(test_splits=["test"]), "test_splits[0]"),
        (
            lambda c: c["datasets"]["synth"]["synthetic"].update(scale=-1),
            "datasets.synth.synthetic.scale",
        ),
        (lambda c: c["datasets"]["synth"].update(source="labelled"), "datasets.synth"),
        (lambda c: c["datasets"]["synth"]["methods"].append("gcnd"), "unknown method 'gcnd'"),
        (
            lambda c: c["methods"]["cdp"]["per_dataset"].update(nosuch={"k": 2}),
            "methods.cdp.per_dataset.nosuch: unknown dataset",
        ),
        (
            lambda c: c["methods"]["cdp"]["per_dataset"]["deepfashion"].update(knn_backend="x"),
            "methods.cdp.per_dataset.deepfashion.knn_backend",
        ),
        (
            lambda c: c["methods"]["cdp"]["per_dataset"]["deepfashion"]["params"].update(th=2),
            "methods.cdp.per_dataset.deepfashion.params.th",
        ),
        (lambda c: c["datasets"]["ytf"]["methods"].append("gcnv"), "datasets.ytf.methods[10]"),
        (
            lambda c: c["datasets"]["ms1m"]["methods"].append("cdp_vote"),
            "'cdp_vote' needs a committee",
        ),
        (lambda c: c.update(limits={"mem_mb": 0}), "limits.mem_mb"),
        (lambda c: c["datasets"]["synth"].update(limits={"runtme": 3}), "datasets.synth.limits"),
        (lambda c: c["methods"]["cdp"].update(knn_backend="annoy"), "methods.cdp.knn_backend"),
        (lambda c: c.update(all=["nosuch"]), "all[0]"),
        (lambda c: c["datasets"]["synth"]["test_splits"].append("part0"), "test_splits"),
        (lambda c: c["datasets"]["synth"]["test_splits"].append("part12"), "part12"),
        (
            lambda c: c["datasets"]["ms1m"]["test_splits"].append("part2"),
            "datasets.ms1m.test_splits[5]: no archive holds split 'part2'",
        ),
        (lambda c: c["datasets"]["ms1m"].pop("archives"), "datasets.ms1m"),
        (
            lambda c: c["datasets"]["ms1m"]["archives"]["part1"].pop("gdrive"),
            "datasets.ms1m.archives.part1",
        ),
        (
            lambda c: c["datasets"]["ms1m"]["md5"].update({"features/x.bin": "abc"}),
            "datasets.ms1m.md5",
        ),
        (lambda c: c["proposals"]["ms1m_2"].update(step=0), "proposals.ms1m_2.step"),
        (lambda c: c["proposals"]["ms1m_2"].update(knn_backend="x"), "proposals.ms1m_2"),
        (lambda c: c["proposals"]["ms1m_2"]["iter0"][0].pop("th"), "proposals.ms1m_2.iter0"),
        (
            lambda c: c["methods"]["cdp"].update(upstream="gcnv"),
            "methods.cdp.upstream: family 'cdp' reads no upstream output",
        ),
        (
            lambda c: c["methods"]["cdp"].update(pretrained={"model": "x.pth"}),
            "methods.cdp.pretrained: family 'cdp' has no released weights",
        ),
    ],
)
def test_bad_config_names_the_key(config, mutate, key):
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert key in str(err.value)


def test_per_dataset_settings_of_the_published_ids(config):
    from facecluster.config import method_config, method_limits

    validate_config(config)
    fashion = method_config(config, "cdp", "deepfashion")
    assert fashion["k"] == 2 and fashion["params"] == {
        "th": 0.5,
        "max_sz": 200,
        "step": 0.05,
        "max_iter": 100,
    }
    assert method_config(config, "cdp", "ms1m")["k"] == 15
    gcnv = method_config(config, "gcnv", "deepfashion")
    assert (gcnv["k"], gcnv["params"]["tau_0"], gcnv["params"]["tau"]) == (5, 0.8, 0.85)
    assert gcnv["train"]["weight_decay"] == 1e-4 and gcnv["train"]["lr"] == 0.1
    assert method_config(config, "infomap", "ytf")["params"]["min_sim"] == 0.56
    # limits: the top-level ones, then the dataset's, then the method's
    assert method_limits(config, "cdp", "ms1m") == config["limits"]
    assert method_limits(config, "cdp", "synth") == config["datasets"]["synth"]["limits"]
    config["methods"]["cdp"]["limits"] = {"runtime": 1}
    assert method_limits(config, "cdp", "synth")["runtime"] == 1


def test_all_errors_reported_at_once(config):
    config["seed"] = "x"
    config["device"] = "tpu"
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "seed" in str(err.value) and "device" in str(err.value)


def test_schema_synthetic_defaults_match_generator():
    import dataclasses

    from facecluster.data.synthetic import SyntheticSpec

    schema = load_schema()["$defs"]["synthetic"]["properties"]
    spec = {f.name: f.default for f in dataclasses.fields(SyntheticSpec)}
    for key, sub in schema.items():
        assert spec[key] == sub["default"], key
    # everything but the dimension and the seed (set from the dataset and `seed`) is a key
    assert set(spec) - set(schema) == {"dim", "seed"}


def _sweep(config, **sweep):
    config["datasets"]["synth"]["sweeps"] = [sweep]
    return config


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"method": "nope", "grid": {"th": [0.5]}}, "datasets.synth.sweeps[0]: unknown method"),
        ({"method": "cdp", "grid": {"thresh": [0.5]}}, "sweeps[0].grid.thresh: family 'cdp' has"),
        ({"method": "cdp", "grid": {"th": [0.5, 2]}}, "sweeps[0].grid.th[1]: 2 is greater"),
        ({"method": "cdp", "grid": {}}, "datasets.synth.sweeps[0].grid"),
        ({"method": "cdp"}, "datasets.synth.sweeps[0]: 'grid' is a required property"),
    ],
)
def test_bad_sweep_names_the_key(config, sweep, message):
    with pytest.raises(ConfigError) as err:
        validate_config(_sweep(config, **sweep))
    assert message in str(err.value)


def test_second_sweep_of_one_method_is_an_error(config):
    config["datasets"]["synth"]["sweeps"] = [
        {"method": "cdp", "grid": {"th": [0.5]}},
        {"method": "cdp", "grid": {"max_sz": [100]}},
    ]
    with pytest.raises(ConfigError, match=r"sweeps\[1\].method: a second sweep of 'cdp'"):
        validate_config(config)


def test_sweep_points_become_variants_named_by_their_parameters(config):
    from facecluster.config import method_config, sweep_points

    _sweep(config, method="gcnv", grid={"tau": [0.7, 0.8], "tau_0": [0.6]})
    out = validate_config(config)
    assert sweep_points(out, "synth")["gcnv"] == [
        {"tau": 0.7, "tau_0": 0.6}, {"tau": 0.8, "tau_0": 0.6}
    ]  # fmt: skip
    point = method_config(out, "gcnv/tau~0.7/tau_0~0.6", "synth")
    base = method_config(out, "gcnv", "synth")
    assert point["params"] == {**base["params"], "tau": 0.7, "tau_0": 0.6}
    # the training is the variant's: a sweep of a clustering parameter shares its model
    assert point["train"] == base["train"] and point["k"] == base["k"]
    # other datasets keep the variant's own settings
    assert method_config(out, "gcnv/tau~0.7/tau_0~0.6", "ms1m") == method_config(
        out, "gcnv", "ms1m"
    )


def test_named_sweeps_config_is_valid_over_the_default(config):
    named = yaml.safe_load((ROOT / "config" / "sweeps.yaml").read_text())
    config["datasets"]["synth"]["sweeps"] = named["datasets"]["synth"]["sweeps"]
    out = validate_config(config)
    assert {"gcnv/tau~0.8", "infomap/min_sim~0.58", "fces/theta~0.22"} <= set(out["methods"])


def test_block_rows_only_for_flat_and_in_whole_batches(config):
    config["knn_backends"]["hnsw"]["block_rows"] = 1000
    config["knn_backends"]["flat"].update(batch_size=256, block_rows=1000)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "knn_backends.hnsw.block_rows: only an exact (flat) kNN is searched in blocks" in msg
    assert "knn_backends.flat.block_rows: 1000 is not a multiple of batch_size 256" in msg
