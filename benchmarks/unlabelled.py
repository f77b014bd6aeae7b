"""Peak memory of reading large unlabelled embeddings, and of clustering them.

Writes ``--n`` × ``--dim`` float16 embeddings to a ``.npy`` in blocks (identities of about
100 images around random centres, so the clustering has something to find; never all in
memory), then runs, each in its own process so that its peak resident memory is its own:

* ``read``: :func:`facecluster.io.read_features` (the float32 normalised copy; float16 on
  disk is half of it);
* with ``--through cdp`` (or ``infomap``, ``fces``): the kNN job (``--backend``, IVF by
  default: exact search at a million items takes hours on 2 cores) and the cluster job of
  that method with its default settings, as the workflow runs them (``tasks.knn``,
  ``tasks.cluster_cell`` without labels).

Prints one line per stage: wall seconds, peak RSS (MB), and the float32 copy's size for
comparison. Not a test: ``python benchmarks/unlabelled.py --n 5000000`` (read only) or
``python benchmarks/unlabelled.py --n 1000000 --through cdp infomap``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facecluster.config import method_config, validate_config  # noqa: E402


def write_embeddings(path: Path, n: int, dim: int, *, seed: int = 0, block: int = 1 << 16) -> None:
    """float16 (n, dim) identity blobs, written block by block behind a .npy header."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // 100)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    header = {"descr": "<f2", "fortran_order": False, "shape": (n, dim)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, n, block):
            rows = min(block, n - start)
            ids = rng.integers(0, n_ids, rows)
            x = centres[ids] + 0.6 * rng.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(
                dim
            )
            fh.write(x.astype("<f2").tobytes())


STAGE = """
import json, sys, time
sys.path.insert(0, {root!r})
from facecluster import tasks
args = json.loads({args!r})
t0 = time.perf_counter()
stage = args.pop("stage")
if stage == "read":
    from facecluster.io import read_features
    x = read_features(args["features"], args["dim"])
    extra = {{"float32_mb": x.nbytes / 2**20}}
elif stage == "knn":
    tasks.knn(args["features"], None, args["out"], dim=args["dim"], k=args["k"],
              backend=args["backend"], threads=args["threads"], seed=0)
    extra = {{}}
else:
    row = tasks.cluster_cell(args["features"], None, args["knn"], None, args["labels"],
                             args["run"], args["cell"], dataset="big", split="all",
                             method=args["method"], method_cfg=args["cfg"],
                             backends={{"b": args["backend"]}}, dim=args["dim"], seed=0,
                             threads=args["threads"], device="cpu",
                             out_clusters=args["clusters"])
    extra = {{"clusters": int(row["n_pred_clusters"]),
              "largest": int(row["largest_cluster"])}}
print(json.dumps({{"seconds": time.perf_counter() - t0, "peak_mb": tasks.peak_rss_mb(),
                  **extra}}))
"""


def run_stage(**args) -> dict:
    code = STAGE.format(root=str(ROOT), args=json.dumps(args))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--through", nargs="*", default=[], help="methods to cluster with")
    ap.add_argument("--backend", default="ivf", help="a key of config.yaml's knn_backends")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
    args = ap.parse_args()

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    backend = config["knn_backends"][args.backend]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        path = d / "emb.npy"
        t0 = time.perf_counter()
        write_embeddings(path, args.n, args.dim)
        size_mb = path.stat().st_size / 2**20
        print(
            f"{args.n:,} x {args.dim} float16: {size_mb:,.0f} MB on disk, written in "
            f"{time.perf_counter() - t0:.0f} s; the float32 copy is "
            f"{args.n * args.dim * 4 / 2**20:,.0f} MB"
        )
        common = {"features": str(path), "dim": args.dim, "threads": args.threads}
        r = run_stage(stage="read", **common)
        print(f"read      {r['seconds']:8.1f} s   peak {r['peak_mb']:9,.0f} MB")
        if not args.through:
            return
        cfgs = {m: method_config(config, m, "synth") for m in args.through}
        k = max(c["k"] for c in cfgs.values())
        knn = d / f"{args.backend}_k{k}.npz"
        r = run_stage(stage="knn", out=str(knn), k=k, backend=backend, **common)
        print(f"knn k={k:<4} {r['seconds']:6.1f} s   peak {r['peak_mb']:9,.0f} MB ({args.backend})")
        for m, cfg in cfgs.items():
            cfg = {**cfg, "knn_backend": "b"}
            r = run_stage(
                stage="cluster",
                method=m,
                cfg=cfg,
                knn=str(knn),
                backend=backend,
                labels=str(d / f"{m}.labels"),
                run=str(d / f"{m}.json"),
                cell=str(d / f"{m}.tsv"),
                clusters=str(d / f"{m}.clusters.tsv"),
                **common,
            )
            print(
                f"{m:<9} {r['seconds']:8.1f} s   peak {r['peak_mb']:9,.0f} MB   "
                f"{r['clusters']:,} clusters, largest {r['largest']:,}"
            )


if __name__ == "__main__":
    main()
