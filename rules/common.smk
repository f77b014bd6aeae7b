import os
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
    split=r"[A-Za-z0-9]+",
    k=r"\d+",
    archive=r"[A-Za-z0-9_]+",


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


def knn_path(dataset, split, method):
    m = METHODS[method]
    if BACKENDS[m["knn_backend"]]["index"] == "flat":
        given = given_knn(dataset, split, m["k"])
        if given:
            return given
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
    split = train_split(wildcards.dataset)
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


# ---- resources, from the split's size N, the dimension D and k; memory and runtime grow
# with the attempt, so `retries` escalates a job that ran out of either.
#
# Estimates use only wildcards, never input files, so a dry run on a fresh clone prints
# them: N comes from the features file once it exists, else from the dataset's `images`,
# else from the synthetic scale.

MS1M_IDENTITIES_PER_PART = 8573
# sustained fp32 GEMM per core, with room for top-k selection
CPU_FLOPS_PER_THREAD = 1e10
GPU_FLOPS = 5e12


def n_images(dataset, split):
    """Number of images of a split (an estimate until its features file exists)."""
    d = DATASETS[dataset]
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


def family_of(method):
    return get_family(METHODS[method]["family"])


def gigabytes_mb(n_bytes, attempt, base=1000):
    """mem_mb: ``base`` MB plus ``n_bytes`` with 20 % headroom, times the attempt."""
    return int((base + 1.2 * n_bytes / 1e6) * attempt)


def knn_gpu(dataset, split):
    """1 when the split is large enough for the kNN to go to a GPU."""
    return int(n_images(dataset, split) >= config["knn_gpu_min_images"])


def knn_resources(dataset, split, k, backend, threads, attempt):
    """mem_mb and runtime of building one split's kNN graph."""
    n, dim = n_images(dataset, split), DATASETS[dataset]["dim"]
    gpu = knn_gpu(dataset, split)
    flops = 2.0 * n * n * dim
    if BACKENDS[backend]["index"] != "flat":
        flops /= 10  # IVF/HNSW visit a small fraction of the points
    seconds = flops / (GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads)
    return {
        # features, faiss' result buffers and the written (nbrs, sims): 16 bytes per edge
        "mem_mb": gigabytes_mb(n * (4 * dim + 16 * k), attempt, base=1500),
        "runtime": int((10 + seconds / 60) * attempt),
    }


def method_resources(dataset, split, method, threads, attempt, train):
    """mem_mb and runtime of training or clustering one split with one method."""
    m, family = METHODS[method], family_of(method)
    n, dim = n_images(dataset, split), DATASETS[dataset]["dim"]
    mem = family.memory_bytes(n, dim, m["k"], train=train, **m.get("train", {}))
    rate = GPU_FLOPS if family.GPU else CPU_FLOPS_PER_THREAD * threads
    hidden = m.get("train", {}).get("hidden", 512)
    if train:  # forward + backward of the dense layers, per epoch
        epochs = m.get("train", {}).get("epochs", 100)
        seconds = epochs * 6.0 * n * (2 * dim + 2 * hidden) * hidden / rate
    elif family.SUPERVISED:  # inference, then a kNN on the hidden features
        seconds = (
            2.0 * n * n * hidden + 2.0 * n * (2 * dim + 2 * hidden) * hidden
        ) / rate
    else:
        seconds = n * m["k"] * 1e-6
    return {
        "mem_mb": gigabytes_mb(mem, attempt, base=2000),
        "runtime": int((15 + seconds / 60) * attempt),
    }


def train_split(dataset):
    return DATASETS[dataset]["train_split"]
