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
            if spec.supervised and not _has_train_split(d):
                out.append(
                    f"datasets.{name}.methods[{i}]: {m!r} is trained on the dataset's train "
                    f"split {d.get('train_split')!r}, which dataset {name!r} does not have"
                )
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
    for i, d in enumerate(config.get("all", [])):
        if d not in datasets:
            out.append(f"all[{i}]: unknown dataset {d!r} (configured: {', '.join(datasets)})")
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
    methods = config.get("methods", {})
    for name, d in config.get("datasets", {}).items():
        seen = set()
        for i, sweep in enumerate(d.get("sweeps", [])):
            method, grid = sweep["method"], sweep["grid"]
            key = f"datasets.{name}.sweeps[{i}]"
            if method in seen:
                out.append(f"{key}.method: a second sweep of {method!r}")
            seen.add(method)
            if method not in methods:
                out.append(f"{key}: unknown method {method!r} (configured: {', '.join(methods)})")
                continue
            spec = specs.get(methods[method].get("family"))
            if spec is None:
                continue
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


def sweep_variant(method: str, point: dict) -> str:
    """The name of one point of a sweep: ``cdp/th~0.65`` (``snakemake.utils.Paramspace``'s
    ``param~value`` pattern, one path level per parameter in the grid's order), so that the
    method wildcard, the file name and the parameter name are one."""
    return "/".join([method, *(f"{param}~{value}" for param, value in point.items())])


def sweep_points(config: dict, dataset: str) -> dict[str, list[dict]]:
    """Every point of each sweep of ``dataset``: method -> [{param: value}, ...], the
    product of the grid's value lists in the config's order."""
    out = {}
    for sweep in config["datasets"][dataset].get("sweeps", []):
        method, grid = sweep["method"], sweep["grid"]
        params = list(grid)
        out[method] = [
            dict(zip(params, values, strict=True))
            for values in itertools.product(*(grid[p] for p in params))
        ]
    return out


def _add_sweep_variants(config: dict) -> None:
    """Register each sweep point as a variant of its method with the point's ``params``
    set for the swept dataset (over its ``per_dataset`` entry), so that every rule treats it
    as any other variant; its training settings are the method's, so a trained method's
    points share its model."""
    for dataset in config["datasets"]:
        for method, points in sweep_points(config, dataset).items():
            for point in points:
                variant = copy.deepcopy(config["methods"][method])
                over = variant.setdefault("per_dataset", {}).setdefault(dataset, {})
                over.setdefault("params", {}).update(point)
                config["methods"][sweep_variant(method, point)] = variant


def _has_train_split(d: dict) -> bool:
    if d.get("source") == "download":
        held = {s for a in d.get("archives", {}).values() for s in a.get("splits", [])}
        return d.get("train_split") in held
    return True


def method_config(config: dict, method: str, dataset: str) -> dict:
    """The settings of ``method`` on ``dataset``: the method's own ``k``, ``knn_backend``,
    ``params``, ``train``, ``limits``, ``upstream`` and ``pretrained``, with the method's
    ``per_dataset`` entry for ``dataset`` merged over them (``params``, ``train`` and
    ``limits`` key by key; ``pretrained`` as a whole).

    The variant keeps its published name (``cdp`` on DeepFashion runs with k 2, th 0.5,
    max_sz 200), so the cell joins the published tables by name.
    """
    m = config["methods"][method]
    out = {
        "family": m["family"],
        "k": m["k"],
        "knn_backend": m.get("knn_backend", "flat"),
        "params": dict(m.get("params", {})),
        "train": dict(m.get("train", {})),
        "limits": dict(m.get("limits", {})),
        "upstream": m.get("upstream"),
        "pretrained": m.get("pretrained"),
    }
    over = m.get("per_dataset", {}).get(dataset, {})
    for key in ("k", "knn_backend", "pretrained"):
        if key in over:
            out[key] = over[key]
    for key in ("params", "train", "limits"):
        out[key].update(over.get(key, {}))
    return out


def method_limits(config: dict, method: str, dataset: str) -> dict:
    """Limits of a cluster job: the top-level ``limits``, then the dataset's, then the
    method's (and its per-dataset entry), each overriding the keys it sets."""
    limits = dict(config.get("limits", {}))
    limits.update(config["datasets"][dataset].get("limits", {}))
    limits.update(method_config(config, method, dataset)["limits"])
    return limits


def validate_config(config: dict, schema: dict | str | Path | None = None) -> dict:
    """Validate ``config`` in place (filling defaults) and return it.

    Each point of a dataset's ``sweeps`` is then added to ``methods`` as a variant named
    by :func:`sweep_variant` (``cdp/th~0.65``).

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
        errors = _reference_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    _add_sweep_variants(config)
    return config
