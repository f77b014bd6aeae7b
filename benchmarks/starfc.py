"""STAR-FC's training length against its test precision on the synthetic default.

Generates the synthetic dataset as ``benchmarks/calibration.py`` does (the config's
``synthetic`` block and seed, identity-disjoint parts, exact kNN at the ``starfc`` variant's
k), trains STAR-FC on the train split with the variant's ``train`` block (``--train
KEY=VALUE`` overrides it), and prints the training's wall time, where it stopped and why,
the mean loss of its last subgraphs, the first SGD step (edge chunk) and the first subgraph
whose loss read at most ``stop_loss`` (what the reference prints and users stop on), and
per test split: the precision and recall of the kNN pairs kept by graph parsing (tau1) and
node intimacy (tau2), and the pairwise precision / recall / F of the clusters.

``--train stop_window=1`` stops at the first subgraph whose loss reads ``stop_loss``:
STAR-FC#16's setting (docs/architecture.md, "STAR-FC on the default").

Not a test: it prints numbers.
``python benchmarks/starfc.py [--train epochs=6 hidden=128] [--splits part1 part9]``
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from calibration import _overrides  # noqa: E402  (benchmarks/calibration.py)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth", help="a synthetic dataset of the config")
    p.add_argument("--method", default="starfc", help="a STAR-FC variant of the config")
    p.add_argument("--splits", nargs="*", default=["part1", "part9"], help="test splits")
    p.add_argument("--train", nargs="*", metavar="KEY=VALUE", help="train overrides")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="auto", help="torch device")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from facecluster import metrics
    from facecluster.config import method_config, validate_config
    from facecluster.data.partition import assign_parts, split_indices
    from facecluster.data.synthetic import SyntheticSpec, generate
    from facecluster.graph import components
    from facecluster.knn import build_knn_from_spec
    from facecluster.methods import Context, starfc

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    ds = config["datasets"][args.dataset]
    seed = config["seed"]
    m = method_config(config, args.method, args.dataset)
    train = {**m["train"], **_overrides(args.train)}
    backend = config["knn_backends"][m["knn_backend"]]
    print(f"# {args.method}: k {m['k']} params {m['params']} train {train}")
    feats, labels = generate(SyntheticSpec(**{**ds["synthetic"], "dim": ds["dim"], "seed": seed}))
    parts = assign_parts(labels, ds["n_parts"], seed)
    ctx = Context(seed=seed, threads=args.threads, device=args.device, knn_backend=backend)

    def split(name):
        idx = split_indices(parts, name)
        knn = build_knn_from_spec(feats[idx], m["k"], backend, threads=args.threads, seed=seed)
        return feats[idx], labels[idx], knn

    # the loss of every SGD step (edge chunk), as the reference prints it
    steps = []
    base = torch.nn.CrossEntropyLoss

    class Recorded(base):
        def forward(self, logits, target):
            loss = super().forward(logits, target)
            steps.append(float(loss.detach()))
            return loss

    x, y, knn = split(ds["train_split"])
    torch.nn.CrossEntropyLoss = Recorded
    t0 = time.perf_counter()
    try:
        model = starfc.train(x, y, knn, context=ctx, **train)
    finally:
        torch.nn.CrossEntropyLoss = base
    seconds = time.perf_counter() - t0
    curve = model["loss_curve"].numpy()
    stop = float(train.get("stop_loss", 0.02)) or 0.02
    per = int(train.get("edge_chunks", 40)) * int(train.get("edge_passes", 2))
    first_step = int(np.argmax(np.asarray(steps) <= stop)) if min(steps) <= stop else None
    first_sub = int(np.argmax(curve <= stop)) if curve.min() <= stop else None
    print(
        f"# trained on {ds['train_split']} ({y.size:,} images) in {seconds:.1f} s: "
        f"{model['stopped_at']} subgraphs ({model['epochs_run']:.2f} epochs), stop: "
        f"{model['stop_reason']}, mean loss of the last {train.get('stop_window', 20)} "
        f"{model['loss']:.4f}"
    )
    print(
        f"# first step at loss <= {stop}: {first_step} (subgraph "
        f"{None if first_step is None else first_step // per}); first subgraph: {first_sub}"
    )
    print(f"{'split':<7}{'pairs P':>8}{'pairs R':>8}{'kept P':>8}{'P':>7}{'R':>7}{'F':>7}{'s':>6}")
    for name in args.splits:
        x, y, knn = split(name)
        t0 = time.perf_counter()
        src, dst, scores = starfc.predict_edges(x, knn, model, context=ctx)
        same = y[src] == y[dst]
        parsed = scores > m["params"]["tau1"]
        src, dst, kept_same = src[parsed], dst[parsed], same[parsed]
        keep = starfc.node_intimacy(knn.n, src, dst) > m["params"]["tau2"]
        pred = components(knn.n, src[keep], dst[keep])
        p, r, f = metrics.pairwise(y, pred)
        print(
            f"{name:<7}{100 * kept_same.mean():8.1f}{100 * parsed[same].mean():8.1f}"
            f"{100 * kept_same[keep].mean():8.1f}{100 * p:7.1f}{100 * r:7.1f}{100 * f:7.1f}"
            f"{time.perf_counter() - t0:6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
