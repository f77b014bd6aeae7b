import hashlib
import json
import math
import os
import re
import sys

sys.path.insert(0, workflow.basedir)

from facecluster import resources
from facecluster.config import (
    calibration_of,
    check_inputs,
    is_labelled,
    method_config,
    method_limits,
    proposal_sets,
    sweep_points,
    sweep_variant,
    validate_config,
)
from facecluster.methods import get_spec
from facecluster.proposals import set_ks

validate_config(config, f"{workflow.basedir}/config/schema.yaml")
# the user's own embeddings (source: unlabelled), ids and model files, checked before any
# job: header, size, dim, ids (and the values of files small enough to read at once); a
# job re-reading the workflow on a cluster node reads the header only (its dim and size)
check_inputs(config, deep=workflow.is_main_process)

DATASETS = config["datasets"]
METHODS = config["methods"]
BACKENDS = config["knn_backends"]
PROPOSALS = config["proposals"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    # a variant, or a point of a sweep of it (cdp/th~0.65)
    method="|".join(map(re.escape, METHODS)),
    backend="|".join(BACKENDS),
    split=r"[A-Za-z0-9]+",
    k=r"\d+",
    archive=r"[A-Za-z0-9_]+",
    member=r"[A-Za-z0-9]+",
    model=r"[A-Za-z0-9_]+",
    block=r"\d+",
    proposal_set=r"[A-Za-z0-9_]+",
    metric="pairwise_f|bcubed_f|nmi",
    view="prf|metrics",


def split_stem(dataset, split):
    """File stem of a split in a learn-to-cluster data_dir (part0 -> part0_train, ...)."""
    names = DATASETS[dataset].get("split_names", {})
    return names.get(split, f"{split}_train" if split == "part0" else f"{split}_test")


def split_file(dataset, split, folder, ext):
    """A split's file: under the dataset's data_dir if it has one, else under resources/;
    an unlabelled dataset's features are its `features` file (no labels: None)."""
    d = DATASETS[dataset]
    if d["source"] == "unlabelled":
        return d["features"] if folder == "features" else None
    if d["source"] == "data_dir":
        return f"{d['data_dir']}/{folder}/{split_stem(dataset, split)}.{ext}"
    return f"resources/{dataset}/{folder}/{split}.{ext}"


def features_path(dataset, split):
    return split_file(dataset, split, "features", "bin")


def labels_path(dataset, split):
    return split_file(dataset, split, "labels", "meta")


def centre_path(dataset, split):
    """The mean row subtracted before normalising (`normalise: centre`): the train split's
    where the dataset has one, else the split's own; None for `normalise: l2`."""
    d = DATASETS[dataset]
    if d["normalise"] != "centre":
        return None
    return f"results/{dataset}/centre/{d.get('train_split') or split}.npy"


def split_inputs(dataset, split):
    """The files of a split that a job reads its features through: the features, the labels
    (labelled datasets) and the mean row (`normalise: centre`)."""
    files = {
        "features": features_path(dataset, split),
        "labels": labels_path(dataset, split),
        "centre": centre_path(dataset, split),
    }
    return {name: path for name, path in files.items() if path}


def knn_blocks(dataset, split, backend):
    """How many query blocks (jobs) a split's kNN with ``backend`` is searched in: by its
    `block_rows` and the split's size (an estimate until the features exist: the last block
    takes the rest, a block past the end is empty); 0 when it is one job."""
    rows = BACKENDS[backend].get("block_rows")
    if not rows:
        return 0
    blocks = -(-n_images(dataset, split) // rows)
    return blocks if blocks > 1 else 0


def knn_inputs(wildcards):
    """The split's features, or (a sharded search) its query blocks to merge as well."""
    inputs = split_inputs(wildcards.dataset, wildcards.split)
    n = knn_blocks(wildcards.dataset, wildcards.split, wildcards.backend)
    if n:
        stem = f"results/{wildcards.dataset}/{wildcards.split}/knn/{wildcards.backend}"
        inputs["blocks"] = [f"{stem}_k{wildcards.k}.blocks/{b}.npz" for b in range(n)]
    return inputs


def full_set(dataset):
    """The labelled full set that the partition rule splits."""
    d = DATASETS[dataset]
    if d["source"] == "labelled":
        return {"features": d["features"], "labels": d["labels"]}
    if d["source"] == "synthetic":
        return {
            "features": f"resources/{dataset}/full/features.bin",
            "labels": f"resources/{dataset}/full/labels.meta",
        }
    raise ValueError(f"dataset {dataset!r} (source {d['source']}) has no full set")


# ---- downloaded datasets: archive -> extracted learn-to-cluster folder -> splits


def archive_of(dataset, split):
    """Name of the first archive of a download dataset that holds ``split``."""
    for name, archive in DATASETS[dataset]["archives"].items():
        if split in archive["splits"]:
            return name
    raise ValueError(
        f"datasets.{dataset}: no archive holds split {split!r} "
        f"(archives: {', '.join(DATASETS[dataset]['archives'])})"
    )


def archive_files(dataset, archive):
    """learn-to-cluster path -> md5 (or None) of the files taken out of an archive: the
    features and labels of the splits it is the source of."""
    md5 = DATASETS[dataset].get("md5", {})
    files = {}
    for split in DATASETS[dataset]["archives"][archive]["splits"]:
        if archive_of(dataset, split) != archive:
            continue
        stem = split_stem(dataset, split)
        for path in (f"features/{stem}.bin", f"labels/{stem}.meta"):
            files[path] = md5.get(path)
    return files


def partition_inputs(wildcards):
    """The partition rule splits a full set, or takes a split out of an extracted archive."""
    d = DATASETS[wildcards.dataset]
    if d["source"] == "download":
        archive = archive_of(wildcards.dataset, wildcards.split)
        return {"archive": f"resources/{wildcards.dataset}/archives/{archive}"}
    return full_set(wildcards.dataset)


def given_knn(dataset, split, k):
    """A learn-to-cluster kNN file of a data_dir dataset, ``knns/<stem>/faiss_k_<K>.npz``
    with the smallest K >= k, or None. Its exact (IndexFlatIP) neighbours are what our
    `flat` backend computes, so methods with that backend reuse it (cut to k)."""
    d = DATASETS[dataset]
    if d["source"] != "data_dir" or not d["reuse_knn"]:
        return None
    folder = f"{d['data_dir']}/knns/{split_stem(dataset, split)}"
    ks = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            stem, _, ext = name.rpartition(".")
            if ext == "npz" and stem.startswith("faiss_k_") and stem[8:].isdigit():
                ks.append(int(stem[8:]))
    ks = sorted(K for K in ks if K >= k)
    return f"{folder}/faiss_k_{ks[0]}.npz" if ks else None


def canonical(value):
    """``value`` (config dicts and lists) with every dict in key order."""
    return json.loads(json.dumps(value, sort_keys=True))


def mcfg(dataset, method):
    """Settings of ``method`` on ``dataset`` (its per_dataset entry merged in)."""
    return method_config(config, method, dataset)


def spec_of(method):
    return get_spec(METHODS[method]["family"])


def knn_k(dataset, backend, k, committee=False):
    """k of the one kNN graph per (dataset, split, backend): the largest k that any method
    of the dataset (or a proposal set one of them names) needs with that backend, and at
    least ``k``; smaller k are cut from it. With ``committee``, the same over the methods
    that read the committee's graphs."""
    ks = [k]
    for m in DATASETS[dataset]["methods"]:
        c = mcfg(dataset, m)
        if committee and "committee" not in spec_of(m).needs:
            continue
        if c["knn_backend"] == backend:
            ks.append(c["k"])
        if committee:
            continue
        for name in proposal_sets(c["params"]) + proposal_sets(c["train"]):
            if PROPOSALS[name]["knn_backend"] == backend:
                ks.extend(set_ks(PROPOSALS[name]))
        if c["upstream"]:
            up = mcfg(dataset, c["upstream"])
            if up["knn_backend"] == backend:
                ks.append(up["k"])
    return max(ks)


def knn_file(dataset, split, backend, k, member=None):
    """The kNN graph a method with (backend, k) reads: a learn-to-cluster file of the
    dataset's data_dir when one with K >= k exists (flat backend only), else the shared
    graph of the split at the largest k (of the base features, or of a committee member).
    """
    if member is None and BACKENDS[backend]["index"] == "flat":
        given = given_knn(dataset, split, k)
        if given:
            return given
    K = knn_k(dataset, backend, k, committee=member is not None)
    if member is not None:
        return f"results/{dataset}/{split}/committee/{member}/knn/{backend}_k{K}.npz"
    return f"results/{dataset}/{split}/knn/{backend}_k{K}.npz"


def knn_path(dataset, split, method):
    m = mcfg(dataset, method)
    return knn_file(dataset, split, m["knn_backend"], m["k"])


def committee_features_path(dataset, split, member):
    """Features of committee member ``member`` for ``split`` (same items as the split)."""
    d = DATASETS[dataset]
    if d["source"] == "data_dir":
        return f"{d['data_dir']}/committee/{member}/{split_stem(dataset, split)}.bin"
    return f"resources/{dataset}/committee/{member}/{split}.bin"


def extra_files(dataset, split, method, train=False):
    """The extra inputs a family declares (``FamilySpec.needs``), by kind, as file paths,
    for clustering ``split`` or (``train``) training on it: committee members' features and
    kNN; the proposal sets named in ``params`` (``train``); the upstream variant's inference
    on the split."""
    m, extra = mcfg(dataset, method), {}
    for kind in spec_of(method).needs:
        if kind == "committee":
            extra[kind] = [
                {
                    "features": committee_features_path(dataset, split, member),
                    "knn": knn_file(dataset, split, m["knn_backend"], m["k"], member),
                }
                for member in DATASETS[dataset]["committee"]
            ]
        elif kind == "proposals":
            names = proposal_sets(m["train"] if train else m["params"])
            extra[kind] = [
                {"proposals": f"results/{dataset}/{split}/proposals/{name}.npz"}
                for name in names
            ]
        elif kind == "upstream":
            model = model_name(dataset, m["upstream"])
            extra[kind] = [{"upstream": f"results/{dataset}/{split}/infer/{model}.npz"}]
    return extra


def _flat_inputs(extra):
    """Named inputs of the files in ``extra_files`` (so they enter the DAG)."""
    return {
        f"{kind}_{i}_{name}": path
        for kind, items in extra.items()
        for i, files in enumerate(items)
        for name, path in files.items()
    }


def is_supervised(method):
    return spec_of(method).supervised


def train_cfg(dataset, method):
    """What a training job is given of the method's settings: all but its clustering
    ``params`` and ``limits``, so that a new clustering parameter (or limit) of a variant
    never reruns the training of the model it shares (Snakemake's params trigger)."""
    return {
        n: v for n, v in mcfg(dataset, method).items() if n not in ("params", "limits")
    }


def train_backends(dataset, method):
    """The one kNN backend a training job searches with, without ``block_rows`` (how the
    search is sharded), so that a backend added to the config reruns no training."""
    name = mcfg(dataset, method)["knn_backend"]
    return {name: {n: v for n, v in BACKENDS[name].items() if n != "block_rows"}}


def model_name(dataset, method):
    """A trained model is keyed by its training, not by the variant: the family, k, kNN
    backend, ``train`` block, train split and extra inputs (committee, proposal sets,
    upstream model) hash to one name, so variants that differ only in clustering
    parameters share one model file. Released weights are keyed by their paths, a model
    file (`model`) by its path; with `train_on` the model is the other dataset's."""
    m = mcfg(dataset, method)
    if m["model"]:
        digest = hashlib.sha1(m["model"].encode()).hexdigest()[:10]
        return f"{m['family']}_file_{digest}"
    if m["train_on"]:
        return model_name(m["train_on"], method)
    if m["pretrained"]:
        key = {"family": m["family"], "pretrained": m["pretrained"]}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        return f"{m['family']}_pretrained_{digest}"
    key = {
        "family": m["family"],
        "k": m["k"],
        # how the search is sharded never changes the graph
        "knn_backend": {
            n: v for n, v in BACKENDS[m["knn_backend"]].items() if n != "block_rows"
        },
        # how often a checkpoint is written never changes the model
        "train": {n: v for n, v in m["train"].items() if n != "checkpoint_every"},
        "train_split": train_split(dataset),
        "extra": extra_files(dataset, train_split(dataset), method, train=True),
        "proposals": {
            n: PROPOSALS[n]
            for n in proposal_sets(m["train"])
            if "proposals" in spec_of(method).needs
        },
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{m['family']}_{digest}"


def model_path(dataset, method):
    """The model file a supervised variant clusters with: trained (``models/``, of the
    `train_on` dataset where it names one), imported from released weights
    (``pretrained/``), or the variant's `model` file."""
    m = mcfg(dataset, method)
    if m["model"]:
        return m["model"]
    if m["train_on"]:
        return model_path(m["train_on"], method)
    folder = "pretrained" if m["pretrained"] else "models"
    return f"results/{dataset}/{folder}/{model_name(dataset, method)}.pt"


def model_method(dataset, model):
    """A method whose training (or released weights) is ``model`` (any of the variants
    that share it)."""
    for method, m in METHODS.items():
        if spec_of(method).supervised and model_name(dataset, method) == model:
            return method
    raise ValueError(
        f"no supervised method of dataset {dataset!r} trains model {model!r}"
    )


def calibration_path(dataset, method):
    """The calibration a method's cells on ``dataset`` run with (None: none)."""
    if calibration_of(config, dataset, method) is None:
        return None
    return f"results/{dataset}/calibration/{method}.json"


def cluster_inputs(wildcards):
    dataset, split, method = wildcards.dataset, wildcards.split, wildcards.method
    inputs = {
        **split_inputs(dataset, split),
        "knn": knn_path(dataset, split, method),
        **_flat_inputs(extra_files(dataset, split, method)),
    }
    if is_supervised(method):
        inputs["model"] = model_path(dataset, method)
    calibration = calibration_path(dataset, method)
    if calibration:
        inputs["calibration"] = calibration
    if DATASETS[dataset].get("ids"):
        inputs["ids"] = DATASETS[dataset]["ids"]
    return inputs


def train_inputs(wildcards):
    dataset, method = wildcards.dataset, model_method(
        wildcards.dataset, wildcards.model
    )
    split = train_split(dataset)
    return {
        **split_inputs(dataset, split),
        "knn": knn_path(dataset, split, method),
        **_flat_inputs(extra_files(dataset, split, method, train=True)),
    }


def infer_inputs(wildcards):
    """A trained variant's inference on a split: its features, kNN and model."""
    dataset, split = wildcards.dataset, wildcards.split
    method = model_method(dataset, wildcards.model)
    return {
        **split_inputs(dataset, split),
        "knn": knn_path(dataset, split, method),
        "model": model_path(dataset, method),
    }


def proposals_inputs(wildcards):
    """A proposal set on a split: the features and the shared kNN graph of its backend."""
    dataset, split = wildcards.dataset, wildcards.split
    s = PROPOSALS[wildcards.proposal_set]
    return {
        **split_inputs(dataset, split),
        "knn": knn_file(dataset, split, s["knn_backend"], max(set_ks(s))),
    }


def pretrained_inputs(wildcards):
    """The released checkpoints of a variant (role -> path)."""
    method = model_method(wildcards.dataset, wildcards.model)
    return mcfg(wildcards.dataset, method)["pretrained"]


def dataset_cells(wildcards):
    d = DATASETS[wildcards.dataset]
    return expand(
        "results/{dataset}/{split}/{method}.tsv",
        dataset=wildcards.dataset,
        split=d["test_splits"],
        method=d["methods"],
    )


def split_cells(wildcards):
    return expand(
        "results/{dataset}/{split}/{method}.tsv",
        dataset=wildcards.dataset,
        split=wildcards.split,
        method=DATASETS[wildcards.dataset]["methods"],
    )


def split_labels(wildcards):
    return expand(
        "results/{dataset}/{split}/{method}.labels",
        dataset=wildcards.dataset,
        split=wildcards.split,
        method=DATASETS[wildcards.dataset]["methods"],
    )


def calibration_cells(wildcards):
    """The cells of a calibration's grid, on the labelled split it is calibrated on."""
    cal = calibration_of(config, wildcards.dataset, wildcards.method)
    return expand(
        "results/{dataset}/{split}/{method}.tsv",
        dataset=cal["dataset"],
        split=cal["split"],
        method=[sweep_variant(wildcards.method, p) for p in cal["points"]],
    )


def cluster_sizes_inputs(wildcards):
    """A split's predicted labels (and cells), and its true labels where it has them."""
    inputs = {"pred": split_labels(wildcards), "cells": split_cells(wildcards)}
    gt = labels_path(wildcards.dataset, wildcards.split)
    if gt:
        inputs["gt"] = gt
    return inputs


def with_published(dataset):
    """Real datasets show the published numbers beside ours; synthetic and unlabelled ones
    ours only."""
    return DATASETS[dataset]["source"] not in ("synthetic", "unlabelled")


def published_path():
    """The published numbers (``published``): relative to the working directory, else to
    the workflow's directory (the shipped ``config/published_results.tsv``)."""
    path = config["published"]
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(workflow.basedir, path)


def sweep_split(dataset):
    """Sweeps run on the dataset's first test split."""
    return DATASETS[dataset]["test_splits"][0]


def sweep_variants(dataset, method):
    return [sweep_variant(method, p) for p in sweep_points(config, dataset)[method]]


def sweep_cells(wildcards):
    return expand(
        "results/{dataset}/{split}/{method}.tsv",
        dataset=wildcards.dataset,
        split=sweep_split(wildcards.dataset),
        method=sweep_variants(wildcards.dataset, wildcards.method),
    )


def sweep_setting(dataset, method):
    """The variant's own (published) values of its swept parameters on ``dataset``."""
    params = mcfg(dataset, method)["params"]
    grid = next(s["grid"] for s in DATASETS[dataset]["sweeps"] if s["method"] == method)
    return {p: params.get(p) for p in grid}


def dataset_targets(dataset):
    """What the default target builds for a dataset: its tables (the overview, the published layout:
    part1 P/R/F and a table per metric across scales, or the one-split table), its plots
    (cluster sizes of the largest test split; any split is a target) and its sweeps."""
    d = DATASETS[dataset]
    splits = d["test_splits"]
    if not is_labelled(d):
        # the user's own embeddings: the summary table, each method's clusters, the sizes
        return [
            *(f"results/tables/{dataset}{ext}" for ext in (".md", ".html")),
            *expand(
                "results/{dataset}/{split}/{method}.clusters.tsv",
                dataset=dataset,
                split=splits,
                method=d["methods"],
            ),
            *(
                f"results/plots/{dataset}_{splits[0]}_cluster_sizes.{e}"
                for e in ("png", "svg")
            ),
        ]
    tables = [dataset, f"{dataset}_{splits[0]}_prf"]
    plots = [f"{dataset}_precision_recall"]
    plots.append(f"{dataset}_{splits[-1]}_cluster_sizes")
    if len(splits) > 1:
        tables += [f"{dataset}_scales_{m}" for m in ("pairwise_f", "bcubed_f", "nmi")]
        plots += [f"{dataset}_scales_f", f"{dataset}_time_vs_items"]
    else:
        tables.append(f"{dataset}_{splits[0]}_metrics")
    for method in (s["method"] for s in d["sweeps"]):
        tables.append(f"{dataset}_sweep_{method}")
        plots.append(f"{dataset}_sweep_{method}")
    return [
        *(f"results/tables/{t}{ext}" for t in tables for ext in (".md", ".html")),
        *(f"results/plots/{p}.{ext}" for p in plots for ext in ("png", "svg")),
    ]


def _requirements():
    """The package names of requirements.txt (for the report's software versions)."""
    names = []
    with open(f"{workflow.basedir}/requirements.txt") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                names.append(re.split(r"[=<>~!\[ ;]", line)[0])
    return names


SOFTWARE = _requirements() + ["faiss-gpu"]


def all_tables():
    targets = [t for d in config["all"] for t in dataset_targets(d)]
    return targets + ["results/report/config.html", "results/report/software.html"]


# ---- resources, from the split's size N, the dimension D and k (facecluster.resources and
# each family's own estimate); memory and runtime grow with the attempt, so `retries`
# escalates a job that ran out of either.
#
# Estimates use only wildcards, never input files, so a dry run on a fresh clone prints
# them: N comes from the features file once it exists, else from the dataset's `images`,
# else from the synthetic scale.

MS1M_IDENTITIES_PER_PART = 8573


def n_images(dataset, split):
    """Number of images of a split (an estimate until its features file exists)."""
    d = DATASETS[dataset]
    if not is_labelled(d):
        return d["images"]["all"]  # read from the file's header by check_inputs
    path = features_path(dataset, split)
    if os.path.exists(path):
        return os.path.getsize(path) // (4 * d["dim"])
    if split in d.get("images", {}):
        return d["images"][split]
    # partN (N >= 1) holds parts 1..N; part0 and named splits count as one part
    is_part = split.startswith("part") and split[4:].isdigit()
    parts = max(1, int(split[4:])) if is_part else 1
    if d["source"] == "synthetic":
        s = d["synthetic"]
        return int(s["scale"] * MS1M_IDENTITIES_PER_PART * s["mean_images"] * parts)
    if d["source"] == "labelled" and os.path.exists(d["features"]):
        total = os.path.getsize(d["features"]) // (4 * d["dim"])
        return total * parts // d["n_parts"]
    return 100_000  # unknown (no `images` entry): a modest default, below the GPU threshold


def synthetic_spec(dataset):
    """Generator settings of a synthetic dataset (its `synthetic` block, dim and seed)."""
    d = DATASETS[dataset]
    return {**d["synthetic"], "dim": d["dim"], "seed": config["seed"]}


def partition_mem_mb(wildcards, attempt):
    """Partitioning one split: labels (int64) and the shuffle of the full set; a
    downloaded split is read whole."""
    d = DATASETS[wildcards.dataset]
    n = n_images(wildcards.dataset, wildcards.split)
    return gigabytes_mb(n * (4 * d["dim"] + 32), attempt)


def partition_runtime(wildcards, attempt):
    return int((10 + n_images(wildcards.dataset, wildcards.split) / 1e6 * 5) * attempt)


def gigabytes_mb(n_bytes, attempt, base=1000):
    """mem_mb: ``base`` MB plus ``n_bytes`` with 20 % headroom, times the attempt."""
    return resources.mem_mb(resources.Cost(n_bytes, 0), attempt, base_mb=base)


def knn_gpu(dataset, split):
    """1 when the split is large enough for the kNN to go to a GPU."""
    return int(n_images(dataset, split) >= config["knn_gpu_min_images"])


def knn_part(dataset, split, backend):
    """What the knn job of a split does: search it whole, or merge its query blocks."""
    return "merge" if knn_blocks(dataset, split, backend) else "whole"


def knn_resources(dataset, split, k, backend, threads, attempt, part="whole"):
    """mem_mb and runtime of building one split's kNN graph (``part`` "whole"), of one of
    its query blocks ("block": the whole index, a block's share of the time), or of merging
    the blocks ("merge": the graph's memory and a few seconds)."""
    blocks = knn_blocks(dataset, split, backend)
    if part == "merge":
        n = n_images(dataset, split)
        cost = resources.Cost(n * k * 16.0, 10.0 + n * k * 1e-7)
        return {
            "mem_mb": resources.mem_mb(cost, attempt, base_mb=1500),
            "runtime": resources.runtime_minutes(cost, attempt),
        }
    cost = resources.knn_cost(
        n_images(dataset, split),
        DATASETS[dataset]["dim"],
        k,
        index=BACKENDS[backend]["index"],
        gpu=bool(knn_gpu(dataset, split)),
        threads=threads,
        params=BACKENDS[backend],
    )
    if part == "block":
        cost = resources.Cost(cost.memory_bytes, cost.seconds / max(1, blocks))
    return {
        "mem_mb": resources.mem_mb(cost, attempt, base_mb=1500),
        "runtime": resources.runtime_minutes(cost, attempt),
    }


def method_cost(dataset, split, method, threads, train):
    """A job's estimate. A training job of a GPU family gets a GPU (`gpu: 1`), so its
    runtime request is at a GPU's rate (at the CPU's, GCN-V's 80,000 MS1M iterations ask
    for months, which no SLURM partition accepts); a cluster job's, capped by its limits,
    stays at the CPU's, the rate its refusal is judged by on any machine."""
    m = mcfg(dataset, method)
    return spec_of(method).cost(
        n_images(dataset, split),
        DATASETS[dataset]["dim"],
        m["k"],
        params=m["params"],
        train_params=m["train"],
        train=train,
        threads=threads,
        gpu=train,
        knn_backend=BACKENDS[m["knn_backend"]],
    )


def method_resources(dataset, split, method, threads, attempt, train):
    """mem_mb and runtime of training or clustering one split with one method; a cluster
    job asks for at most its limits (beyond them it only writes why it was refused), its
    memory headroom included: ``mem_mb`` is the node's size."""
    cost = method_cost(dataset, split, method, threads, train)
    mem_cap = math.inf
    if not train:
        limits = method_limits(config, method, dataset)
        cost = resources.within_limits(cost, limits)
        mem_cap = limits.get("mem_mb", math.inf) * attempt
    return {
        "mem_mb": int(min(resources.mem_mb(cost, attempt, base_mb=2000), mem_cap)),
        "runtime": resources.runtime_minutes(cost, attempt, base_min=15),
    }


def proposals_resources(dataset, split, proposal_set, attempt):
    """mem_mb and runtime of generating one proposal set: the kNN graph and its pairs (about
    40 bytes per kNN entry) and the features, with a pass of components per threshold.
    """
    d, s = DATASETS[dataset], PROPOSALS[proposal_set]
    n, k = n_images(dataset, split), max(set_ks(s))
    folders = len(s["iter0"]) * (1 + len(s["iter1"]))
    cost = resources.Cost(n * (40 * k + 8 * d["dim"]), n * k * 2e-7 * folders)
    return {
        "mem_mb": resources.mem_mb(cost, attempt, base_mb=1500),
        "runtime": resources.runtime_minutes(cost, attempt),
    }


def model_threads(dataset, model, split):
    """Threads of the train or infer job of ``model`` on ``split``."""
    return method_threads(model_method(dataset, model), dataset, split)


def split_threads(dataset, split, most):
    """Threads of a job on `split`: `most`, or one for a split below `single_thread_below`
    images, where threads barely help (2 threads gave 1.0-1.3x on the default's 6K-52K
    items) and one-thread jobs side by side finish sooner. On a small machine a
    multi-thread job also waits until every core is free at once: behind a stream of
    one-thread jobs the train split's kNN, which every training waits for, started 7 of
    the default run's 16 minutes late."""
    return 1 if n_images(dataset, split) < config["single_thread_below"] else most


def knn_threads(dataset, split):
    """Threads of a kNN job (faiss uses them all)."""
    return split_threads(dataset, split, 16)


def proposals_threads(dataset, split):
    """Threads of a proposals job (its super-vertex kNN is threaded)."""
    return split_threads(dataset, split, 4)


def method_threads(method, dataset, split):
    """Threads of a train/cluster/infer job: as many as the family can use (at most 16)."""
    return split_threads(dataset, split, min(16, spec_of(method).threads))


def train_split(dataset):
    """The dataset's train split (None: an unlabelled dataset has none)."""
    return DATASETS[dataset].get("train_split")
