"""Method families, their light specs, and the registry.

A family is one module of this package. At import it may use only numpy, scipy and the light
modules of facecluster (``io``, ``graph``): torch, faiss, infomap and scikit-learn are
imported inside the functions that need them, so the Snakemake driver reads every family's
:class:`FamilySpec` without loading a heavy library (``tests/test_registry.py`` checks it).
A family module exposes

* ``SPEC``: a :class:`FamilySpec` (supervised or not, GPU, conda env, threads, the JSON
  schema of its ``params`` and ``train`` blocks, the extra inputs it needs, and its cost
  estimate);
* ``cluster(features, knn, *, context, model=None, **params) -> labels`` with ``features``
  float32 (N, D) L2-normalised, ``knn`` a :class:`facecluster.io.Knn` (self first) and labels
  int64 (N,) in item order, ``-1`` for items the method discards (they become singletons
  before scoring); or a :class:`Clustering` of the labels and per-item scores;
* if supervised, ``train(features, labels, knn, *, context, **train_params) -> model``
  returning a dict of plain values and tensors that :func:`torch.save` can store.

Method *variants* (``gcnv``, ``cdp``, ``cw``, ...) are named entries of the config with a
``family`` key; the family name is a key of :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import NamedTuple

__all__ = [
    "FAMILIES",
    "NEEDS",
    "Clustering",
    "as_clustering",
    "Context",
    "Cost",
    "FamilySpec",
    "get_family",
    "get_spec",
    "all_specs",
]

#: family name -> module path; a module is imported on first use and is light (see above)
FAMILIES: dict[str, str] = {
    "aro": "facecluster.methods.aro",
    "cdp": "facecluster.methods.cdp",
    "cdp_mediator": "facecluster.methods.cdp_mediator",
    "cdp_vote": "facecluster.methods.cdp_vote",
    "cw": "facecluster.methods.cw",
    "dbscan": "facecluster.methods.dbscan",
    "density_peaks": "facecluster.methods.density_peaks",
    "fast_hac": "facecluster.methods.fast_hac",
    "gcnd": "facecluster.methods.gcnd",
    "gcnds": "facecluster.methods.gcnds",
    "gcne": "facecluster.methods.gcne",
    "gcnv": "facecluster.methods.gcnv",
    "hac": "facecluster.methods.hac",
    "hdbscan": "facecluster.methods.hdbscan",
    "infomap": "facecluster.methods.infomap",
    "kmeans": "facecluster.methods.kmeans",
    "knn_dbscan": "facecluster.methods.knn_dbscan",
    "lgcn": "facecluster.methods.lgcn",
    "meanshift": "facecluster.methods.meanshift",
    "spectral": "facecluster.methods.spectral",
    "starfc": "facecluster.methods.starfc",
    "fces": "facecluster.methods.fces",
    "facemap": "facecluster.methods.facemap",
}

#: the kinds of extra input a family may declare in ``FamilySpec.needs``; the workflow
#: resolves each kind to files for the split being clustered (or trained on), and the task
#: loads them into ``Context.extra[kind]``:
#:
#: * ``committee``: the dataset's committee feature sets of the same items, each with its
#:   kNN graph (same backend and k as the method): a list of ``(features, Knn)``.
#: * ``proposals``: cluster proposals of the split (:class:`facecluster.proposals.Proposals`),
#:   by proposal-set name: ``{name: Proposals}`` for every name in the variant's ``params``
#:   (clustering) or ``train`` block (training) under a key that ends in ``proposals``
#:   (``proposals``, ``iop_proposals``); the sets are entries of the config's ``proposals``.
#: * ``upstream``: the inference output of another (supervised) variant on the same split,
#:   named by the variant's ``upstream`` key: the dict of arrays its family's
#:   ``infer(features, knn, model, *, context)`` returns (GCN-E reads GCN-V's
#:   ``confidence`` (N,) and ``features`` (N, hidden)).
NEEDS = ("committee", "proposals", "upstream")


class Cost(NamedTuple):
    """Estimated peak memory (bytes) and wall time (seconds) of one job."""

    memory_bytes: float
    seconds: float


def _no_cost(n: int, dim: int, k: int, **_) -> Cost:
    return Cost(n * (4 * dim + 8 * k), n * k * 1e-6)


@dataclass(frozen=True)
class FamilySpec:
    """What the workflow needs to know about a family without importing its code.

    Attributes
    ----------
    summary : one line: the method and its paper.
    supervised : trains on the dataset's labelled train split (a ``train`` rule runs).
    gpu : its jobs request a GPU (``gpu: 1``) and use CUDA when present.
    conda_env : the env of its jobs, ``envs/<conda_env>.yaml``.
    threads : CPU threads it can use (the rules request at most this many).
    params : JSON-schema ``properties`` of the variant's ``params`` block (unknown keys are
        rejected); ``default`` values are filled in by the config validation.
    train_params : the same for the ``train`` block (supervised families).
    required : names of ``params`` a variant must set.
    needs : extra inputs, kinds of :data:`NEEDS`.
    thresholds : ``params`` that cut kNN edges by similarity, name -> kind
        (``similarity``, ``cosine_distance``, ``euclidean_distance``): each is checked
        against the split's kNN similarities (:func:`facecluster.diagnostics.threshold_warnings`).
    estimate : ``estimate(n, dim, k, *, params, train_params, train, threads[, gpu]) -> Cost``
        (``gpu`` for GPU families: the time at a GPU's rate) on
        ``n`` items of dimension ``dim`` with ``k`` neighbours, with the variant's complete
        (defaults filled) ``params``/``train_params``; for the rules' ``mem_mb``/``runtime``
        and for refusing a job beyond the configured limits before it starts.
    """

    summary: str
    supervised: bool = False
    gpu: bool = False
    conda_env: str = "eval"
    threads: int = 1
    params: dict = field(default_factory=dict)
    train_params: dict = field(default_factory=dict)
    required: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    thresholds: dict = field(default_factory=dict)
    estimate: Callable[..., Cost] = _no_cost

    def __post_init__(self):
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"unknown needs {sorted(unknown)}; known: {NEEDS}")

    def params_schema(self) -> dict:
        """JSON schema of a variant's ``params`` block."""
        schema = {"type": "object", "additionalProperties": False, "properties": self.params}
        if self.required:
            schema["required"] = list(self.required)
        return schema

    def train_schema(self) -> dict:
        """JSON schema of a variant's ``train`` block (empty for unsupervised families)."""
        return {"type": "object", "additionalProperties": False, "properties": self.train_params}

    def with_defaults(self, params: dict) -> dict:
        """``params`` completed by the family's defaults for what they do not set."""
        return _with_defaults(params, self.params)

    def cost(
        self,
        n: int,
        dim: int,
        k: int,
        *,
        params: dict,
        train_params: dict,
        train: bool,
        threads: int,
        n_true_clusters: int | None = None,
        gpu: bool = False,
        knn_backend: dict | None = None,
    ) -> Cost:
        """:attr:`estimate` with ``params``/``train_params`` completed by their defaults;
        ``n_clusters: "true"`` becomes ``n_true_clusters`` when that is known (a job that
        has read its labels), so the estimate sees the real number of clusters. ``gpu``
        (GPU families only) estimates the time at a GPU's rate. ``knn_backend`` (the
        method's backend spec) goes to estimates that take it: those of families that
        search a kNN of their own (GCN-V on its hidden features)."""
        params = self.with_defaults(params)
        if params.get("n_clusters") == "true" and n_true_clusters:
            params["n_clusters"] = int(n_true_clusters)
        return self.estimate(
            int(n),
            int(dim),
            int(k),
            params=params,
            train_params=_with_defaults(train_params, self.train_params),
            train=bool(train),
            threads=max(1, min(int(threads), self.threads)),
            **({"gpu": True} if gpu and self.gpu else {}),
            **({"knn_backend": knn_backend} if knn_backend and self._takes_backend else {}),
        )

    @property
    def _takes_backend(self) -> bool:
        return "knn_backend" in inspect.signature(self.estimate).parameters


def _with_defaults(values: dict, properties: dict) -> dict:
    out = {name: p["default"] for name, p in properties.items() if "default" in p}
    out.update(values or {})
    return out


class Clustering(NamedTuple):
    """What ``cluster`` may return instead of bare labels: the labels and the method's
    per-item scores (name -> float (N,): GCN-V's confidence, a density), which go into the
    cell's ``clusters.tsv``."""

    labels: object
    scores: dict


def as_clustering(out) -> Clustering:
    """A family's ``cluster`` result as a :class:`Clustering` (bare labels: no scores)."""
    return out if isinstance(out, Clustering) else Clustering(out, {})


@dataclass(frozen=True)
class Context:
    """Run-time settings and inputs a method may need besides its parameters.

    Attributes
    ----------
    seed : seeds every random choice of the method.
    threads : CPU threads the job may use.
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    knn_backend : the kNN backend spec (``index`` plus its parameters) of the method, for
        methods that build further kNN graphs (GCN-V on its hidden features).
    n_true_clusters : number of ground-truth identities of the split when its labels are
        known (methods told to use the true number of clusters read it), else None.
    extra : the extra inputs of ``FamilySpec.needs``, by kind.
    checkpoint : where a training job keeps its periodic checkpoint (None: none); a job
        that finds one there resumes from it.
    """

    seed: int = 0
    threads: int = 1
    device: str = "auto"
    knn_backend: dict = field(default_factory=lambda: {"index": "flat"})
    n_true_clusters: int | None = None
    extra: dict = field(default_factory=dict)
    checkpoint: str | None = None


def get_family(name: str) -> ModuleType:
    """The module of method family ``name``; ``KeyError`` naming the known families."""
    try:
        path = FAMILIES[name]
    except KeyError:
        raise KeyError(
            f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}"
        ) from None
    return importlib.import_module(path)


def get_spec(name: str) -> FamilySpec:
    """The light spec of family ``name`` (imports no heavy library)."""
    return get_family(name).SPEC


def all_specs() -> dict[str, FamilySpec]:
    """Every registered family's spec, by family name."""
    return {name: get_spec(name) for name in sorted(FAMILIES)}
