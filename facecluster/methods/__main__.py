"""Print the method families' reference (docs/methods.md) from their specs.

``python -m facecluster.methods > docs/methods.md``; a test checks that the committed page
equals this output, so the documentation of every family's parameters cannot drift.
"""

from __future__ import annotations

import sys

from . import FamilySpec, all_specs


def _type(prop: dict) -> str:
    if "oneOf" in prop:
        return " or ".join(_type(p) for p in prop["oneOf"])
    if "const" in prop:
        return f"`{prop['const']!r}`".replace("'", '"')
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    t = prop.get("type", "any")
    if isinstance(t, list):
        t = " or ".join(t)
    bounds = []
    if "minimum" in prop:
        bounds.append(f"≥ {prop['minimum']}")
    if "exclusiveMinimum" in prop:
        bounds.append(f"> {prop['exclusiveMinimum']}")
    if "maximum" in prop:
        bounds.append(f"≤ {prop['maximum']}")
    if "exclusiveMaximum" in prop:
        bounds.append(f"< {prop['exclusiveMaximum']}")
    if t == "array" and "items" in prop:
        t = f"list of {_type(prop['items'])}"
    return " ".join([t, *bounds])


def _default(prop: dict) -> str:
    if "default" not in prop:
        return "required"
    v = prop["default"]
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    return f"`{v}`"


def _table(title: str, props: dict) -> list[str]:
    if not props:
        return []
    lines = [f"| `{title}` key | type | default | meaning |", "|---|---|---|---|"]
    for name, prop in props.items():
        desc = " ".join(prop.get("description", "").split())
        lines.append(f"| `{name}` | {_type(prop)} | {_default(prop)} | {desc} |")
    return [*lines, ""]


def family_markdown(name: str, spec: FamilySpec) -> list[str]:
    """The section of one family."""
    facts = [
        "supervised (trained on the dataset's train split)" if spec.supervised else "unsupervised",
        "requests a GPU" if spec.gpu else "CPU",
        f"env `envs/{spec.conda_env}.yaml`",
        f"up to {spec.threads} thread{'s' if spec.threads > 1 else ''}",
    ]
    if spec.needs:
        facts.append("needs " + ", ".join(f"`{n}`" for n in spec.needs))
    lines = [f"## `{name}`", "", " ".join(spec.summary.split()), "", "; ".join(facts) + ".", ""]
    return lines + _table("params", spec.params) + _table("train", spec.train_params)


def markdown() -> str:
    lines = [
        "# Method families",
        "",
        "Generated from the families' specs (`facecluster/methods/*.py`) by",
        "`python -m facecluster.methods > docs/methods.md`; do not edit by hand. A variant in",
        "`config/config.yaml` names its `family` and sets these `params` (and `train`);",
        "omitted keys take the defaults below.",
        "",
    ]
    for name, spec in all_specs().items():
        lines += family_markdown(name, spec)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
