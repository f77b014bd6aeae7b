"""File-level steps of the workflow: read inputs, call the array functions, write atomically.

Each function is what one Snakemake rule does; ``workflow_scripts/`` only unpack the
``snakemake`` object and call these, so every step can be run and tested without Snakemake.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as _metrics
from . import tables as _tables
from .data.download import extract as extract_archive
from .data.download import fetch
from .data.partition import partition_files
from .data.synthetic import SyntheticSpec, generate_blocks, generate_member_blocks
from .diagnostics import cluster_summary, threshold_warnings
from .graph import finalize_labels
from .io import (
    InputError,
    Knn,
    atomic_path,
    feature_mean,
    inspect_features,
    read_features,
    read_ids,
    read_knn,
    read_labels,
    write_json,
    write_knn,
)
from .io import write_labels as _write_labels
from .knn import build_knn_from_spec
from .methods import Context, as_clustering, get_family
from .proposals import Proposals
from .proposals import generate as generate_proposals
from .resources import refusal

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "dataset",
    "split",
    "method",
    "n_items",
    "n_true_clusters",
    "n_pred_clusters",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f",
    "bcubed_precision",
    "bcubed_recall",
    "bcubed_f",
    "nmi",
    "seconds",
    "peak_rss_mb",
    "n_singletons",
    "largest_cluster",
    "size_p50",
    "size_p90",
    "size_p99",
    "warning",
    "knn",
    "note",
]

#: the cluster-size summary columns of a cell (:func:`diagnostics.cluster_summary`)
SUMMARY_COLUMNS = ("n_singletons", "largest_cluster", "size_p50", "size_p90", "size_p99")


#: loggers whose INFO lines alarm without informing: faiss's loader reports every
#: instruction-set build it did not find (AVX512, AVX2) as a ModuleNotFoundError before it
#: loads the one that exists; its warnings and errors still reach the log
QUIET_LOGGERS = ("faiss.loader",)


def setup_logging(log_path: str | None = None) -> None:
    """Log to ``log_path`` (the rule's ``log:``) or stderr, with timestamps."""
    handler = logging.FileHandler(log_path, mode="w") if log_path else logging.StreamHandler()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # library warnings (scikit-learn's "graph is not fully connected") go to the job's log
    # with the rest, not to the console of the whole run
    logging.captureWarnings(True)


def peak_rss_mb() -> float:
    """Peak resident memory of this program so far, in MiB: Linux' ``VmHWM``, which starts
    afresh at ``exec`` (``ru_maxrss`` keeps the high-water mark of the process that forked
    it: Snakemake's, or a benchmark driver's), else ``ru_maxrss`` (KiB)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _context(
    method_cfg: dict,
    backends: dict,
    *,
    seed: int,
    threads: int,
    device: str,
    n_true_clusters: int | None = None,
    extra: dict | None = None,
    checkpoint: str | None = None,
) -> Context:
    return Context(
        seed=int(seed),
        threads=int(threads),
        device=device,
        knn_backend=dict(backends[method_cfg["knn_backend"]]),
        n_true_clusters=n_true_clusters,
        extra=extra or {},
        checkpoint=checkpoint,
    )


def load_extra(extra: dict | None, *, dim: int, n_items: int, k: int) -> dict:
    """Read the extra inputs of a family (``FamilySpec.needs``) from their files.

    * ``committee``: a list of ``{"features": .bin, "knn": .npz}`` -> a list of
      ``(features (N, dim) float32, Knn cut to k)``, each checked against the split's N;
    * ``proposals``: a list of ``{"proposals": .npz}`` -> ``{set name: Proposals}`` (the
      name is the file's stem);
    * ``upstream``: ``[{"upstream": .npz}]`` -> the dict of arrays of the upstream
      variant's inference, each with N rows.
    """
    out = {}
    for kind, items in (extra or {}).items():
        if kind == "committee":
            out[kind] = [
                (
                    read_features(f["features"], dim, n_items),
                    _with_k(read_knn(f["knn"], n_items, k=k), k, f["knn"]),
                )
                for f in items
            ]
        elif kind == "proposals":
            out[kind] = {
                Path(f["proposals"]).stem: Proposals.read(f["proposals"], n_items) for f in items
            }
        elif kind == "upstream":
            (f,) = items
            out[kind] = read_inference(f["upstream"], n_items)
        else:
            raise ValueError(f"unknown kind of extra input {kind!r}")
    return out


def read_inference(path: str, n_items: int) -> dict:
    """The arrays written by :func:`infer`, each checked to have ``n_items`` rows."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable inference file ({exc})") from exc
    for name, a in arrays.items():
        if a.shape[:1] != (n_items,):
            raise InputError(f"{path}: {name} has {a.shape[0]} rows, the split has {n_items}")
    return arrays


def _n_true_clusters(labels: np.ndarray | None) -> int | None:
    if labels is None:
        return None
    known = labels[labels >= 0]
    return int(np.unique(known).size) if known.size else None


# --------------------------------------------------------------------------------------- data


def synthesize(out_features: str, out_labels: str, spec: dict) -> dict:
    """Generate the synthetic full set (``SyntheticSpec`` fields in ``spec``) to .bin/.meta."""
    spec = SyntheticSpec(**spec)
    labels = []
    n = 0
    with atomic_path(out_features) as tmp, open(tmp, "wb") as fh:
        for feats, lab in generate_blocks(spec):
            np.ascontiguousarray(feats, dtype="<f4").tofile(fh)
            labels.append(lab)
            n += lab.size
    labels = np.concatenate(labels)
    _write_labels(out_labels, labels)
    info = {"n_items": n, "n_identities": int(np.unique(labels).size)}
    log.info("synthesized %s", info)
    return info


def synthesize_member(out_features: str, spec: dict, *, member: int) -> dict:
    """Generate committee member ``member`` (1, 2, ...) of the synthetic full set: the same
    images, in the same order, seen through another (perturbed) embedding model."""
    spec = SyntheticSpec(**spec)
    n = 0
    with atomic_path(out_features) as tmp, open(tmp, "wb") as fh:
        for feats, lab in generate_member_blocks(spec, member):
            np.ascontiguousarray(feats, dtype="<f4").tofile(fh)
            n += lab.size
    log.info("synthesized committee member %d: %d items", member, n)
    return {"n_items": n}


def partition(
    features: str,
    labels: str,
    out_features: Sequence[str],
    out_labels: Sequence[str],
    splits: Sequence[str],
    *,
    dim: int,
    n_parts: int,
    seed: int,
) -> dict:
    """Write the benchmark ``splits`` (``part0``, ``part1``, ...) of a labelled full set.

    With no ``out_labels`` only features are written: a committee member's splits, cut by
    the base labels."""
    counts = partition_files(
        features,
        labels,
        dict(zip(splits, out_features, strict=True)),
        dict(zip(splits, out_labels, strict=True)) if out_labels else {},
        dim=dim,
        n_parts=n_parts,
        seed=seed,
    )
    log.info("partitioned %s: %s", features, counts)
    return counts


def _with_k(graph, k: int, path: str):
    """``graph`` cut to its ``k`` nearest neighbours (a reused, larger kNN file)."""
    if graph.k < k:
        raise InputError(f"{path}: kNN graph has k={graph.k}, the method needs k={k}")
    return graph.truncate(k) if graph.k > k else graph


def download(
    out: str,
    *,
    gdrive: str | None = None,
    urls: Sequence[str] = (),
    md5: str | None = None,
    mirrors: Sequence[str] = (),
    retries: int = 3,
) -> None:
    """Download one dataset archive to ``out`` (resumed, md5-verified, atomic)."""
    fetch(out, gdrive=gdrive, urls=urls, md5=md5, mirrors=mirrors, retries=retries)
    log.info("downloaded %s (%.1f MB)", out, os.path.getsize(out) / 1e6)


def extract(archive: str, out_dir: str, *, files: dict, optional: Sequence[str] = ()) -> None:
    """Extract the wanted learn-to-cluster ``files`` (path -> md5 or None) of ``archive``.

    Files go to ``<out_dir>.tmp`` first; the folder is renamed to ``out_dir`` only when every
    required file is there and verified.
    """
    out, tmp = Path(out_dir), Path(f"{out_dir}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        found = extract_archive(archive, tmp, files, optional=optional)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("extracted %d files of %s into %s", len(found), archive, out)


def place_split(
    features: str, labels: str, out_features: str, out_labels: str, *, dim: int
) -> dict:
    """Check a ready-made split (lengths, dimension, finite values) and put it in place.

    The files are hard-linked (no extra disk) where the filesystem allows it, else copied;
    the outputs appear atomically.
    """
    lab = read_labels(labels)
    read_features(features, dim, lab.size, labels_path=labels)
    for src, dst in ((features, out_features), (labels, out_labels)):
        with atomic_path(dst) as tmp:
            tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:  # another filesystem, or links not supported
                shutil.copyfile(src, tmp)
    info = {"n_items": int(lab.size), "n_identities": int(np.unique(lab).size)}
    log.info("split %s: %s", features, info)
    return info


def load_split(
    features: str, labels: str | None, dim: int, centre: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (N, dim) L2-normalised (after subtracting the mean in ``centre``, a file
    written by :func:`centre`, when given), and labels (N,) when a label file is given."""
    lab = read_labels(labels) if labels else None
    feats = read_features(
        features,
        dim,
        None if lab is None else lab.size,
        labels_path=labels,
        centre=load_centre(centre, dim),
    )
    return feats, lab


def centre(features: str, out: str, *, dim: int) -> np.ndarray:
    """The mean feature row of a split (float64 (dim,), ``.npy``), for ``normalise: centre``."""
    mean = feature_mean(features, dim)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, mean)
    log.info("mean of %s: norm %.4f", features, float(np.linalg.norm(mean)))
    return mean


def load_centre(path: str | None, dim: int) -> np.ndarray | None:
    """The mean row written by :func:`centre`, or None without a file."""
    if not path:
        return None
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable mean-row file ({exc})") from exc
    if mean.shape != (dim,):
        raise InputError(f"{path}: a mean row of shape {mean.shape}, the features have dim {dim}")
    return mean


# ---------------------------------------------------------------------------------------- kNN


def knn(
    features: str,
    labels: str | None,
    out: str,
    *,
    dim: int,
    k: int,
    backend: dict,
    threads: int,
    seed: int,
    centre: str | None = None,
    out_report: str | None = None,
    blocks: Sequence[str] | None = None,
) -> dict:
    """Build the kNN graph of one split with one backend and k, and write it as ``.npz``;
    with ``out_report``, what it was built with beside it (JSON: the index, its effective
    parameters, and for an approximate index the recall at k measured on a sample of rows
    against exact search, :func:`knn.build_knn`). With ``blocks`` (a sharded search, the
    files of :func:`knn_block`), merge them instead."""
    if blocks:
        report = knn_merge(blocks, out, out_report)
        n = inspect_features(features, dim).n
        if report["n_items"] != n:
            raise InputError(f"{features}: {n} rows, but the kNN blocks cover {report['n_items']}")
        return report
    feats, _ = load_split(features, labels, dim, centre)
    t0 = time.perf_counter()
    report = {}
    graph = build_knn_from_spec(
        feats, k, backend, threads=threads, seed=seed, source=str(features), report=report
    )
    report["seconds"] = time.perf_counter() - t0
    log.info("kNN of %d items: %s", feats.shape[0], report)
    write_knn(out, graph)
    if out_report:
        write_json(out_report, report)
    return report


def knn_block(
    features: str,
    labels: str | None,
    out: str,
    *,
    dim: int,
    k: int,
    backend: dict,
    threads: int,
    seed: int,
    block: int,
    n_blocks: int,
    centre: str | None = None,
) -> tuple[int, int]:
    """One block of a sharded exact kNN: the neighbours (among all rows) of query rows
    ``[block * block_rows, (block + 1) * block_rows)`` (the last block to the end, a block
    past the end empty), written as ``.npz`` with ``nbrs``, ``sims``, ``start``, ``stop``.
    Returns (start, stop)."""
    feats, _ = load_split(features, labels, dim, centre)
    n, rows = feats.shape[0], int(backend["block_rows"])
    start = min(n, block * rows)
    stop = n if block == n_blocks - 1 else min(n, start + rows)
    t0 = time.perf_counter()
    if stop > start:
        graph = build_knn_from_spec(
            feats, k, backend, threads=threads, seed=seed, source=str(features),
            query_rows=(start, stop),
        )  # fmt: skip
        nbrs, sims = graph.nbrs, graph.sims
    else:
        nbrs, sims = np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, nbrs=nbrs, sims=sims, start=start, stop=stop, n_items=n)
    log.info("kNN block %d of %d: rows %d-%d of %d, %.1f s", block + 1, n_blocks, start, stop,
             n, time.perf_counter() - t0)  # fmt: skip
    return start, stop


def knn_merge(blocks: Sequence[str], out: str, out_report: str | None = None) -> dict:
    """The blocks of :func:`knn_block`, in order, as the split's one kNN file (equal to the
    unsharded search); an error naming the block if they do not cover the rows once."""
    nbrs, sims, expected, n = [], [], 0, None
    for path in blocks:
        with np.load(path, allow_pickle=False) as z:
            start, stop, n = int(z["start"]), int(z["stop"]), int(z["n_items"])
            if start != min(expected, n):
                raise InputError(f"{path}: block starts at row {start}, expected {expected}")
            nbrs.append(z["nbrs"])
            sims.append(z["sims"])
            expected = stop
    if n is None or expected != n:
        raise InputError(f"kNN blocks cover rows 0-{expected}, the split has {n}")
    graph = Knn(np.concatenate(nbrs), np.concatenate(sims))
    write_knn(out, graph)
    report = {
        "index": "flat", "exact": True, "recall_at_k": 1.0, "k": graph.k, "n_items": n,
        "blocks": len(blocks),
    }  # fmt: skip
    if out_report:
        write_json(out_report, report)
    return report


def proposals(
    features: str,
    labels: str | None,
    knn_path: str,
    out: str,
    *,
    spec: dict,
    backends: dict,
    dim: int,
    threads: int,
    seed: int,
    centre: str | None = None,
) -> None:
    """Generate one proposal set (a config ``proposals`` entry) on one split; write ``.npz``."""
    feats, _ = load_split(features, labels, dim, centre)
    graph = read_knn(knn_path, feats.shape[0])
    t0 = time.perf_counter()
    props = generate_proposals(
        feats,
        graph,
        spec,
        backend=dict(backends[spec.get("knn_backend", "flat")]),
        threads=threads,
        seed=seed,
    )
    log.info(
        "%d proposals in %d folders (%d entries) in %.1f s",
        props.n_proposals,
        len(props.folders),
        props.items.size,
        time.perf_counter() - t0,
    )
    props.write(out)


# ------------------------------------------------------------------------------ train / cluster


def train(
    features: str,
    labels: str,
    knn_path: str,
    out_model: str,
    *,
    method: str,
    method_cfg: dict,
    backends: dict,
    dim: int,
    seed: int,
    threads: int,
    device: str,
    extra: dict | None = None,
    centre: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
) -> None:
    """Train a supervised method on a labelled split; write its model with :func:`torch.save`.

    ``method_cfg`` is the method's settings on the dataset (``config.method_config``); the
    model depends only on its training (family, k, kNN backend, ``train`` block, split), so
    every variant that shares those shares the file (the workflow gives it no clustering
    ``params``). The file records what applying it needs (family, feature dim, k, kNN
    backend, normalisation) and where it was trained (``dataset``, ``split``), so that a
    dataset that takes it from elsewhere is checked against it.
    """
    family = get_family(method_cfg["family"])
    if not family.SPEC.supervised:
        raise ValueError(f"method {method!r} (family {method_cfg['family']}) is not supervised")
    feats, lab = load_split(features, labels, dim, centre)
    graph = _with_k(
        read_knn(knn_path, feats.shape[0], k=method_cfg["k"]), method_cfg["k"], knn_path
    )
    checkpoint = f"{out_model}.ckpt"
    ctx = _context(
        method_cfg,
        backends,
        seed=seed,
        threads=threads,
        device=device,
        n_true_clusters=_n_true_clusters(lab),
        extra=load_extra(extra, dim=dim, n_items=feats.shape[0], k=method_cfg["k"]),
        checkpoint=checkpoint,
    )
    model = family.train(feats, lab, graph, context=ctx, **method_cfg.get("train", {}))
    model["family"] = method_cfg["family"]
    model["k"] = int(method_cfg["k"])
    model["dim"] = int(dim)
    model["train"] = json.dumps(method_cfg.get("train", {}), sort_keys=True)
    model["applied_with"] = json.dumps(
        {
            "knn_backend": method_cfg["knn_backend"],
            "normalise": "centre" if centre else "l2",
            "dataset": dataset,
            "split": split,
        },
        sort_keys=True,
    )
    save_model(model, out_model)
    # the model is complete: a later training of the same name starts afresh
    Path(checkpoint).unlink(missing_ok=True)


def save_model(model: dict, out_model: str) -> None:
    """Write a model dict with :func:`torch.save`, atomically."""
    import torch

    # through a buffer: torch.save names the zip's root folder after the file, and the
    # temporary file's random name would make two identical models differ in bytes
    buf = io.BytesIO()
    torch.save(model, buf)
    with atomic_path(out_model) as tmp:
        tmp.write_bytes(buf.getvalue())


def import_model(paths: dict, out_model: str, *, method: str, method_cfg: dict) -> None:
    """Released weights (``pretrained``: role -> checkpoint path) mapped onto the family's
    parameter names by its ``load_pretrained``, written as one of our model files."""
    family = get_family(method_cfg["family"])
    if not hasattr(family, "load_pretrained"):
        raise ValueError(f"{method}: family {method_cfg['family']!r} has no released weights")
    for role, path in paths.items():
        if not os.path.isfile(path):
            raise InputError(f"{path}: released weights of {method} ({role}) not found")
    try:
        model = family.load_pretrained(dict(paths))
    except KeyError as exc:  # a role the family needs is not among the paths
        raise InputError(
            f"{method}.pretrained: family {method_cfg['family']!r} needs a checkpoint for role "
            f"{exc}; given: {', '.join(sorted(paths))}"
        ) from None
    model["family"] = method_cfg["family"]
    model["pretrained"] = json.dumps(dict(paths), sort_keys=True)
    save_model(model, out_model)
    log.info("%s: released weights %s imported", method, paths)


def infer(
    features: str,
    labels: str | None,
    knn_path: str,
    model_path: str,
    out: str,
    *,
    method: str,
    method_cfg: dict,
    backends: dict,
    dim: int,
    seed: int,
    threads: int,
    device: str,
    centre: str | None = None,
) -> None:
    """Run a trained variant's inference (its family's ``infer``) on one split and write the
    arrays it returns (``.npz``) for the variants that read it as ``upstream``."""
    family = get_family(method_cfg["family"])
    if not hasattr(family, "infer"):
        raise ValueError(f"{method}: family {method_cfg['family']!r} has no inference output")
    feats, lab = load_split(features, labels, dim, centre)
    graph = _with_k(
        read_knn(knn_path, feats.shape[0], k=method_cfg["k"]), method_cfg["k"], knn_path
    )
    model = load_model(model_path)
    _check_model(model, method_cfg, model_path, dim)
    ctx = _context(method_cfg, backends, seed=seed, threads=threads, device=device)
    arrays = family.infer(feats, graph, model, context=ctx)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{name: np.asarray(a) for name, a in arrays.items()})
    log.info("%s inference on %d items: %s", method, feats.shape[0], sorted(arrays))


def load_model(path: str) -> dict:
    """A model file written by :func:`train` (a dict of tensors and plain values)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise InputError(f"{path}: corrupt or unreadable model file ({exc})") from exc


def _calibrated(method_cfg: dict, calibration: str | None) -> tuple[dict, dict | None]:
    """``method_cfg`` with the parameters a calibration (:func:`calibrate`'s file) chose."""
    if not calibration:
        return method_cfg, None
    chosen = json.loads(Path(calibration).read_text())
    cfg = {**method_cfg, "params": {**method_cfg.get("params", {}), **chosen["chosen"]}}
    return cfg, chosen


def write_clusters(
    out: str, pred: np.ndarray, *, ids: np.ndarray | None = None, scores: dict | None = None
) -> None:
    """The cell's per-item table (TSV): ``id`` (the ids file's, or ``row``: the row index),
    ``cluster``, and the method's per-item scores (confidence, density) where it has them."""
    data = {"id": ids} if ids is not None else {"row": np.arange(pred.size)}
    data["cluster"] = pred
    for name, values in (scores or {}).items():
        values = np.asarray(values)
        if values.shape == pred.shape:
            data[name] = values.astype(np.float32)
    with atomic_path(out) as tmp:
        pd.DataFrame(data).to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def cluster(
    features: str,
    labels: str | None,
    knn_path: str,
    model_path: str | None,
    out_labels: str,
    out_run: str,
    *,
    method: str,
    method_cfg: dict,
    backends: dict,
    dim: int,
    seed: int,
    threads: int,
    device: str,
    limits: dict | None = None,
    extra: dict | None = None,
    centre: str | None = None,
    calibration: str | None = None,
    ids: str | None = None,
    out_clusters: str | None = None,
) -> np.ndarray | None:
    """Cluster one split with one method; write labels (text), a run record (JSON) and, with
    ``out_clusters``, the per-item table (:func:`write_clusters`).

    The run record holds ``seconds`` (wall time of loading inputs and clustering, the
    shared kNN graph excluded), ``peak_rss_mb`` of the job, the cluster-size ``summary``
    (:func:`diagnostics.cluster_summary`), ``warnings`` about thresholds that keep or cut
    nearly every kNN edge (:func:`diagnostics.threshold_warnings`), and the
    ``calibration`` whose chosen parameters it ran with. Labels (``labels``) are optional:
    an unlabelled split is clustered and summarised all the same.

    Before anything is loaded, the family's cost estimate for the split's N is checked
    against ``limits`` (``mem_mb``, ``runtime`` in minutes): a method beyond them is
    refused, with an empty label file and the reason in the run record (``refused``), so
    that its cell shows "—" and the reason while the rest of the table is built. Returns
    the labels, or None when refused.
    """
    t0 = time.perf_counter()
    method_cfg, chosen = _calibrated(method_cfg, calibration)
    family = get_family(method_cfg["family"])
    spec = family.SPEC
    gt = read_labels(labels) if labels else None
    n_items = gt.size if gt is not None else inspect_features(features, dim).n
    record = {
        "method": method,
        "family": method_cfg["family"],
        "params": method_cfg.get("params", {}),
        "k": method_cfg["k"],
        "knn_backend": method_cfg["knn_backend"],
        "n_items": int(n_items),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "warnings": [],
    }
    if chosen is not None:
        record["calibration"] = chosen
    n_true = _n_true_clusters(gt)
    cost = spec.cost(
        n_items,
        dim,
        method_cfg["k"],
        params=method_cfg.get("params", {}),
        train_params=method_cfg.get("train", {}),
        train=False,
        threads=threads,
        n_true_clusters=n_true,
        knn_backend=backends.get(method_cfg["knn_backend"]),
    )
    record["estimate"] = {"mem_mb": cost.memory_bytes / 1e6, "seconds": cost.seconds}
    reason = refusal(cost, limits or {})
    if reason:
        reason = f"{method} on {n_items:,} items {reason}"
        log.warning("refused: %s", reason)
        record.update(refused=reason, n_clusters=None, seconds=None, peak_rss_mb=None)
        with atomic_path(out_labels) as tmp:
            tmp.write_text("")
        if out_clusters:
            write_clusters(out_clusters, np.zeros(0, dtype=np.int64), ids=None)
        write_json(out_run, record)
        return None
    item_ids = read_ids(ids, n_items, features) if ids else None
    feats = read_features(
        features, dim, n_items, labels_path=labels, centre=load_centre(centre, dim)
    )
    graph = _with_k(
        read_knn(knn_path, feats.shape[0], k=method_cfg["k"]), method_cfg["k"], knn_path
    )
    record["warnings"] = threshold_warnings(
        graph,
        spec.with_defaults(method_cfg.get("params", {})),
        spec.thresholds,
        method=method,
    )
    for line in record["warnings"]:
        log.warning("%s", line)
    record["knn"] = read_knn_report(knn_path)
    model = load_model(model_path) if model_path else None
    if model is not None:
        _check_model(model, method_cfg, model_path, dim)
    ctx = _context(
        method_cfg,
        backends,
        seed=seed,
        threads=threads,
        device=device,
        n_true_clusters=n_true,
        extra=load_extra(extra, dim=dim, n_items=feats.shape[0], k=method_cfg["k"]),
    )
    result = as_clustering(
        family.cluster(feats, graph, context=ctx, model=model, **method_cfg.get("params", {}))
    )
    pred = np.asarray(result.labels)
    if pred.shape != (feats.shape[0],):
        raise RuntimeError(
            f"{method}: family {method_cfg['family']} returned labels of shape {pred.shape} "
            f"for {feats.shape[0]} items"
        )
    pred = finalize_labels(pred)
    seconds = time.perf_counter() - t0
    _write_labels(out_labels, pred)
    if out_clusters:
        write_clusters(out_clusters, pred, ids=item_ids, scores=result.scores)
    summary = cluster_summary(pred)
    record.update(
        n_clusters=summary["n_clusters"],
        summary=summary,
        seconds=seconds,
        peak_rss_mb=peak_rss_mb(),
    )
    write_json(out_run, record)
    log.info(
        "%s: %d clusters (%d singletons, largest %d) in %.1f s",
        method,
        summary["n_clusters"],
        summary["n_singletons"],
        summary["largest_cluster"],
        seconds,
    )
    return pred


def cluster_cell(
    features: str,
    labels: str | None,
    knn_path: str,
    model_path: str | None,
    out_labels: str,
    out_run: str,
    out_cell: str,
    *,
    dataset: str,
    split: str,
    method: str,
    **settings,
) -> dict:
    """One benchmark cell in one job: :func:`cluster`, then :func:`evaluate` of its labels
    (without ``labels``: the cell holds the cluster counts and sizes, time and memory).

    Scoring costs a fraction of a second next to clustering, while a job of its own cost
    about a second of interpreter start-up per cell (a fifth of the default run's jobs) and
    one more scheduler round trip on a cluster. ``settings`` are :func:`cluster`'s keywords.
    """
    cluster(features, labels, knn_path, model_path, out_labels, out_run, method=method, **settings)
    return evaluate(
        labels, out_labels, out_run, out_cell, dataset=dataset, split=split, method=method
    )


def read_knn_report(knn_path: str) -> dict | None:
    """The report written beside a kNN file by :func:`knn` (None for a file from elsewhere,
    e.g. learn-to-cluster's exact ``faiss_k_*.npz``)."""
    path = Path(knn_path).with_suffix(".json")
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def knn_label(report: dict | None) -> str:
    """A cell's kNN in a few words: ``exact``, or ``hnsw, recall@80 0.973``."""
    if not report or report.get("exact"):
        return "exact"
    recall = report.get("recall_at_k")
    measured = f", recall@{report['k']} {recall:.3f}" if recall is not None else ""
    return f"{report['index']}{measured}"


def _check_model(model: dict, method_cfg: dict, path: str, dim: int | None = None) -> None:
    """A model file must come from this method's family, k and feature dimension."""
    family = model.get("family", method_cfg["family"])
    if family != method_cfg["family"]:
        raise InputError(
            f"{path}: a model of family {family!r}, but the method is {method_cfg['family']!r}"
        )
    if "k" in model and int(model["k"]) != int(method_cfg["k"]):
        raise InputError(
            f"{path}: a model trained with k={model['k']}, the method has k={method_cfg['k']}"
        )
    if dim is not None and "dim" in model and int(model["dim"]) != int(dim):
        raise InputError(
            f"{path}: a model trained on features of dim {model['dim']}, the features to "
            f"cluster have dim {dim}"
        )


def calibrate(
    cells: Sequence[str],
    out: str,
    *,
    method: str,
    on: str,
    metric: str,
    points: Sequence[dict],
    variants: Sequence[str],
) -> dict:
    """Pick the point of a grid whose cell (clustered and scored on the labelled split
    ``on``) has the highest ``metric``, the first on a tie; write the choice, with every
    point's score, as JSON for the calibrated method's cluster jobs."""
    frame = read_cells(cells).set_index("method")
    scores = []
    for variant, point in zip(variants, points, strict=True):
        value = frame[metric].get(variant, np.nan) if metric in frame else np.nan
        scores.append({"params": dict(point), metric: None if pd.isna(value) else float(value)})
    valid = [i for i, row in enumerate(scores) if row[metric] is not None]
    if not valid:
        raise RuntimeError(
            f"calibration of {method} on {on}: no point of the grid was scored (every cell "
            f"refused: {', '.join(frame.get('note', pd.Series(dtype=str)).dropna().astype(str))})"
        )
    best = max(valid, key=lambda i: (scores[i][metric], -i))
    result = {
        "method": method,
        "on": on,
        "metric": metric,
        "scores": scores,
        "chosen": dict(points[best]),
    }
    write_json(out, result, sort_keys=False)
    log.info(
        "calibration of %s on %s: %s (%s %.4f)",
        method,
        on,
        points[best],
        metric,
        scores[best][metric],
    )
    return result


# ----------------------------------------------------------------------------------- evaluate


def evaluate(
    gt_labels: str | None,
    pred_labels: str,
    run: str,
    out: str,
    *,
    dataset: str,
    split: str,
    method: str,
) -> dict:
    """Score predicted labels against ground truth; write one row of :data:`METRIC_COLUMNS`.

    Every row carries the cluster-size summary, time, memory and the run's threshold
    warnings; without ``gt_labels`` (an unlabelled split) the metric columns stay empty."""
    gt = read_labels(gt_labels) if gt_labels else None
    record = json.loads(Path(run).read_text())
    n_items = gt.size if gt is not None else record["n_items"]
    row = {"dataset": dataset, "split": split, "method": method, "n_items": int(n_items)}
    if record.get("warnings"):
        row["warning"] = " | ".join(record["warnings"])
    if "knn" in record:
        row["knn"] = knn_label(record["knn"])
    if record.get("refused"):  # beyond its limits: no labels, the reason instead
        row["note"] = record["refused"]
    else:
        pred = read_labels(pred_labels)
        if gt is not None:
            if gt.size != pred.size:
                raise InputError(
                    f"{pred_labels}: {pred.size} predicted labels, but {gt_labels} has {gt.size}"
                )
            row.update(_metrics.evaluate(gt, pred))
        summary = record.get("summary") or cluster_summary(pred)
        if gt is None:
            row["n_pred_clusters"] = summary["n_clusters"]
        row.update({c: summary[c] for c in SUMMARY_COLUMNS})
        row["seconds"] = record["seconds"]
        row["peak_rss_mb"] = record["peak_rss_mb"]
    with atomic_path(out) as tmp:
        pd.DataFrame([row], columns=METRIC_COLUMNS).to_csv(tmp, sep="\t", index=False)
    log.info("%s", row)
    return row


def read_cells(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate metric rows written by :func:`evaluate`."""
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""]) for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def table(
    cells: Sequence[str],
    out_tsv: str,
    out_md: str,
    out_html: str | None = None,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
    labelled: bool = True,
) -> pd.DataFrame:
    """The dataset's overview: every method × split (``{metric}_{split}`` TSV columns, %),
    with cluster counts, wall time and peak memory (:func:`tables.overview_table`); for an
    unlabelled dataset the cluster counts and sizes (:func:`tables.unlabelled_table`)."""
    if labelled:
        out = _tables.overview_table(
            read_cells(cells), dataset=dataset, methods=methods, splits=splits
        )
    else:
        (split,) = splits
        out = _tables.unlabelled_table(
            read_cells(cells), dataset=dataset, methods=methods, split=split
        )
    _tables.write_table(out, out_tsv, out_md, out_html)
    return out.data


def table_scales(
    cells: Sequence[str],
    published: str,
    out_tsv: str,
    out_md: str,
    out_html: str,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
    metric: str,
    with_published: bool,
) -> _tables.Table:
    """Methods × scales for ``metric``, beside the published numbers for real datasets."""
    out = _tables.scales_table(
        read_cells(cells),
        _tables.read_published(published),
        dataset=dataset,
        methods=methods,
        splits=splits,
        metric=metric,
        with_published=with_published,
    )
    _tables.write_table(out, out_tsv, out_md, out_html)
    return out


#: the metrics of a one-split table, by view: the published part1 P/R/F table, and the
#: F/F/NMI tables of YTF and DeepFashion
SPLIT_VIEWS = {
    "prf": ("pairwise_precision", "pairwise_recall", "pairwise_f"),
    "metrics": ("pairwise_f", "bcubed_f", "nmi"),
}


def table_split(
    cells: Sequence[str],
    published: str,
    out_tsv: str,
    out_md: str,
    out_html: str,
    *,
    dataset: str,
    methods: Sequence[str],
    split: str,
    view: str,
    with_published: bool,
) -> _tables.Table:
    """Methods × the metrics of ``view`` (:data:`SPLIT_VIEWS`) on one split."""
    out = _tables.split_table(
        read_cells(cells),
        _tables.read_published(published),
        dataset=dataset,
        methods=methods,
        split=split,
        metrics=SPLIT_VIEWS[view],
        with_published=with_published,
    )
    _tables.write_table(out, out_tsv, out_md, out_html)
    return out


def table_sweep(
    cells: Sequence[str],
    out_tsv: str,
    out_md: str,
    out_html: str,
    *,
    dataset: str,
    split: str,
    method: str,
    points: Sequence[dict],
    variants: Sequence[str],
) -> _tables.Table:
    """One row per point of ``method``'s sweep on ``split``."""
    out = _tables.sweep_table(
        read_cells(cells), points, variants, title=f"{dataset} {split}: sweep of {method}"
    )
    _tables.write_table(out, out_tsv, out_md, out_html)
    return out


# -------------------------------------------------------------------------------------- plots


def plot_scales(
    cells: Sequence[str],
    published: str,
    png: str,
    svg: str,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
    with_published: bool,
) -> None:
    """F-score against scale (:func:`plots.f_vs_scale`)."""
    from . import plots

    pub = _tables.read_published(published) if with_published else None
    if pub is not None:
        pub = pub[pub["dataset"] == dataset]
    fig = plots.f_vs_scale(read_cells(cells), pub, dataset=dataset, methods=methods, splits=splits)
    plots.save(fig, png, svg)


def plot_precision_recall(
    cells: Sequence[str], png: str, svg: str, *, dataset: str, methods, splits
) -> None:
    """Pairwise precision against recall per split (:func:`plots.precision_recall`)."""
    from . import plots

    fig = plots.precision_recall(read_cells(cells), dataset=dataset, methods=methods, splits=splits)
    plots.save(fig, png, svg)


def plot_time(cells: Sequence[str], png: str, svg: str, *, dataset: str, methods) -> None:
    """Wall time against items, log–log, with slopes (:func:`plots.time_vs_items`)."""
    from . import plots

    fig = plots.time_vs_items(read_cells(cells), dataset=dataset, methods=methods)
    plots.save(fig, png, svg)


def plot_cluster_sizes(
    gt_labels: str | None,
    predicted: Sequence[str],
    png: str,
    svg: str,
    *,
    dataset: str,
    split: str,
    methods: Sequence[str],
) -> None:
    """Predicted against true cluster-size distributions (:func:`plots.cluster_sizes`);
    a refused cell (empty labels file) shows as "not run"."""
    from . import plots

    true = read_labels(gt_labels) if gt_labels else None
    pred = {}
    for method, path in zip(methods, predicted, strict=True):
        pred[method] = read_labels(path) if os.path.getsize(path) else None
    fig = plots.cluster_sizes(true, pred, dataset=dataset, split=split)
    plots.save(fig, png, svg, tight=False)  # constrained layout: everything inside


def plot_sweep(
    table_tsv: str, png: str, svg: str, *, dataset: str, split: str, method: str, setting: dict
) -> None:
    """F against the swept parameter, the published setting marked (:func:`plots.sweep`)."""
    from . import plots

    data = pd.read_csv(table_tsv, sep="\t", index_col="method")
    fig = plots.sweep(data, dataset=dataset, split=split, method=method, setting=setting)
    plots.save(fig, png, svg)


# ------------------------------------------------------------------------------------- report


def software(config: dict, out_config: str, out_software: str, *, packages: Sequence[str]) -> None:
    """The run's configuration (validated, defaults filled, sweep points included) and the
    software versions, each as an HTML page for the report."""
    import html
    from importlib import metadata

    import yaml

    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>configuration</title></head>'
        "<body><h1>Configuration (validated, defaults filled in)</h1>"
        f"<pre>{html.escape(body)}</pre></body></html>\n"
    )
    with atomic_path(out_config) as tmp:
        tmp.write_text(page)
    rows = [("python", sys.version.split()[0]), ("platform", platform.platform())]
    for name in packages:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    table_ = pd.DataFrame(rows, columns=["software", "version"])
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>software</title></head>'
        "<body><h1>Software versions of the run</h1>"
        f"{table_.to_html(index=False, escape=True, border=1)}</body></html>\n"
    )
    with atomic_path(out_software) as tmp:
        tmp.write_text(page)


def run_logged(log_path: str | None, fn, /, *args, **kwargs):
    """Set up logging to ``log_path``, run ``fn(*args, **kwargs)``, log any exception."""
    setup_logging(log_path)
    try:
        return fn(*args, **kwargs)
    except Exception:
        log.exception("%s failed", fn.__name__)
        raise
