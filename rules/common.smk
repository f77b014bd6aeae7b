import sys

sys.path.insert(0, workflow.basedir)

from facecluster.config import validate_config
from facecluster.methods import get_family

validate_config(config, f"{workflow.basedir}/config/schema.yaml")

DATASETS = config["datasets"]
METHODS = config["methods"]
BACKENDS = config["knn_backends"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    backend="|".join(BACKENDS),
    split=r"part\d+",
    k=r"\d+",


def split_stem(dataset, split):
    """File stem of a split in a learn-to-cluster data_dir (part0 -> part0_train, ...)."""
    names = DATASETS[dataset].get("split_names", {})
    return names.get(split, f"{split}_train" if split == "part0" else f"{split}_test")


def split_file(dataset, split, folder, ext):
    """A split's file: under the dataset's data_dir if it has one, else under resources/."""
    d = DATASETS[dataset]
    if d["source"] == "data_dir":
        return f"{d['data_dir']}/{folder}/{split_stem(dataset, split)}.{ext}"
    return f"resources/{dataset}/{folder}/{split}.{ext}"


def features_path(dataset, split):
    return split_file(dataset, split, "features", "bin")


def labels_path(dataset, split):
    return split_file(dataset, split, "labels", "meta")


def full_set(dataset):
    """The labelled full set that the partition rule splits."""
    d = DATASETS[dataset]
    if d["source"] == "data_dir":
        raise ValueError(f"dataset {dataset!r} reads its splits from {d['data_dir']}")
    if d["source"] == "labelled":
        return {"features": d["features"], "labels": d["labels"]}
    return {
        "features": f"resources/{dataset}/full/features.bin",
        "labels": f"resources/{dataset}/full/labels.meta",
    }


def knn_path(dataset, split, method):
    m = METHODS[method]
    return f"results/{dataset}/{split}/knn/{m['knn_backend']}_k{m['k']}.npz"


def is_supervised(method):
    return bool(get_family(METHODS[method]["family"]).SUPERVISED)


def cluster_inputs(wildcards):
    inputs = {
        "features": features_path(wildcards.dataset, wildcards.split),
        "labels": labels_path(wildcards.dataset, wildcards.split),
        "knn": knn_path(wildcards.dataset, wildcards.split, wildcards.method),
    }
    if is_supervised(wildcards.method):
        inputs["model"] = f"results/{wildcards.dataset}/models/{wildcards.method}.pt"
    return inputs


def train_inputs(wildcards):
    if not is_supervised(wildcards.method):
        raise ValueError(
            f"method {wildcards.method!r} is unsupervised: nothing to train"
        )
    split = DATASETS[wildcards.dataset]["train_split"]
    return {
        "features": features_path(wildcards.dataset, split),
        "labels": labels_path(wildcards.dataset, split),
        "knn": knn_path(wildcards.dataset, split, wildcards.method),
    }


def dataset_cells(wildcards):
    d = DATASETS[wildcards.dataset]
    return expand(
        "results/{dataset}/{split}/{method}.tsv",
        dataset=wildcards.dataset,
        split=d["test_splits"],
        method=d["methods"],
    )


def all_tables():
    return expand("results/tables/{dataset}.md", dataset=config["all"])


# ---- resources, from input sizes; memory grows with the attempt so --retries escalates


def mem_mb(factor, base=1000):
    """mem_mb = (base + factor * input size) * attempt."""

    def _mem(wildcards, input, attempt):
        return int((base + factor * input.size_mb) * attempt)

    return _mem


def runtime_min(minutes_per_gb, base=10):
    """runtime (minutes) = (base + minutes_per_gb * input size in GB) * attempt."""

    def _runtime(wildcards, input, attempt):
        return int((base + minutes_per_gb * input.size_mb / 1024) * attempt)

    return _runtime
