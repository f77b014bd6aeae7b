"""Per-rule conda envs: every rule has one, every env is pinned and agrees with
requirements.txt, and what a rule imports is in its env."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facecluster.methods import FAMILIES, get_family

ROOT = Path(__file__).resolve().parent.parent
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
#: distribution name -> import name, for the third-party packages the library may import
IMPORT_NAME = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "pyyaml": "yaml",
    "jsonschema": "jsonschema",
    "matplotlib": "matplotlib",
    "scikit-learn": "sklearn",
    "faiss-cpu": "faiss",
    "faiss-gpu": "faiss",
    "torch": "torch",
    "gdown": "gdown",
    "infomap": "infomap",
}


def requirement_pins():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_packages(path):
    """{distribution name: version} of an env file, conda and pip entries alike."""
    spec = yaml.safe_load(path.read_text())
    out = {}
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item == "pip":
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|=)\s*([0-9][A-Za-z0-9_.]*)", item)
            assert m, f"{path.name}: {item!r} is not pinned to an exact version"
            out[m.group(1).lower()] = m.group(3)
    return out


def rule_blocks():
    """rule name -> its text, for every rule of the workflow."""
    blocks = {}
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            blocks[name] = body.split("\n\n\n")[0]
    return blocks


def test_every_rule_has_a_conda_env():
    blocks = rule_blocks()
    assert {"download", "extract", "partition", "knn", "train", "cluster", "table"} <= set(blocks)
    for name, body in blocks.items():
        if name == "all":  # only collects inputs; no job runs
            continue
        assert re.search(r"^    conda:\n", body, flags=re.M), f"rule {name} has no conda:"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_is_pinned_and_agrees_with_requirements(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    pkgs = env_packages(path)
    assert pkgs.pop("python") == "3.11"
    pins = requirement_pins()
    for name, version in pkgs.items():
        pip_name = "faiss-cpu" if name == "faiss-gpu" else name  # the same faiss release
        assert pip_name in pins, f"{path.name}: {name} is not in requirements.txt"
        assert version == pins[pip_name], (
            f"{path.name}: {name} {version}, requirements.txt {pins[pip_name]}"
        )


def test_envs_cover_the_gpu_rules():
    assert "faiss-gpu" in env_packages(ROOT / "envs" / "faiss.yaml")
    torch_env = env_packages(ROOT / "envs" / "torch.yaml")
    assert {"torch", "faiss-gpu"} <= set(torch_env)
    assert "infomap" in env_packages(ROOT / "envs" / "infomap.yaml")


def _import_in_env(env: Path, modules: list[str], run: str = ""):
    """Import ``modules`` in a subprocess where third-party packages outside ``env`` fail."""
    allowed = {IMPORT_NAME[n] for n in env_packages(env) if n in IMPORT_NAME}
    blocked = sorted(set(IMPORT_NAME.values()) - allowed)
    code = f"""
import importlib.abc, importlib.machinery, sys
BLOCKED = {blocked!r}
class Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"{{spec.name}} is not in {env.name}")
    def exec_module(self, module):
        pass
class Block(importlib.abc.MetaPathFinder):
    # a spec without origin whose loading fails: probes such as torch's
    # importlib.util.find_spec(...) see no file, imports fail as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Missing())
sys.meta_path.insert(0, Block())
for m in {modules!r}:
    importlib.import_module(m)
"""
    code += run
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "env, modules",
    [
        ("eval", ["facecluster.tasks", "facecluster.data.download", "facecluster.metrics"]),
        ("faiss", ["facecluster.tasks", "facecluster.knn", "faiss"]),
        ("torch", ["facecluster.tasks", "facecluster.methods.gcnv", "torch", "faiss"]),
    ],
)
def test_rule_modules_import_within_their_env(env, modules):
    _import_in_env(ROOT / "envs" / f"{env}.yaml", modules)


#: a family's heavy libraries are imported inside its functions, so importing the module
#: proves little: run the contract problem of tests/test_registry.py inside the env instead
RUN_FAMILY = """
import sys
sys.path.insert(0, "tests")
from test_registry import _members, _problem, _run
feats, labels = _problem()
_run({family!r}, feats, labels, _members(feats, 0))
"""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_runs_within_its_env(family):
    env = ROOT / "envs" / f"{get_family(family).SPEC.conda_env}.yaml"
    assert env.is_file()
    modules = ["facecluster.tasks", FAMILIES[family]]
    _import_in_env(env, modules, run=RUN_FAMILY.format(family=family))


def test_import_check_fails_for_a_package_outside_the_env():
    with pytest.raises(AssertionError, match="torch is not in eval.yaml"):
        _import_in_env(ROOT / "envs" / "eval.yaml", ["facecluster.nn.gcnv"])
    with pytest.raises(AssertionError, match="torch is not in eval.yaml"):
        _import_in_env(
            ROOT / "envs" / "eval.yaml", ["facecluster.tasks"], run=RUN_FAMILY.format(family="gcnv")
        )
