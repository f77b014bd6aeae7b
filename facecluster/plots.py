"""Benchmark plots (matplotlib, Agg): each function takes frames or label arrays and returns
a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG and SVG atomically.

Every figure is readable alone: a title naming the dataset, axis labels with units, and a
legend. Methods keep one colour and marker across a dataset's figures (:func:`styles`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402

__all__ = [
    "cluster_sizes",
    "f_vs_scale",
    "fitted_slope",
    "precision_recall",
    "save",
    "styles",
    "sweep",
    "time_vs_items",
]

_MARKERS = "os^vDP*Xph<>"


def styles(methods: Sequence[str]) -> dict[str, dict]:
    """One (colour, marker) per method, stable in the methods' order."""
    cmap = plt.get_cmap("tab20")
    return {
        m: {"color": cmap(i % 20), "marker": _MARKERS[(i // 2) % len(_MARKERS)]}
        for i, m in enumerate(methods)
    }


def save(fig, png: str, svg: str, *, tight: bool = True) -> None:
    """Write ``fig`` as PNG (120 dpi) and SVG, atomically, and close it; ``tight`` crops to
    the drawn content (legends outside the axes), at the cost of one more draw per file."""
    bbox = "tight" if tight else None
    for path, kwargs in ((png, {"dpi": 120}), (svg, {})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.rsplit(".", 1)[-1], bbox_inches=bbox, **kwargs)
    plt.close(fig)


def _legend(ax, n: int, axes=None) -> None:
    """A legend right of ``ax`` with the entries of ``axes`` (default: ``ax``), each once."""
    handles = {}
    for a in axes if axes is not None else [ax]:
        for h, label in zip(*a.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    ax.legend(
        handles.values(),
        handles.keys(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        ncols=1 if n <= 22 else 2,
        frameon=False,
    )


def _scale_axis(ax, sizes: pd.Series) -> None:
    """x: items (log), ticks at each split's size labelled with the split."""
    ax.set_xscale("log")
    ax.set_xticks(list(sizes.values))
    ax.set_xticklabels([f"{s}\n{int(n):,}" for s, n in sizes.items()], fontsize="small")
    ax.minorticks_off()


def f_vs_scale(
    cells: pd.DataFrame,
    published: pd.DataFrame | None,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
):
    """Pairwise F and BCubed F (%) against the number of items, one line per method; the
    published values (where ``published`` has them) as open markers on a dashed line."""
    sizes = cells.groupby("split")["n_items"].max().reindex(list(splits)).dropna()
    style = styles(methods)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for ax, metric, name in zip(
        axes, ("pairwise_f", "bcubed_f"), ("Pairwise F", "BCubed F"), strict=True
    ):
        for m in methods:
            rows = cells[cells["method"] == m].set_index("split").reindex(sizes.index)
            y = pd.to_numeric(rows[metric], errors="coerce") * 100.0
            if y.notna().any():
                ax.plot(sizes.values, y.values, label=m, lw=1.3, ms=4, **style[m])
            if published is not None and len(published):
                pub = published[(published["method"] == m) & (published["metric"] == metric)]
                pub = pub.set_index("split")["value"].reindex(sizes.index)
                if pub.notna().any():
                    ax.plot(
                        sizes.values, pub.values, ls="--", lw=0.9, mfc="none",
                        label=f"{m} (published)", **style[m],
                    )  # fmt: skip
        _scale_axis(ax, sizes)
        ax.set_xlabel("test split and number of items (log scale)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F-score (%)")
    _legend(axes[1], len(methods), axes)
    fig.suptitle(f"{dataset}: F-score against scale")
    return fig


def precision_recall(
    cells: pd.DataFrame, *, dataset: str, methods: Sequence[str], splits: Sequence[str]
):
    """Pairwise precision against recall (%), one panel per split, one marker per method,
    with iso-F curves (F = 50, 60, 70, 80, 90 %)."""
    style = styles(methods)
    n = len(splits)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols + 2.2, 4.2 * rows), squeeze=False)
    r = np.linspace(1, 100, 200)
    for ax, split in zip(axes.flat, splits, strict=False):
        for f in (50, 60, 70, 80, 90):
            with np.errstate(divide="ignore", invalid="ignore"):
                p = f * r / (2 * r - f)
            keep = (p > 0) & (p <= 100) & (r >= f / 2)
            ax.plot(r[keep], p[keep], color="0.8", lw=0.8, zorder=0)
            ax.annotate(f"F={f}", (100, f * 100 / (200 - f)), fontsize=7, color="0.5")
        part = cells[cells["split"] == split].set_index("method")
        for m in methods:
            if m in part.index and pd.notna(part.loc[m, "pairwise_f"]):
                ax.scatter(
                    part.loc[m, "pairwise_recall"] * 100,
                    part.loc[m, "pairwise_precision"] * 100,
                    color=style[m]["color"], marker=style[m]["marker"], s=36, label=m,
                )  # fmt: skip
        n_items = part["n_items"].max() if len(part) else np.nan
        ax.set_title(f"{split} ({int(n_items):,} items)" if pd.notna(n_items) else split)
        ax.set_xlim(0, 102)
        ax.set_ylim(0, 102)
        ax.set_xlabel("pairwise recall (%)")
        ax.set_ylabel("pairwise precision (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(
        handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95),
        fontsize="small", frameon=False, ncols=1 if len(handles) <= 22 else 2,
    )  # fmt: skip
    fig.suptitle(f"{dataset}: pairwise precision against recall per split")
    fig.tight_layout()
    return fig


def fitted_slope(n_items: np.ndarray, seconds: np.ndarray) -> float:
    """The least-squares slope of log(seconds) on log(n_items) (time ~ N^slope); NaN with
    fewer than two distinct positive points."""
    x, y = np.asarray(n_items, float), np.asarray(seconds, float)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if np.unique(x[keep]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def time_vs_items(cells: pd.DataFrame, *, dataset: str, methods: Sequence[str]):
    """The cluster job's wall time (s) against the number of items, log–log, one line per
    method, its fitted slope (time ~ N^slope) in the legend."""
    style = styles(methods)
    fig, ax = plt.subplots(figsize=(9, 6))
    for m in methods:
        rows = cells[(cells["method"] == m) & cells["seconds"].notna()].sort_values("n_items")
        if rows.empty:
            continue
        slope = fitted_slope(rows["n_items"].to_numpy(), rows["seconds"].to_numpy())
        label = f"{m} (slope {slope:.2f})" if np.isfinite(slope) else m
        ax.plot(rows["n_items"], rows["seconds"], label=label, lw=1.3, ms=4, **style[m])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of items (log scale)")
    ax.set_ylabel("wall time of the cluster job (s, log scale)")
    ax.set_title(f"{dataset}: wall time against number of items")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, len(methods))
    return fig


def _size_histogram(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
    return np.histogram(sizes, bins=edges)[0]


def cluster_sizes(
    true: np.ndarray | None,
    predicted: Mapping[str, np.ndarray | None],
    *,
    dataset: str,
    split: str,
):
    """Predicted against true cluster-size distributions: one small panel per method, the
    number of clusters per size bin (log–log, bins doubling from size 1), the true
    distribution in grey (an unlabelled split has none). Singletons and giant clusters
    show at the ends."""
    names = list(predicted)
    sizes = [p.size for p in predicted.values() if p is not None]
    biggest = max([true.size if true is not None else 1, *sizes, 1])
    edges = 2.0 ** np.arange(0, int(np.ceil(np.log2(biggest))) + 2) - 0.5
    centres = np.sqrt(np.maximum(edges[:-1], 0.5) * edges[1:])
    ref = _size_histogram(true, edges) if true is not None else np.zeros(edges.size - 1)
    cols = min(len(names), 5) or 1
    rows = max(1, int(np.ceil(len(names) / cols)))
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.0 * cols, 2.5 * rows + 0.6), sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    # fixed margins: a layout engine costs seconds on 30 panels
    top = 1.0 - 0.9 / (2.5 * rows + 0.6)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.5 / (2.5 * rows + 0.6), top=top,
                        wspace=0.08, hspace=0.3)  # fmt: skip
    for ax, m in zip(axes.flat, names, strict=False):
        ax.step(centres, np.where(ref > 0, ref, np.nan), where="mid", color="0.55", lw=2,
                label="true")  # fmt: skip
        labels = predicted[m]
        if labels is None or labels.size == 0:
            ax.text(0.5, 0.88, "not run", transform=ax.transAxes, ha="center", color="0.4")
        else:
            hist = _size_histogram(labels, edges)
            ax.step(centres, np.where(hist > 0, hist, np.nan), where="mid", color="C3", lw=1.2,
                    label="predicted")  # fmt: skip
            n_pred = int(np.unique(labels).size)
            m = f"{m} ({n_pred:,} clusters)"
        ax.set_title(m, fontsize="small")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    # the lowest panel of each column carries the x axis
    for c in range(cols):
        r = (len(names) - 1 - c) // cols if c < len(names) else 0
        axes[r, c].set_xlabel("cluster size (items)")
        axes[r, c].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("clusters")
    handles, labels_ = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="upper right", frameon=False)
    if true is None:
        fig.suptitle(f"{dataset} {split}: cluster sizes (unlabelled, {biggest:,} items)")
        return fig
    n_true = int(np.unique(true).size)
    fig.suptitle(
        f"{dataset} {split}: cluster sizes, predicted (red) against true "
        f"({n_true:,} clusters, {true.size:,} items, grey)"
    )
    return fig


def sweep(
    table: pd.DataFrame, *, dataset: str, split: str, method: str, setting: Mapping[str, object]
):
    """Pairwise F and BCubed F (%) against the sweep's first parameter, one line per value
    of the others; the published setting (``setting``, the variant's own values) marked."""
    params = list(setting)
    x = params[0]
    others = params[1:]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups = table.groupby(others, sort=False) if others else [((), table)]
    for i, (key, group) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        suffix = ", ".join(f"{p}={v}" for p, v in zip(others, key, strict=True))
        group = group.sort_values(x)
        for metric, ls, name in (("pairwise_f", "-", "pairwise F"), ("bcubed_f", "--", "BCubed F")):
            label = f"{name} ({suffix})" if suffix else name
            ax.plot(group[x], group[metric], ls=ls, marker="o", ms=4, color=f"C{i}", label=label)
    at = setting[x]
    mine = table
    for p in others:
        mine = mine[mine[p] == setting[p]]
    mine = mine[mine[x] == at]
    if isinstance(at, int | float) and not isinstance(at, bool):  # a categorical x has no line
        ax.axvline(at, color="0.4", lw=0.8, ls=":", label=f"published setting {x}={at}")
    if len(mine):
        ax.scatter([at] * 2, mine[["pairwise_f", "bcubed_f"]].iloc[0], marker="*", s=160,
                   color="k", zorder=5, label="published setting")  # fmt: skip
    ax.set_xlabel(f"{method} parameter {x}")
    ax.set_ylabel("F-score (%)")
    ax.set_title(f"{dataset} {split}: {method}, F-score against {x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="best")
    return fig
