"""Wall time and peak memory of every clustering method on one synthetic split.

Generates a synthetic MS1M-like set (the default generator, ``--n`` items of test split and
a train split for the supervised methods), builds its exact kNN at ``--k`` once, then runs
each method variant of ``config/config.yaml`` (with its settings on ``--dataset``: the
embedded ``synth``, i.e. MS1M's parameters with the synthetic training length) in its own
subprocess, so that the peak resident memory is
the method's own. Prints one line per method: wall seconds of ``cluster`` (and of ``train``
for supervised methods), peak RSS, clusters found and pairwise F; for Infomap also the share
of the time spent building the network versus optimising it.

A method whose own estimate exceeds ``--mem-mb`` / ``--runtime`` is not run (as the
workflow refuses it) and its line says why.

Not a test: it prints numbers. ``python benchmarks/methods.py [--n 100000] [--methods cw aro]``.
The reference implementations' times on 20,000 items (d 256, k 80, 2 cores) are printed
beside ours when ``--n 20000``.
"""

from __future__ import annotations

import argparse
import importlib
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

#: the reference implementations on 20,000 items, d 256, k 80, 2 cores (issue 8)
REFERENCE_20K = {
    "cw": 88.8,
    "aro": 28.2,
    "fast_hac": 54.9,
    "infomap": 11.2,
    "knn_dbscan": 0.6,
    "minibatch_kmeans": 0.95,
    "cdp": 0.24,
}


#: heavy libraries a family of each conda env may import inside its functions
HEAVY_IMPORTS = {
    "eval": ("sklearn.cluster",),
    "torch": ("torch",),
    "infomap": ("infomap",),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="items of the test split")
    p.add_argument("--n-train", type=int, default=20_000, help="items of the train split")
    p.add_argument("--k", type=int, default=80, help="k of the shared exact kNN graph")
    p.add_argument("--dataset", default="synth", help="whose per-dataset settings to use")
    p.add_argument("--methods", nargs="*", help="variants of config.yaml (default: all)")
    p.add_argument("--mem-mb", type=int, default=20_000, help="refuse above this estimate")
    p.add_argument("--runtime", type=int, default=5, help="refuse above this (minutes)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or auto")
    p.add_argument("--work", help="keep the generated data here (default: a temp dir)")
    p.add_argument("--run", help=argparse.SUPPRESS)  # internal: one method in a subprocess
    return p.parse_args(argv)


def _spec_for(n_items: int, seed: int):
    from facecluster.data.synthetic import SyntheticSpec

    # about 583,000 * scale items per part of the default generator; generate one part
    # worth of identities over all 10 parts and take what is needed
    return SyntheticSpec(scale=n_items / (8573 * 68.0), seed=seed)


def make_data(args, work: Path) -> None:
    """Features, labels and exact kNN of a test and a train split under ``work``."""
    from facecluster.data.synthetic import generate
    from facecluster.io import write_knn
    from facecluster.knn import build_knn

    feats, labels = generate(_spec_for((args.n + args.n_train) / 10, args.seed))
    # identity-disjoint: the first identities train, the rest test
    ids = np.unique(labels)
    cut = ids[int(len(ids) * args.n_train / (args.n + args.n_train))]
    for name, mask in (("train", labels < cut), ("test", labels >= cut)):
        f, lab = feats[mask], labels[mask]
        np.save(work / f"{name}_features.npy", f)
        np.save(work / f"{name}_labels.npy", lab)
        t0 = time.perf_counter()
        knn = build_knn(f, args.k, threads=args.threads)
        print(
            f"# {name}: {len(lab):,} items, {len(np.unique(lab)):,} identities; "
            f"exact kNN k={args.k}: {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        write_knn(work / f"{name}_knn.npz", knn)


def extra_inputs(config, cfg, spec, feats, graph, knn_k, *, train, split, args, work) -> dict:
    """The extra inputs of ``spec.needs`` for one split of the benchmark data.

    committee: perturbed copies of the features stand in for other models'; proposals: the
    variant's proposal sets generated on the split's exact kNN (whatever the set's backend);
    upstream: the upstream variant trained on the train split (cached in ``work``) and its
    inference on the split.
    """
    from facecluster.config import method_config, proposal_sets
    from facecluster.methods import Context, get_family

    out = {}
    if "committee" in spec.needs:
        from facecluster.knn import build_knn

        rng = np.random.default_rng(args.seed)
        members = []
        for _ in range(4):  # perturbed copies stand in for other models' features
            f = feats + 0.02 * rng.standard_normal(feats.shape).astype(np.float32)
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            members.append((f, build_knn(f, knn_k, threads=args.threads)))
        out["committee"] = members
    if "proposals" in spec.needs:
        from facecluster.io import read_knn
        from facecluster.proposals import generate

        full = read_knn(work / f"{split}_knn.npz")
        out["proposals"] = {
            name: generate(feats, full, config["proposals"][name], threads=args.threads)
            for name in proposal_sets(cfg["train"] if train else cfg["params"])
        }
    if "upstream" in spec.needs:
        import torch

        from facecluster.io import read_knn

        up = method_config(config, cfg["upstream"], args.dataset)
        family = get_family(up["family"])
        ctx = Context(seed=args.seed, threads=args.threads, device=args.device)
        path = work / f"upstream_{cfg['upstream']}.pt"
        if path.exists():
            model = torch.load(path, weights_only=True)
        else:
            tf = np.load(work / "train_features.npy")
            tl = np.load(work / "train_labels.npy")
            tk = read_knn(work / "train_knn.npz").truncate(up["k"])
            model = family.train(tf, tl, tk, context=ctx, **up["train"])
            torch.save(model, path)
        up_knn = read_knn(work / f"{split}_knn.npz").truncate(up["k"])
        out["upstream"] = family.infer(feats, up_knn, model, context=ctx)
    return out


def run_one(args, work: Path) -> dict:
    """Train (if supervised) and cluster with one variant; return the measurements."""
    import resource

    from facecluster import metrics
    from facecluster.config import method_config, validate_config
    from facecluster.graph import finalize_labels
    from facecluster.io import read_knn
    from facecluster.methods import Context, get_family

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    cfg = method_config(config, args.run, args.dataset)
    family = get_family(cfg["family"])
    spec = family.SPEC
    backend = config["knn_backends"][cfg["knn_backend"]]
    out = {"method": args.run, "family": cfg["family"]}

    def load(name):
        f = np.load(work / f"{name}_features.npy")
        lab = np.load(work / f"{name}_labels.npy")
        knn = read_knn(work / f"{name}_knn.npz", len(lab))
        if knn.k < cfg["k"]:
            raise SystemExit(f"--k {knn.k} is below {args.run}'s k={cfg['k']}")
        return f, lab, knn.truncate(cfg["k"])

    def extra(feats, knn_k, graph=None, train=False, split="test"):
        return extra_inputs(
            config, cfg, spec, feats, graph, knn_k, train=train, split=split, args=args, work=work
        )

    feats, labels, knn = load("test")
    cost = spec.cost(
        len(labels),
        feats.shape[1],
        cfg["k"],
        params=cfg["params"],
        train_params=cfg["train"],
        train=False,
        threads=args.threads,
        n_true_clusters=len(np.unique(labels)),  # as the workflow does
    )
    from facecluster.resources import refusal

    why = refusal(cost, {"mem_mb": args.mem_mb, "runtime": args.runtime})
    if why:
        return {**out, "refused": why}
    # import the family's heavy library before the clock starts (the references' times do
    # not include Python imports either); only its env's, so peak RSS stays the method's
    for name in HEAVY_IMPORTS.get(spec.conda_env, ()):
        importlib.import_module(name)

    def context(f, lab, graph, train=False, split="test"):
        return Context(
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            knn_backend=backend,
            n_true_clusters=len(np.unique(lab)),
            extra=extra(f, cfg["k"], graph, train=train, split=split),
        )

    model = None
    if spec.supervised:
        tf, tl, tk = load("train")
        ctx = context(tf, tl, tk, train=True, split="train")
        t0 = time.perf_counter()
        model = family.train(tf, tl, tk, context=ctx, **cfg["train"])
        out["train_seconds"] = time.perf_counter() - t0
    ctx = context(feats, labels, knn)
    t0 = time.perf_counter()
    pred = family.cluster(feats, knn, context=ctx, model=model, **cfg["params"])
    out["seconds"] = time.perf_counter() - t0
    pred = finalize_labels(pred)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["clusters"] = int(pred.max()) + 1
    out["pairwise_f"] = metrics.pairwise(labels, pred)[2]
    timings = getattr(family, "LAST_TIMINGS", None)
    if timings:
        out["timings"] = dict(timings)
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.run:
        print(json.dumps(run_one(args, Path(args.work))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "test_knn.npz").exists():
            make_data(args, work)
        config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        methods = args.methods or list(config["methods"])
        print(
            f"# {args.dataset} settings, {args.threads} threads; "
            "seconds = cluster (train), peak RSS of the method's process"
        )
        header = f"{'method':<18}{'seconds':>10}{'train s':>10}{'peak MB':>10}"
        header += f"{'clusters':>10}{'pair F':>8}  notes"
        print(header)
        for m in methods:
            cmd = [
                sys.executable,
                __file__,
                "--run",
                m,
                "--work",
                str(work),
                "--dataset",
                args.dataset,
                "--mem-mb",
                str(args.mem_mb),
                "--runtime",
                str(args.runtime),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
                "--device",
                args.device,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{m:<18} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if "refused" in r:
                print(f"{m:<18}{'—':>10}{'':>10}{'':>10}{'':>10}{'':>8}  refused: {r['refused']}")
                continue
            notes = []
            if args.n == 20_000 and m in REFERENCE_20K:
                ref = REFERENCE_20K[m]
                notes.append(f"reference {ref:.2f} s ({ref / r['seconds']:.1f}x)")
            if "timings" in r:
                total = sum(r["timings"].values()) or 1.0
                notes.append(
                    ", ".join(
                        f"{k} {v:.2f} s ({100 * v / total:.0f} %)" for k, v in r["timings"].items()
                    )
                )
            train = f"{r['train_seconds']:.1f}" if "train_seconds" in r else ""
            print(
                f"{m:<18}{r['seconds']:>10.2f}{train:>10}{r['peak_rss_mb']:>10.0f}"
                f"{r['clusters']:>10}{100 * r['pairwise_f']:>8.2f}  {'; '.join(notes)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
