"""Configuration: JSON-schema validation with defaults, plus cross-reference checks.

:func:`validate_config` is called by the workflow before any job is scheduled; every problem
is reported at once, each with the dotted path of the offending key.
"""

from __future__ import annotations

import copy
import importlib
import itertools
from pathlib import Path

import jsonschema
import yaml

from .methods import FAMILIES, all_specs

__all__ = [
    "ConfigError",
    "load_schema",
    "validate_config",
    "method_config",
    "method_limits",
    "proposal_sets",
    "sweep_points",
    "sweep_variant",
    "grid_points",
    "calibration_of",
    "check_inputs",
    "is_labelled",
    "UNLABELLED_SPLIT",
    "SCHEMA_PATH",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its key path."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema, completed with every registered family's parameter schemas."""
    with open(path) as fh:
        return with_family_schemas(yaml.safe_load(fh))


def _without_defaults(schema: dict) -> dict:
    """``schema`` (a params/train object schema) with its properties' defaults removed, for
    per-dataset overrides, which must not reset what the method itself sets."""
    out = copy.deepcopy(schema)
    for prop in out.get("properties", {}).values():
        prop.pop("default", None)
    out.pop("required", None)
    return out


def with_family_schemas(schema: dict) -> dict:
    """Add the family list and, per family, the schemas of ``params`` and ``train`` (also
    inside ``per_dataset`` overrides) from the families' specs to the ``method`` definition."""
    from .proposals import SET_SCHEMA

    schema = copy.deepcopy(schema)
    schema["$defs"]["proposal_set"] = copy.deepcopy(SET_SCHEMA)
    method = schema["$defs"]["method"]
    method["properties"]["family"]["enum"] = sorted(FAMILIES)
    branches = []
    for name, spec in all_specs().items():
        params, train = spec.params_schema(), spec.train_schema()
        override = {
            "type": "object",
            "properties": {"params": _without_defaults(params), "train": _without_defaults(train)},
        }
        branches.append(
            {
                "if": {"properties": {"family": {"const": name}}, "required": ["family"]},
                "then": {
                    "properties": {
                        "params": params,
                        "train": train,
                        "per_dataset": {"additionalProperties": override},
                    }
                },
            }
        )
    method["allOf"] = branches
    return schema


def _with_defaults(validator_class):
    """A validator class that fills in ``default`` values of properties while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _schema_errors(config: dict, schema: dict) -> list[str]:
    # defaults are filled on the first pass; validate a second time so that a default
    # (e.g. a dataset's `synthetic: {}`) is itself completed and checked
    validator = _Validator(schema)
    list(validator.iter_errors(config))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for err in errors:
        leaves = [err]
        if err.validator in ("allOf", "anyOf", "oneOf") and err.context:
            leaves = err.context
        for leaf in leaves:
            path = list(err.absolute_path) + list(leaf.relative_path if leaf is not err else [])
            msg = leaf.message
            if leaf.validator == "additionalProperties":
                msg = f"unknown key(s): {msg.split('(')[-1].rstrip(')')}"
            out.append(f"{_key(path)}: {msg}")
    return out


def _reference_errors(config: dict) -> list[str]:
    out = []
    backends = config.get("knn_backends", {})
    methods = config.get("methods", {})
    datasets = config.get("datasets", {})
    specs = all_specs()
    for name, m in methods.items():
        if m.get("family") not in FAMILIES:
            out.append(
                f"methods.{name}.family: unknown method family {m.get('family')!r} "
                f"(known: {', '.join(sorted(FAMILIES))})"
            )
        overrides = m.get("per_dataset", {})
        for key, cfg in [("", m), *((f".per_dataset.{d}", o) for d, o in overrides.items())]:
            backend = cfg.get("knn_backend")
            if (key == "" or backend is not None) and backend not in backends:
                out.append(
                    f"methods.{name}{key}.knn_backend: {backend!r} is not a key of "
                    f"knn_backends ({', '.join(sorted(backends))})"
                )
        for d in overrides:
            if d not in datasets:
                out.append(
                    f"methods.{name}.per_dataset.{d}: unknown dataset "
                    f"(configured: {', '.join(datasets)})"
                )
    out += _extra_input_errors(config, specs)
    for name, d in datasets.items():
        if "knn_backend" in d and d["knn_backend"] not in backends:
            out.append(
                f"datasets.{name}.knn_backend: {d['knn_backend']!r} is not a key of "
                f"knn_backends ({', '.join(sorted(backends))})"
            )
        for i, m in enumerate(d.get("methods", [])):
            if m not in methods:
                out.append(
                    f"datasets.{name}.methods[{i}]: unknown method {m!r} "
                    f"(configured: {', '.join(sorted(methods))})"
                )
        for i, m in enumerate(d.get("methods", [])):
            spec = specs.get(methods.get(m, {}).get("family"))
            if spec is None:
                continue
            if "committee" in spec.needs and not d.get("committee"):
                out.append(
                    f"datasets.{name}.methods[{i}]: {m!r} needs a committee of feature sets; "
                    f"dataset {name!r} has none (datasets.{name}.committee)"
                )
            if spec.supervised:
                out += _model_source_errors(config, name, i, m)
            if not is_labelled(d):
                cfg = method_config(config, m, name)
                if cfg["params"].get("n_clusters") == "true":
                    out.append(
                        f"datasets.{name}.methods[{i}]: {m!r} uses the true number of "
                        f'identities (n_clusters: "true"), which unlabelled dataset {name!r} '
                        f"does not have: set methods.{m}.per_dataset.{name}.params.n_clusters"
                    )
        if not is_labelled(d) and d.get("sweeps"):
            out.append(
                f"datasets.{name}.sweeps: sweeps are scored against labels, which unlabelled "
                f"dataset {name!r} does not have (calibrate picks a value on a labelled split)"
            )
        if d.get("train_on") is not None:
            out += _train_on_errors(config, f"datasets.{name}.train_on", d["train_on"])
        if d.get("committee") and d.get("source") not in ("synthetic", "data_dir"):
            out.append(
                f"datasets.{name}.committee: committee feature sets come from synthetic or "
                f"data_dir datasets, not from source {d.get('source')!r}"
            )
        train, tests = d.get("train_split"), d.get("test_splits", [])
        if train in tests:
            out.append(f"datasets.{name}.test_splits: contains the train split {train!r}")
        if d.get("source") in ("synthetic", "labelled"):
            n_parts = d.get("n_parts", 10)
            keys = ["train_split", *(f"test_splits[{i}]" for i in range(len(tests)))]
            for i, (key, s) in enumerate(zip(keys, [train, *tests], strict=True)):
                if not (isinstance(s, str) and s.startswith("part") and s[4:].isdigit()):
                    out.append(f"datasets.{name}.{key}: {s!r} is not a part (part0, part1, ...)")
                elif int(s[4:]) >= n_parts:
                    out.append(f"datasets.{name}.{key}: {s!r} needs more than n_parts={n_parts}")
                elif i > 0 and s == "part0":
                    out.append(f"datasets.{name}.{key}: part0 is the train part")
        if d.get("source") == "download":
            held = {s for a in d.get("archives", {}).values() for s in a.get("splits", [])}
            for i, s in enumerate(tests):
                if s not in held:
                    out.append(
                        f"datasets.{name}.test_splits[{i}]: no archive holds split {s!r} "
                        f"(archives hold: {', '.join(sorted(held))})"
                    )
    out += _sweep_errors(config, specs)
    out += _calibration_errors(config, specs)
    for i, d in enumerate(config.get("all", [])):
        if d not in datasets:
            out.append(f"all[{i}]: unknown dataset {d!r} (configured: {', '.join(datasets)})")
    return out


def _train_on_errors(config: dict, key: str, source: str) -> list[str]:
    """``train_on`` names a configured, labelled dataset with a train split."""
    datasets = config.get("datasets", {})
    if source not in datasets:
        return [f"{key}: unknown dataset {source!r} (configured: {', '.join(datasets)})"]
    if not _has_train_split(datasets[source]):
        return [f"{key}: dataset {source!r} has no labelled train split to train on"]
    return []


def _model_source_errors(config: dict, dataset: str, i: int, method: str) -> list[str]:
    """Where a supervised method's model comes from on ``dataset``: released weights, a
    model file, another dataset's training (``train_on``) or its own train split."""
    m = config["methods"][method]
    over = m.get("per_dataset", {}).get(dataset, {})
    cfg = method_config(config, method, dataset)
    key = f"methods.{method}.per_dataset.{dataset}"
    if "model" in over and ("train_on" in over or cfg["pretrained"]):
        return [f"{key}: a model file excludes train_on and pretrained (one source of weights)"]
    if cfg["pretrained"] or cfg["model"]:
        return []
    if cfg["train_on"] is not None:
        where = f"{key}.train_on" if "train_on" in over else f"datasets.{dataset}.train_on"
        return _train_on_errors(config, where, cfg["train_on"])
    d = config["datasets"][dataset]
    if not _has_train_split(d):
        why = (
            "unlabelled"
            if not is_labelled(d)
            else f"without its train split {d.get('train_split')!r}"
        )
        return [
            f"datasets.{dataset}.methods[{i}]: {method!r} is trained, and dataset {dataset!r} "
            f"is {why}: train it elsewhere (datasets.{dataset}.train_on: <labelled dataset>, "
            f"or {key}.model: <model file>)"
        ]
    return []


def _grid_errors(key: str, method: str, grid: dict, config: dict, specs: dict) -> list[str]:
    """A grid names parameters of ``method``'s family, with values its schema accepts."""
    out = []
    methods = config.get("methods", {})
    if method not in methods:
        return [f"{key}: unknown method {method!r} (configured: {', '.join(methods)})"]
    spec = specs.get(methods[method].get("family"))
    if spec is None:
        return out
    known = spec.params_schema()["properties"]
    for param, values in grid.items():
        if param not in known:
            out.append(
                f"{key}.grid.{param}: family {methods[method]['family']!r} has no "
                f"parameter {param!r} (its parameters: {', '.join(sorted(known))})"
            )
            continue
        validator = jsonschema.Draft202012Validator(known[param])
        for j, value in enumerate(values):
            for err in validator.iter_errors(value):
                out.append(f"{key}.grid.{param}[{j}]: {err.message}")
    return out


def calibration_of(config: dict, dataset: str, method: str) -> dict | None:
    """The calibration of ``method`` on ``dataset`` (its ``calibrate`` entry, with ``on``
    resolved to a dataset and split, and the grid's points), or None."""
    for entry in config["datasets"][dataset].get("calibrate", []):
        if entry["method"] == method:
            on = entry.get("on") or f"{dataset}/{config['datasets'][dataset].get('train_split')}"
            on_dataset, on_split = on.split("/")
            return {
                "method": method,
                "dataset": on_dataset,
                "split": on_split,
                "metric": entry.get("metric", "pairwise_f"),
                "grid": entry["grid"],
                "points": grid_points(entry["grid"]),
            }
    return None


def _calibration_errors(config: dict, specs: dict) -> list[str]:
    """A calibration names one of the dataset's methods, a grid of its parameters, and a
    labelled split other than those the dataset is evaluated on."""
    out = []
    datasets = config.get("datasets", {})
    for name, d in datasets.items():
        seen = set()
        for i, entry in enumerate(d.get("calibrate", [])):
            key = f"datasets.{name}.calibrate[{i}]"
            method = entry["method"]
            if method in seen:
                out.append(f"{key}.method: a second calibration of {method!r}")
            seen.add(method)
            if method not in d.get("methods", []):
                out.append(f"{key}.method: {method!r} is not one of datasets.{name}.methods")
            out += _grid_errors(key, method, entry["grid"], config, specs)
            on = entry.get("on")
            if on is None:
                if not _has_train_split(d):
                    out.append(
                        f"{key}.on: dataset {name!r} has no labelled train split: name a "
                        f"labelled dataset/split to calibrate on"
                    )
                continue
            on_dataset, on_split = on.split("/")
            if on_dataset not in datasets:
                out.append(f"{key}.on: unknown dataset {on_dataset!r}")
                continue
            src = datasets[on_dataset]
            if not is_labelled(src):
                out.append(f"{key}.on: dataset {on_dataset!r} is unlabelled: nothing to score")
            elif on_split not in (src.get("train_split"), *src.get("test_splits", [])):
                out.append(f"{key}.on: dataset {on_dataset!r} has no split {on_split!r}")
            if on_dataset == name and on_split in d.get("test_splits", []):
                out.append(
                    f"{key}.on: {on} is a split the calibrated cells are evaluated on "
                    f"(calibrate on the train split or another labelled set)"
                )
    return out


def proposal_sets(block: dict) -> list[str]:
    """The proposal-set names of a ``params`` or ``train`` block: the values of its keys
    that end in ``proposals`` (the ``proposals`` kind of extra input)."""
    return [v for key, v in sorted(block.items()) if key.endswith("proposals")]


def _extra_input_errors(config: dict, specs: dict) -> list[str]:
    """Proposal sets, upstream variants and released weights that a method names must exist
    and suit it."""
    out = []
    methods, sets = config.get("methods", {}), config.get("proposals", {})
    backends = config.get("knn_backends", {})
    for name, b in backends.items():
        if b.get("block_rows") is not None:
            if b["index"] != "flat":
                out.append(
                    f"knn_backends.{name}.block_rows: only an exact (flat) kNN is searched in "
                    f"blocks (an {b['index']} index would be built once per block)"
                )
            elif b["block_rows"] % b.get("batch_size", 16384):
                out.append(
                    f"knn_backends.{name}.block_rows: {b['block_rows']} is not a multiple of "
                    f"batch_size {b.get('batch_size', 16384)} (blocks must search the batches "
                    f"of the unsharded search, so that the merged graph equals it)"
                )
    for name, s in sets.items():
        if s.get("knn_backend", "flat") not in backends:
            out.append(
                f"proposals.{name}.knn_backend: {s.get('knn_backend')!r} is not a key of "
                f"knn_backends ({', '.join(sorted(backends))})"
            )
    for name, m in methods.items():
        spec = specs.get(m.get("family"))
        if spec is None:
            continue
        blocks = [("", m), *((f".per_dataset.{d}", o) for d, o in m.get("per_dataset", {}).items())]
        for key, cfg in blocks:
            for part in ("params", "train"):
                for pname, value in sorted(cfg.get(part, {}).items()):
                    if pname.endswith("proposals") and value not in sets:
                        out.append(
                            f"methods.{name}{key}.{part}.{pname}: unknown proposal set "
                            f"{value!r} (configured: {', '.join(sorted(sets)) or 'none'})"
                        )
            if cfg.get("pretrained"):
                module = importlib.import_module(FAMILIES[m["family"]])
                if not hasattr(module, "load_pretrained"):
                    out.append(
                        f"methods.{name}{key}.pretrained: family {m['family']!r} has no "
                        f"released weights to load"
                    )
        if "upstream" in spec.needs:
            up = m.get("upstream")
            if up is None:
                out.append(f"methods.{name}.upstream: family {m['family']!r} needs one")
            elif up not in methods:
                out.append(
                    f"methods.{name}.upstream: unknown method {up!r} "
                    f"(configured: {', '.join(sorted(methods))})"
                )
            elif not specs[methods[up]["family"]].supervised:
                out.append(f"methods.{name}.upstream: {up!r} is not a trained method")
        elif m.get("upstream") is not None:
            out.append(f"methods.{name}.upstream: family {m['family']!r} reads no upstream output")
    return out


def _sweep_errors(config: dict, specs: dict) -> list[str]:
    """A sweep names a configured variant and parameters of its family, with valid values."""
    out = []
    for name, d in config.get("datasets", {}).items():
        seen = set()
        for i, sweep in enumerate(d.get("sweeps", [])):
            key = f"datasets.{name}.sweeps[{i}]"
            if sweep["method"] in seen:
                out.append(f"{key}.method: a second sweep of {sweep['method']!r}")
            seen.add(sweep["method"])
            out += _grid_errors(key, sweep["method"], sweep["grid"], config, specs)
    return out


def sweep_variant(method: str, point: dict) -> str:
    """The name of one point of a sweep: ``cdp/th~0.65`` (``snakemake.utils.Paramspace``'s
    ``param~value`` pattern, one path level per parameter in the grid's order), so that the
    method wildcard, the file name and the parameter name are one."""
    return "/".join([method, *(f"{param}~{value}" for param, value in point.items())])


def grid_points(grid: dict) -> list[dict]:
    """Every point of a grid ({param: [values]}): the product of the value lists, in the
    config's order."""
    params = list(grid)
    return [
        dict(zip(params, values, strict=True))
        for values in itertools.product(*(grid[p] for p in params))
    ]


def sweep_points(config: dict, dataset: str) -> dict[str, list[dict]]:
    """Every point of each sweep of ``dataset``: method -> [{param: value}, ...]."""
    return {
        sweep["method"]: grid_points(sweep["grid"])
        for sweep in config["datasets"][dataset].get("sweeps", [])
    }


def _register_point(config: dict, method: str, point: dict, dataset: str) -> None:
    """Make ``sweep_variant(method, point)`` a variant of ``method`` with the point's
    ``params`` set for ``dataset`` (over its ``per_dataset`` entry), so that every rule
    treats it as any other variant; its training settings are the method's, so a trained
    method's points share its model. A point clustered on several datasets (a sweep here,
    a calibration there) is one variant with an entry per dataset."""
    name = sweep_variant(method, point)
    variant = config["methods"].get(name) or copy.deepcopy(config["methods"][method])
    base = config["methods"][method].get("per_dataset", {}).get(dataset, {})
    over = variant.setdefault("per_dataset", {}).setdefault(dataset, copy.deepcopy(base))
    over.setdefault("params", {}).update(point)
    config["methods"][name] = variant


def _add_point_variants(config: dict) -> None:
    """Register the points of every sweep (on the swept dataset) and of every calibration
    (on the dataset it is calibrated on)."""
    for dataset in list(config["datasets"]):
        for method, points in sweep_points(config, dataset).items():
            for point in points:
                _register_point(config, method, point, dataset)
        for entry in config["datasets"][dataset].get("calibrate", []):
            cal = calibration_of(config, dataset, entry["method"])
            for point in cal["points"]:
                _register_point(config, cal["method"], point, cal["dataset"])


#: splits of a partitioned (or downloaded) dataset unless it names its own
DEFAULT_SPLITS = {
    "train_split": "part0",
    "test_splits": ["part1", "part3", "part5", "part7", "part9"],
}

#: the one split of an unlabelled dataset
UNLABELLED_SPLIT = "all"


def _fill_dataset_defaults(config: dict) -> list[str]:
    """Defaults that depend on the source: an unlabelled dataset is one split ``all`` with no
    ``train_split`` key (its ``.npy`` gives its dim later, :func:`check_inputs`); every other
    source gets ``dim`` 256, ``train_split`` part0 and ``test_splits`` part1..part9. Returns
    the errors of an unlabelled dataset that names other splits."""
    out = []
    for name, d in config.get("datasets", {}).items():
        if d.get("source") == "unlabelled":
            if d.get("test_splits", [UNLABELLED_SPLIT]) != [UNLABELLED_SPLIT]:
                out.append(
                    f"datasets.{name}.test_splits: an unlabelled dataset is one split "
                    f"{UNLABELLED_SPLIT!r}, got {d['test_splits']}"
                )
            if "train_split" in d:
                out.append(
                    f"datasets.{name}.train_split: an unlabelled dataset has no train split "
                    f"(train_on: <labelled dataset> trains its supervised methods elsewhere)"
                )
            d["test_splits"] = [UNLABELLED_SPLIT]
        else:
            d.setdefault("dim", 256)
            for key, value in DEFAULT_SPLITS.items():
                d.setdefault(key, copy.deepcopy(value))
    return out


def is_labelled(d: dict) -> bool:
    """Whether a dataset's items carry labels (every source but ``unlabelled``)."""
    return d.get("source") != "unlabelled"


def _has_train_split(d: dict) -> bool:
    if not is_labelled(d):
        return False
    if d.get("source") == "download":
        held = {s for a in d.get("archives", {}).values() for s in a.get("splits", [])}
        return d.get("train_split") in held
    return True


def method_config(config: dict, method: str, dataset: str) -> dict:
    """The settings of ``method`` on ``dataset``: the method's own ``k``, ``knn_backend``,
    ``params``, ``train``, ``limits``, ``upstream`` and ``pretrained``, with the method's
    ``per_dataset`` entry for ``dataset`` merged over them (``params``, ``train`` and
    ``limits`` key by key; ``pretrained`` as a whole); the dataset's ``knn_backend``, where
    it sets one, replaces the method's own unless the entry names one. ``train_on`` (the
    dataset whose train split a supervised method trains on; None: its own) comes from the
    entry, else from the dataset; ``model`` (a model file to use as it is) from the entry only.

    The variant keeps its published name (``cdp`` on DeepFashion runs with k 2, th 0.5,
    max_sz 200), so the cell joins the published tables by name.
    """
    m = config["methods"][method]
    ds = config["datasets"].get(dataset, {})
    out = {
        "family": m["family"],
        "k": m["k"],
        "knn_backend": ds.get("knn_backend", m.get("knn_backend", "flat")),
        "params": dict(m.get("params", {})),
        "train": dict(m.get("train", {})),
        "limits": dict(m.get("limits", {})),
        "upstream": m.get("upstream"),
        "pretrained": m.get("pretrained"),
        "train_on": ds.get("train_on"),
        "model": None,
    }
    over = m.get("per_dataset", {}).get(dataset, {})
    for key in ("k", "knn_backend", "pretrained", "train_on", "model"):
        if key in over:
            out[key] = over[key]
    if "model" in over and "train_on" not in over:
        out["train_on"] = None  # a model file wins over the dataset's train_on
    for key in ("params", "train", "limits"):
        out[key].update(over.get(key, {}))
        # in name order: the same settings written in another order are the same params to
        # Snakemake's rerun trigger (a config file rewritten by a tool reorders its keys)
        out[key] = dict(sorted(out[key].items()))
    return out


def method_limits(config: dict, method: str, dataset: str) -> dict:
    """Limits of a cluster job: the top-level ``limits``, then the dataset's, then the
    method's (and its per-dataset entry), each overriding the keys it sets."""
    limits = dict(config.get("limits", {}))
    limits.update(config["datasets"][dataset].get("limits", {}))
    limits.update(method_config(config, method, dataset)["limits"])
    return limits


#: an unlabelled feature file up to this size has its values checked before any job runs
#: (about a second); a larger one is checked by the first job that reads it
SCAN_BYTES = 512 * 2**20


def check_inputs(config: dict, *, deep: bool = True) -> None:
    """Check the user's files that a validated config names, before any job runs: each
    unlabelled dataset's features (header or size, dim, and with ``deep`` every value when
    the file is at most :data:`SCAN_BYTES`) and ids (with ``deep``: count, empty and
    duplicate ids), and each model file. Fills an unlabelled dataset's ``dim`` (from a
    ``.npy`` header) and ``images`` (``{"all": N}``). Without ``deep`` (a job that re-reads
    the workflow on a cluster node, after the main process checked) only the header is
    read.

    Raises
    ------
    InputError
        Every problem found, each naming the file.
    """
    from .io import InputError, inspect_features, read_ids, scan_features

    problems = []
    for name, d in config["datasets"].items():
        if d.get("source") != "unlabelled":
            continue
        try:
            src = inspect_features(d["features"], d.get("dim"))
            if deep and Path(d["features"]).stat().st_size <= SCAN_BYTES:
                scan_features(d["features"], src.dim)
            if deep and d.get("ids"):
                read_ids(d["ids"], src.n, d["features"])
        except InputError as exc:
            problems.append(f"datasets.{name}: {exc}")
            continue
        d["dim"], d["images"] = src.dim, {UNLABELLED_SPLIT: src.n}
    for method, m in config["methods"].items():
        for dataset, over in m.get("per_dataset", {}).items():
            if over.get("model") and not Path(over["model"]).is_file():
                problems.append(
                    f"methods.{method}.per_dataset.{dataset}.model: {over['model']}: model "
                    f"file not found"
                )
    if problems:
        raise InputError("bad input:\n  " + "\n  ".join(problems))


def validate_config(config: dict, schema: dict | str | Path | None = None) -> dict:
    """Validate ``config`` in place (filling defaults) and return it.

    Each point of a dataset's ``sweeps`` and ``calibrate`` grids is then added to
    ``methods`` as a variant named by :func:`sweep_variant` (``cdp/th~0.65``).

    Raises
    ------
    ConfigError
        Listing every schema violation (unknown keys, wrong types, values out of range,
        unknown method family) and every dangling reference (a dataset's method that is not
        configured, a method's kNN backend that does not exist, ...), each with its key path.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema or SCHEMA_PATH)
    else:
        schema = with_family_schemas(schema)
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}")
    errors = _schema_errors(config, schema)
    if not errors:
        errors = _fill_dataset_defaults(config) or _reference_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    _add_point_variants(config)
    return config
