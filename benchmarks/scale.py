"""Wall time and peak memory of each stage of the GCN-V cell as N grows, extrapolated to
MS1M's part9 (5.21M items).

For each ``--sizes`` N, synthetic items (the default generator, ``scale`` chosen for about N
items) go through the stages of ``results/<dataset>/<split>/gcnv.tsv``, each in its own
process so that its peak resident memory is its own (inputs loaded as the job loads them):

* ``knn_exact``: exact kNN (faiss flat), only up to ``--exact-max`` items (it grows as N²:
  hours at a million items on 2 cores);
* ``knn_ivf``: IVF with nlist 4·sqrt(N) and the nprobe reaching ``--recall`` at k (the
  ``ivf_recall`` backend of ``synth_full``), whose graph the next stages use;
* ``graph``: the rows of GCN-V's normalised adjacency, chunk by chunk
  (:func:`facecluster.graph.adjacency_rows`), the part of inference that is not dense
  layers;
* ``inference``: GCN-V's confidences of all items in chunks (graph + dense layers);
* ``gcn_feat_knn``: the kNN on the L2-normalised hidden features, computed again chunk by
  chunk into an IVF index of float16 vectors (``gcn_feat_storage: float16``);
* ``linking``: peak linking at tau on that graph and connected components;
* ``evaluation``: pairwise and BCubed F and NMI against the truth.

The model is GCN-V (hidden 512) trained once on the smallest size (``--epochs``); inference
cost does not depend on its weights. Then, per stage, the log-log slope of time fitted over
the sizes measured and the time extrapolated along it from the largest size to 5.21M
items, and the peak memory along a line fitted to (N, peak) (memory is linear in N; the
interpreter, libraries and one chunk of inference are its intercept; fitted above a
chunk's 262,144 rows where two sizes are). Not a test: ``python benchmarks/scale.py``
(50K, 150K, 500K, 1.5M: about an hour on 2 cores), ``--sizes 20000 60000`` for a quick
look.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facecluster.methods.gcnv import CHUNK_ROWS  # noqa: E402

PART9 = 5_210_000
#: items the default generator draws per unit of scale (58K at the default 0.01)
ITEMS_PER_SCALE = 5.8e6
STAGES = ["knn_exact", "knn_ivf", "graph", "inference", "gcn_feat_knn", "linking", "evaluation"]


def _ctx(threads: int, backend: dict | None = None):
    from facecluster.methods import Context

    return Context(seed=0, threads=threads, device="cpu", knn_backend=backend or {})


def _load_knn(path: Path):
    from facecluster.io import read_knn

    return read_knn(str(path))


def _stage(name: str, work: str, args: dict, queue) -> None:
    """Run one stage in this (fresh) process; put (seconds, peak MB, extra) on ``queue``."""
    from facecluster import metrics, tasks
    from facecluster.io import write_knn
    from facecluster.knn import build_knn_from_spec
    from facecluster.methods import gcnv

    w = Path(work)
    t_load = time.perf_counter()
    feats = np.load(w / "features.npy")
    extra = {}
    t0 = time.perf_counter()
    backend = {"index": "ivf", "recall_target": args["recall"]}
    if name == "knn_exact":
        report = {}
        build_knn_from_spec(feats, args["k"], {"index": "flat"}, threads=args["threads"],
                            report=report)  # fmt: skip
    elif name == "knn_ivf":
        report = {}
        g = build_knn_from_spec(feats, args["k"], backend, threads=args["threads"], report=report)
        write_knn(str(w / "knn.npz"), g)
        extra = {"nprobe": report["nprobe"], "recall": round(report["recall_at_k"], 4)}
    else:
        knn = _load_knn(w / "knn.npz")
        model = tasks.load_model(args["model"])
        ctx = _ctx(args["threads"], backend)
        t0 = time.perf_counter()
        if name == "graph":
            from facecluster.graph import adjacency_rows

            for start in range(0, knn.n, CHUNK_ROWS):
                adjacency_rows(knn, np.arange(start, min(knn.n, start + CHUNK_ROWS)))
        elif name == "inference":
            conf, _ = gcnv.predict(feats, knn, model, context=ctx, hidden=False)
            np.save(w / "conf.npy", conf)
        elif name == "gcn_feat_knn":
            report = {}
            g = build_knn_from_spec(
                gcnv.gcn_features(feats, knn, model, context=ctx), knn.k, backend,
                threads=args["threads"], report=report, storage="float16",
            )  # fmt: skip
            write_knn(str(w / "gknn.npz"), g)
            extra = {"nprobe": report["nprobe"], "recall": round(report["recall_at_k"], 4)}
        elif name == "linking":
            conf = np.load(w / "conf.npy")
            peaks, sims = gcnv.confidence_to_peaks(_load_knn(w / "gknn.npz"), conf)
            np.save(w / "pred.npy", gcnv.peaks_to_labels(peaks, sims, 0.8))
        elif name == "evaluation":
            scores = metrics.evaluate(np.load(w / "labels.npy"), np.load(w / "pred.npy"))
            extra = {k: round(v, 4) for k, v in scores.items() if k in ("pairwise_f", "bcubed_f")}
    seconds = time.perf_counter() - t0
    queue.put((seconds, tasks.peak_rss_mb(), extra, t0 - t_load))


def run_stage(name: str, work: Path, args: dict) -> tuple[float, float, dict]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_stage, args=(name, str(work), args, queue))
    p.start()
    out = queue.get()
    p.join()
    if p.exitcode:
        raise RuntimeError(f"stage {name} failed with exit code {p.exitcode}")
    return out[:3]


def make_data(work: Path, n: int, dim: int, seed: int) -> int:
    from facecluster.data.synthetic import SyntheticSpec, generate

    feats, labels = generate(
        SyntheticSpec(scale=n / ITEMS_PER_SCALE, dim=dim, seed=seed, low_quality=0.1)
    )
    np.save(work / "features.npy", feats)
    np.save(work / "labels.npy", labels)
    return feats.shape[0]


def train_model(work: Path, out: Path, epochs: int, threads: int) -> None:
    from facecluster import tasks
    from facecluster.knn import build_knn
    from facecluster.methods import gcnv

    feats, labels = np.load(work / "features.npy"), np.load(work / "labels.npy")
    knn = build_knn(feats, 80, threads=threads)
    model = gcnv.train(feats, labels, knn, context=_ctx(threads), epochs=epochs,
                       weight_decay=0.01, checkpoint_every=0)  # fmt: skip
    tasks.save_model(model, str(out))


def slope(ns: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(N)."""
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 150_000, 500_000, 1_500_000])
    ap.add_argument("--exact-max", type=int, default=150_000)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--recall", type=float, default=0.9)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--add", nargs="*", default=[], help="earlier --json files to fit with")
    args = ap.parse_args(argv)

    rows = []  # (n, stage, seconds, peak_mb, extra)
    with tempfile.TemporaryDirectory(prefix="fc_scale_") as tmp:
        tmp = Path(tmp)
        model = tmp / "gcnv.pt"
        for i, target in enumerate(sorted(args.sizes)):
            work = tmp / str(target)
            work.mkdir()
            t0 = time.perf_counter()
            n = make_data(work, target, args.dim, args.seed)
            print(f"N={n:,}: generated in {time.perf_counter() - t0:.1f} s", flush=True)
            if i == 0:
                t0 = time.perf_counter()
                train_model(work, model, args.epochs, args.threads)
                print(f"  model trained on N={n:,} ({args.epochs} epochs) in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
            stage_args = {"k": args.k, "recall": args.recall, "threads": args.threads,
                          "model": str(model)}  # fmt: skip
            for stage in STAGES:
                if stage == "knn_exact" and n > args.exact_max:
                    continue
                seconds, peak, extra = run_stage(stage, work, stage_args)
                rows.append((n, stage, seconds, peak, extra))
                more = " ".join(f"{k}={v}" for k, v in extra.items())
                print(f"  {stage:13s} {seconds:9.1f} s {peak:9.0f} MB  {more}", flush=True)
            for f in work.glob("*.np*"):
                f.unlink()

    for path in args.add:
        rows += [tuple(r) for r in json.loads(Path(path).read_text())["rows"]]
    rows.sort(key=lambda r: r[0])
    print(
        f"\nat {PART9:,} items: time along the log-log slope from the largest N; memory along "
        "a line fitted to (N, peak), its slope in bytes per item"
    )
    print("stage          slope(time) bytes/item   time at part9  peak at part9")
    fits = {}
    for stage in STAGES:
        pts = [(n, s, m) for n, st, s, m, _ in rows if st == stage]
        if len(pts) < 2:
            continue
        ns, secs, mems = zip(*pts, strict=True)
        st = slope(ns, secs)
        # memory is linear in N once a chunk of inference is full (N >= CHUNK_ROWS): fit
        # the sizes above it where there are two, else all
        big = [i for i, n in enumerate(ns) if n >= CHUNK_ROWS]
        fit = big if len(big) >= 2 else list(range(len(ns)))
        per_item, base = np.polyfit(np.asarray(ns)[fit], np.asarray(mems)[fit] * 2**20, 1)
        t9 = secs[-1] * (PART9 / ns[-1]) ** st
        m9 = (base + per_item * PART9) / 2**20
        fits[stage] = {"slope_time": st, "bytes_per_item": per_item, "part9_seconds": t9,
                       "part9_mb": m9}  # fmt: skip
        print(f"{stage:14s} {st:11.2f} {per_item:10.0f}  {t9 / 60:10.1f} min {m9 / 1024:9.1f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "fits": fits}, indent=1))


if __name__ == "__main__":
    main()
