"""Does GCN-V's learning transfer on the synthetic default? Prints the calibration numbers.

Generates the synthetic dataset ``synth`` of ``config/config.yaml`` (its ``synthetic`` block,
``dim`` and the top-level ``seed``; ``--scale`` replaces the scale), partitions it as the
workflow does (identity-disjoint parts, cumulative test splits), builds each split's kNN
with the settings of the ``gcnv`` method (k 80, flat), trains GCN-V on the train split with
the config's ``train`` block, and prints, per split:

* ``r(gcnv)``: Pearson correlation of GCN-V's predicted confidence with the true ``s_nbr``
  (its regression target, :func:`facecluster.methods.gcnv.s_nbr_confidence`);
* ``r(dens)``: the same for the label-free density (mean similarity to the k neighbours);
* pairwise F (%) of ``density_peaks``, of GCN-V's intermediate result (peak linking at
  ``tau_0`` on the feature kNN, ``use_gcn_feat: false``), of GCN-V's final result, and of
  CDP (the ``cdp`` method: k 15, th 0.7) as a reference;
* the pairwise F of linking with the true ``s_nbr`` (what a perfect confidence would give).

Everything runs in memory in this process (no workflow, no files). Not a test: it prints
numbers. ``python benchmarks/calibration.py [--scale 0.05] [--splits part0 part1 part9]
[--synthetic low_quality=0.3] [--train epochs=200]``; ``--synthetic`` and ``--train`` try
other generator and training settings without editing the config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPLITS = ["part0", "part1", "part3", "part5", "part7", "part9"]


def _value(text: str):
    """A command-line override's value, parsed as YAML (numbers, lists, booleans)."""
    return yaml.safe_load(text)


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, val = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        out[key] = _value(val)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth", help="a synthetic dataset of the config")
    p.add_argument("--scale", type=float, help="generator scale (default: the config's)")
    p.add_argument("--seed", type=int, help="seed (default: the config's)")
    p.add_argument("--splits", nargs="*", default=SPLITS, help="splits to measure")
    p.add_argument("--synthetic", nargs="*", metavar="KEY=VALUE", help="generator overrides")
    p.add_argument("--train", nargs="*", metavar="KEY=VALUE", help="GCN-V train overrides")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="auto", help="torch device of GCN-V")
    return p.parse_args(argv)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (N,) arrays (nan if either is constant)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def main(argv=None):
    args = parse_args(argv)
    from facecluster import metrics
    from facecluster.config import method_config, validate_config
    from facecluster.data.partition import assign_parts, split_indices
    from facecluster.data.synthetic import SyntheticSpec, generate
    from facecluster.graph import finalize_labels
    from facecluster.knn import build_knn_from_spec
    from facecluster.methods import Context, cdp, density_peaks, gcnv

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    ds = config["datasets"][args.dataset]
    seed = config["seed"] if args.seed is None else args.seed
    spec = {**ds["synthetic"], "dim": ds["dim"], "seed": seed}
    if args.scale is not None:
        spec["scale"] = args.scale
    spec.update(_overrides(args.synthetic))
    g = method_config(config, "gcnv", args.dataset)
    g["train"].update(_overrides(args.train))
    c = method_config(config, "cdp", args.dataset)
    d = method_config(config, "density_peaks", args.dataset)
    backend = config["knn_backends"][g["knn_backend"]]
    print(f"# generator: {spec}")
    print(f"# gcnv: k {g['k']} {g['knn_backend']} params {g['params']} train {g['train']}")
    print(f"# cdp: k {c['k']} params {c['params']}; density_peaks: k {d['k']} {d['params']}")

    t0 = time.perf_counter()
    feats, labels = generate(SyntheticSpec(**spec))
    t_gen = time.perf_counter() - t0
    parts = assign_parts(labels, ds["n_parts"], seed)
    print(
        f"# generated {labels.size:,} images of {np.unique(labels).size:,} identities "
        f"in {t_gen:.1f} s",
        flush=True,
    )

    def context(lab):
        return Context(
            seed=seed,
            threads=args.threads,
            device=args.device,
            knn_backend=backend,
            n_true_clusters=int(np.unique(lab).size),
        )

    def split(name):
        idx = split_indices(parts, name)
        f, lab = feats[idx], labels[idx]
        knn = build_knn_from_spec(
            f, max(g["k"], c["k"], d["k"]), backend, threads=args.threads, seed=seed
        )
        return f, lab, knn

    train_name = ds["train_split"]
    tf, tl, tk = split(train_name)
    t0 = time.perf_counter()
    model = gcnv.train(tf, tl, tk.truncate(g["k"]), context=context(tl), **g["train"])
    t_train = time.perf_counter() - t0
    print(
        f"# trained GCN-V on {train_name} ({tl.size:,} images, "
        f"{np.unique(tl).size:,} identities) in {t_train:.1f} s, loss {model['loss']:.5f}"
    )

    def f_score(lab, pred):
        return 100 * metrics.pairwise(lab, finalize_labels(pred))[2]

    header = (
        "split",
        "images",
        "ids",
        "r(gcnv)",
        "r(dens)",
        "F s_nbr",
        "F dens_pk",
        "F gcnv_int",
        "F gcnv",
        "F cdp",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.splits:
        f, lab, knn = (tf, tl, tk) if name == train_name else split(name)
        kg = knn.truncate(g["k"])
        ctx = context(lab)
        target = gcnv.s_nbr_confidence(kg, lab)
        conf, _ = gcnv.predict(f, kg, model, context=ctx)
        dens = density_peaks.density_confidence(knn.truncate(d["k"]))
        tau_0 = g["params"]["tau_0"]
        f_true = f_score(lab, gcnv.peaks_to_labels(*gcnv.confidence_to_peaks(kg, target), tau_0))
        f_int = f_score(lab, gcnv.peaks_to_labels(*gcnv.confidence_to_peaks(kg, conf), tau_0))
        f_fin = f_score(lab, gcnv.cluster(f, kg, context=ctx, model=model, **g["params"]).labels)
        f_dp = f_score(
            lab, density_peaks.cluster(f, knn.truncate(d["k"]), context=ctx, **d["params"]).labels
        )
        f_cdp = f_score(lab, cdp.cluster(f, knn.truncate(c["k"]), context=ctx, **c["params"]))
        row = (
            name,
            f"{lab.size:,}",
            f"{np.unique(lab).size:,}",
            f"{pearson(conf, target):.2f}",
            f"{pearson(dens, target):.2f}",
            f"{f_true:.1f}",
            f"{f_dp:.1f}",
            f"{f_int:.1f}",
            f"{f_fin:.1f}",
            f"{f_cdp:.1f}",
        )
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"# generation {t_gen:.1f} s, GCN-V training {t_train:.1f} s")


if __name__ == "__main__":
    main()
