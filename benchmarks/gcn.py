"""Training and inference time and peak memory of the learned families on one split.

Generates a synthetic MS1M-like train split and test split of ``--n`` items each (the
default generator; ``benchmarks/methods.py: make_data``) with their exact kNN at ``--k``,
then, for each learned variant of ``config/config.yaml`` (its settings on ``--dataset``, by
default the embedded ``synth``: MS1M's parameters with the synthetic training length),
trains it on the train split and clusters the test split, each phase in its own subprocess
so that the peak memory is the phase's own. Extra inputs (proposal sets, the upstream
GCN-V's output) are built before the clock starts: the workflow makes them in their own
jobs. Prints per variant and phase: wall seconds, seconds per epoch (training), peak RSS
of the process and, on a GPU, the peak CUDA memory; and the pairwise F of the clustering.

Not a test: it prints numbers.
``python benchmarks/gcn.py [--n 100000] [--methods gcnv lgcn] [--device auto] [--epochs 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import methods as _methods  # noqa: E402  (benchmarks/methods.py)

LEARNED = ["gcnv", "gcnve", "gcnd_2", "gcnds_2", "lgcn", "starfc"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="items of the test split")
    p.add_argument("--n-train", type=int, help="items of the train split (default: --n)")
    p.add_argument("--k", type=int, default=80, help="k of the exact kNN graphs")
    p.add_argument("--dataset", default="synth", help="whose per-dataset settings to use")
    p.add_argument("--methods", nargs="*", default=LEARNED, help="learned variants")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--epochs", type=int, help="override the variants' training epochs (timing runs)"
    )
    p.add_argument("--work", help="keep the generated data here (default: a temp dir)")
    p.add_argument("--run", help=argparse.SUPPRESS)  # internal: one phase in a subprocess
    p.add_argument("--phase", choices=["train", "cluster"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.n_train = args.n_train or args.n
    return args


def _epochs(train: dict) -> int | None:
    for key in ("epochs", "iterations"):
        if key in train:
            return int(train[key])
    return None


def run_phase(args, work: Path) -> dict:
    """One phase (train or cluster) of one variant, in this process."""
    import resource

    import torch

    from facecluster import metrics
    from facecluster.config import method_config, validate_config
    from facecluster.graph import finalize_labels
    from facecluster.io import read_knn
    from facecluster.methods import Context, get_family
    from facecluster.nn import resolve_device

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    cfg = method_config(config, args.run, args.dataset)
    family = get_family(cfg["family"])
    spec = family.SPEC
    device = resolve_device(args.device)
    split = "train" if args.phase == "train" else "test"
    feats = np.load(work / f"{split}_features.npy")
    labels = np.load(work / f"{split}_labels.npy")
    knn = read_knn(work / f"{split}_knn.npz", len(labels)).truncate(cfg["k"])
    extra = _methods.extra_inputs(
        config, cfg, spec, feats, knn, cfg["k"], train=args.phase == "train", split=split,
        args=args, work=work,
    )  # fmt: skip
    ctx = Context(
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        knn_backend=config["knn_backends"][cfg["knn_backend"]],
        n_true_clusters=len(np.unique(labels)),
        extra=extra,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = {"method": args.run, "phase": args.phase, "n": len(labels)}
    model_path = work / f"{args.run}.model.pt"
    t0 = time.perf_counter()
    if args.phase == "train":
        if args.epochs:
            cfg["train"]["epochs"] = args.epochs
        model = family.train(feats, labels, knn, context=ctx, **cfg["train"])
        out["seconds"] = time.perf_counter() - t0
        torch.save(model, model_path)
        # a training that stops on its loss records the epochs it ran (STAR-FC)
        epochs = model.get("epochs_run", _epochs(cfg["train"]))
        if epochs:
            out["per_epoch"] = out["seconds"] / epochs
            out["epochs"] = epochs
    else:
        model = torch.load(model_path, weights_only=True)
        pred = family.cluster(feats, knn, context=ctx, model=model, **cfg["params"])
        out["seconds"] = time.perf_counter() - t0
        out["pairwise_f"] = metrics.pairwise(labels, finalize_labels(pred))[2]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["device"] = str(device)
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.run:
        print(json.dumps(run_phase(args, Path(args.work))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "test_knn.npz").exists():
            _methods.make_data(args, work)
        print(f"# {args.dataset} settings, {args.threads} threads, device {args.device}")
        print(
            f"{'method':<10}{'phase':<9}{'seconds':>9}{'s/epoch':>9}{'epochs':>8}"
            f"{'peak MB':>9}{'CUDA MB':>9}{'pair F':>8}"
        )
        for m in args.methods:
            for phase in ("train", "cluster"):
                cmd = [
                    sys.executable, __file__, "--run", m, "--phase", phase, "--work", str(work),
                    "--dataset", args.dataset, "--threads", str(args.threads),
                    "--device", args.device, "--seed", str(args.seed), "--k", str(args.k),
                    *(["--epochs", str(args.epochs)] if args.epochs else []),
                ]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{m:<10}{phase:<9} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    break
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                per = f"{r['per_epoch']:.3f}" if "per_epoch" in r else ""
                epochs = f"{r['epochs']:.3g}" if "epochs" in r else ""
                cuda = f"{r['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in r else ""
                f = f"{100 * r['pairwise_f']:.2f}" if "pairwise_f" in r else ""
                print(
                    f"{m:<10}{phase:<9}{r['seconds']:>9.1f}{per:>9}{epochs:>8}"
                    f"{r['peak_rss_mb']:>9.0f}{cuda:>9}{f:>8}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
