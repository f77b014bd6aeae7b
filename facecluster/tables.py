"""Benchmark tables: our cells, beside the published numbers where there are some.

A *cell* is one row written by :func:`facecluster.tasks.evaluate` (one method on one split:
metrics as fractions, cluster counts, wall time, peak memory, and a ``note`` saying why a
cell was not run). The published numbers are a long table (:data:`PUBLISHED_COLUMNS`, values
in percent) joined to the cells by ``(dataset, split, method_id = method, metric)``.

Each table is a :class:`Table` (display strings for Markdown and HTML, numbers for TSV) so
that one builder serves all three formats; :func:`write_table` writes them atomically.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .io import InputError, atomic_path

__all__ = [
    "METRICS",
    "PUBLISHED_COLUMNS",
    "Table",
    "compare",
    "overview_table",
    "read_published",
    "scales_table",
    "split_table",
    "sweep_table",
    "write_table",
]

#: metric column -> title; values are fractions in cells and percent in tables
METRICS = {
    "pairwise_precision": "Pairwise precision",
    "pairwise_recall": "Pairwise recall",
    "pairwise_f": "Pairwise F",
    "bcubed_precision": "BCubed precision",
    "bcubed_recall": "BCubed recall",
    "bcubed_f": "BCubed F",
    "nmi": "NMI",
}
PUBLISHED_COLUMNS = ("dataset", "split", "method_id", "method", "metric", "value", "source")
DASH = "—"


@dataclass
class Table:
    """One benchmark table.

    Attributes
    ----------
    title : the table's heading (names the dataset).
    sections : (heading, frame of display strings indexed by method) in order.
    data : the numbers, indexed by method, for the TSV (percent, seconds, MB).
    legend : one line on what a cell shows.
    notes : why cells show "—", one line each.
    warnings : thresholds that keep or cut nearly every kNN edge, one line each.
    """

    title: str
    sections: list[tuple[str, pd.DataFrame]]
    data: pd.DataFrame
    legend: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        if self.legend:
            lines += [self.legend, ""]
        for heading, frame in self.sections:
            lines += [f"## {heading}", ""]
            lines.append("| method | " + " | ".join(map(str, frame.columns)) + " |")
            lines.append("|---|" + "---:|" * len(frame.columns))
            for method, row in frame.iterrows():
                lines.append(f"| {method} | " + " | ".join(row.astype(str)) + " |")
            lines.append("")
        if self.notes:
            lines += [f"## Cells not run ({DASH})", ""]
            lines += [f"- {n}" for n in self.notes]
            lines.append("")
        if self.warnings:
            lines += ["## Warnings", ""]
            lines += [f"- {w}" for w in self.warnings]
            lines.append("")
        return "\n".join(lines)

    def html(self) -> str:
        """A self-contained HTML page (for the Snakemake report, which shows it in a frame)."""
        style = (
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
            "margin-bottom:1.5em}th,td{border:1px solid #bbb;padding:3px 8px}"
            "td{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}"
        )
        parts = [
            "<!DOCTYPE html>",
            f'<html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>',
            f"<style>{style}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        if self.legend:
            parts.append(f"<p>{html.escape(self.legend)}</p>")
        for heading, frame in self.sections:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            parts.append(frame.rename_axis("method").to_html(escape=True, border=0))
        if self.notes:
            parts.append(f"<h2>Cells not run ({DASH})</h2><ul>")
            parts += [f"<li>{html.escape(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        if self.warnings:
            parts.append("<h2>Warnings</h2><ul>")
            parts += [f"<li>{html.escape(w)}</li>" for w in self.warnings]
            parts.append("</ul>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def write_table(table: Table, tsv: str, md: str, html_path: str | None = None) -> None:
    """Write ``table`` as TSV (numbers, rounded to 0.01), Markdown and HTML, atomically."""
    with atomic_path(tsv) as tmp:
        table.data.round(2).to_csv(tmp, sep="\t", index_label="method")
    with atomic_path(md) as tmp:
        tmp.write_text(table.markdown())
    if html_path:
        with atomic_path(html_path) as tmp:
            tmp.write_text(table.html())


# ----------------------------------------------------------------------------------- published


def read_published(path: str) -> pd.DataFrame:
    """Read the published numbers (TSV with :data:`PUBLISHED_COLUMNS`, values in percent).

    Returns a frame with columns dataset, split, method (the ``method_id``), name (the
    published row's label), metric, value, source.

    Raises
    ------
    InputError
        The file is missing or unreadable, lacks a column, has a value that is not a number
        in [0, 100], a metric outside :data:`METRICS`, or two values for one cell (a repeat
        of the same value, as in two published tables, is read once); the message
        names the file and the first offending lines.
    """
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the published results ({exc})") from exc
    missing = [c for c in PUBLISHED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    line = pd.Series(np.arange(len(frame)) + 2, index=frame.index)  # header is line 1
    value = pd.to_numeric(frame["value"], errors="coerce")
    problems = [
        (~value.between(0, 100), "value is not a number in [0, 100]"),
        (~frame["metric"].isin(list(METRICS)), f"metric not one of {', '.join(METRICS)}"),
    ]
    # the same number in two published tables (part1 and the scales) is one cell; two
    # different numbers for one cell are an error
    key = ["dataset", "split", "method_id", "metric"]
    repeat = frame.assign(value=value).duplicated([*key, "value"], keep="first")
    problems.append(
        (frame[~repeat].duplicated(key, keep="first").reindex(frame.index, fill_value=False),
         "another value for the same dataset/split/method_id/metric")
    )  # fmt: skip
    for bad, what in problems:
        if bad.any():
            lines = ", ".join(map(str, line[bad].head(5)))
            raise InputError(f"{path}: line(s) {lines}: {what}")
    out = frame.rename(columns={"method": "name", "method_id": "method"})
    out["value"] = value
    out = out[~repeat]
    return out[["dataset", "split", "method", "name", "metric", "value", "source"]]


def compare(
    cells: pd.DataFrame,
    published: pd.DataFrame,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
    metrics: Sequence[str],
) -> pd.DataFrame:
    """Our cells beside the published numbers, one row per (method, split, metric).

    Rows are every method of ``methods`` (the dataset's configured methods, in order), then
    each method that has a published number for this dataset on ``splits`` and ``metrics``
    but is not configured (ours missing); each on every split and metric.

    Returns columns method, split, metric, ours, published, diff (percent; NaN where
    missing; diff = ours − published), note (why ours is missing: the cell's own note,
    "not run" where there is no cell, or "not configured" for a published-only method).
    """
    cells = cells[cells["dataset"] == dataset] if "dataset" in cells else cells
    pub = published[
        (published["dataset"] == dataset)
        & published["split"].isin(list(splits))
        & published["metric"].isin(list(metrics))
    ]
    extra = [m for m in dict.fromkeys(pub["method"]) if m not in set(methods)]
    index = pd.MultiIndex.from_product(
        [[*methods, *extra], list(splits), list(metrics)], names=["method", "split", "metric"]
    )
    ours = cells.melt(
        id_vars=["method", "split"], value_vars=list(metrics), var_name="metric", value_name="ours"
    ).set_index(["method", "split", "metric"])["ours"]
    out = pd.DataFrame(index=index)
    out["ours"] = pd.to_numeric(ours.reindex(index), errors="coerce") * 100.0
    out["published"] = pub.set_index(["method", "split", "metric"])["value"].reindex(index)
    out["diff"] = out["ours"] - out["published"]
    notes = cells.set_index(["method", "split"])["note"] if "note" in cells else pd.Series()
    out = out.reset_index()
    keys = pd.MultiIndex.from_frame(out[["method", "split"]])
    note = notes.reindex(keys).to_numpy() if len(notes) else np.full(len(out), np.nan)
    has_cell = keys.isin(cells.set_index(["method", "split"]).index)
    out["note"] = [
        (str(n) if isinstance(n, str) and n else "")
        if present
        else ("not run" if m in set(methods) else f"not configured for {dataset}")
        for n, present, m in zip(note, has_cell, out["method"], strict=True)
    ]
    return out


# ------------------------------------------------------------------------------------ builders


def _value(ours: float, published: float, diff: float, with_published: bool) -> str:
    fmt = "{:.2f}"
    mine = DASH if pd.isna(ours) else fmt.format(ours)
    if not with_published or (pd.isna(ours) and pd.isna(published)):
        return mine
    if pd.isna(published):
        return f"{mine} / {DASH}"
    theirs = fmt.format(published)
    return f"{mine} / {theirs}" if pd.isna(diff) else f"{mine} / {theirs} ({diff:+.2f})"


def _legend(with_published: bool) -> str:
    if with_published:
        return (
            f"Cells: ours / published (ours − published), in %; {DASH} where a number does "
            "not exist (see the notes); clusters: predicted / true."
        )
    return (
        f"Cells in %; {DASH} where a cell was not run (see the notes); clusters: predicted / true."
    )


def _stat(cells: pd.DataFrame, column: str, index: pd.MultiIndex) -> pd.Series:
    series = cells.set_index(["method", "split"])[column] if column in cells else pd.Series()
    return pd.to_numeric(series.reindex(index), errors="coerce")


def _clusters(pred, true) -> str:
    if pd.isna(pred):
        return DASH
    return f"{int(pred):,} / {int(true):,}" if not pd.isna(true) else f"{int(pred):,}"


def _number(value, fmt: str) -> str:
    return DASH if pd.isna(value) else fmt.format(value)


def _notes(joined: pd.DataFrame) -> list[str]:
    """Why ours is missing: one line per (method, split), one per published-only method."""
    rows = joined[joined["ours"].isna() & (joined["note"] != "")]
    rows = rows.drop_duplicates(["method", "split"])
    out = []
    for r in rows.itertuples():
        if r.note.startswith("not configured"):
            line = f"{r.method}: {r.note} (a published row only)"
            if line not in out:
                out.append(line)
        else:
            out.append(f"{r.method} / {r.split}: {r.note}")
    return out


def knn_section(
    cells: pd.DataFrame, methods: Sequence[str], splits: Sequence[str]
) -> pd.DataFrame | None:
    """Which kNN graph each cell used (``exact``, or ``hnsw, recall@80 0.973``), methods ×
    splits; None when every cell's graph was exact."""
    if "knn" not in cells or not (cells["knn"].dropna().astype(str) != "exact").any():
        return None
    index = pd.MultiIndex.from_product([list(methods), list(splits)], names=["method", "split"])
    knn = cells.set_index(["method", "split"])["knn"].reindex(index)
    return knn.fillna(DASH).unstack("split").reindex(index=list(methods), columns=list(splits))


def cell_warnings(cells: pd.DataFrame) -> list[str]:
    """The cells' threshold warnings (``warning`` column, " | "-separated), one line each,
    prefixed with the split."""
    if "warning" not in cells:
        return []
    out = []
    for r in cells.dropna(subset=["warning"]).itertuples():
        out += [f"{r.split}: {w}" for w in str(r.warning).split(" | ") if w]
    return out


def _run_stats(cells: pd.DataFrame, methods: Sequence[str], splits: Sequence[str]):
    """(clusters, seconds, peak MB) frames of display strings and the numeric columns."""
    index = pd.MultiIndex.from_product([list(methods), list(splits)], names=["method", "split"])
    stats = pd.DataFrame(
        {c: _stat(cells, c, index) for c in ("n_pred_clusters", "n_true_clusters", "seconds")}
        | {"peak_rss_mb": _stat(cells, "peak_rss_mb", index)},
        index=index,
    )
    clusters = pd.Series(
        [
            _clusters(p, t)
            for p, t in zip(stats["n_pred_clusters"], stats["n_true_clusters"], strict=True)
        ],
        index=index,
    ).unstack("split")
    seconds = stats["seconds"].map(lambda v: _number(v, "{:.1f}")).unstack("split")
    memory = stats["peak_rss_mb"].map(lambda v: _number(v, "{:,.0f}")).unstack("split")
    order = {"index": list(methods), "columns": list(splits)}
    return (
        clusters.reindex(**order),
        seconds.reindex(**order),
        memory.reindex(**order),
        stats,
    )


def scales_table(
    cells: pd.DataFrame,
    published: pd.DataFrame,
    *,
    dataset: str,
    methods: Sequence[str],
    splits: Sequence[str],
    metric: str,
    with_published: bool,
) -> Table:
    """Methods × scales for one metric (the published "part1 … part9" tables), then the
    predicted/true cluster counts, wall time and peak memory of every cell.

    TSV columns per split: ``{split}`` (ours, %), with ``with_published`` also
    ``{split}_published`` and ``{split}_diff``; then ``{split}_n_pred_clusters``,
    ``{split}_n_true_clusters``, ``{split}_seconds``, ``{split}_peak_rss_mb``.
    """
    joined = compare(
        cells, published, dataset=dataset, methods=methods, splits=splits, metrics=[metric]
    )
    rows = list(dict.fromkeys(joined["method"]))
    wide = joined.set_index(["method", "split"])
    shown = pd.Series(
        [_value(o, p, d, with_published) for o, p, d in wide[["ours", "published", "diff"]].values],
        index=wide.index,
    ).unstack("split")
    shown = shown.reindex(index=rows, columns=list(splits))
    clusters, seconds, memory, stats = _run_stats(cells, rows, splits)
    data = pd.DataFrame(index=rows)
    for split in splits:
        part = wide.xs(split, level="split")
        data[split] = part["ours"]
        if with_published:
            data[f"{split}_published"] = part["published"]
            data[f"{split}_diff"] = part["diff"]
        for column in ("n_pred_clusters", "n_true_clusters", "seconds", "peak_rss_mb"):
            data[f"{split}_{column}"] = stats[column].xs(split, level="split")
    return Table(
        title=f"{dataset}: {METRICS[metric]} (%) by scale",
        sections=[
            (f"{METRICS[metric]} (%)", shown),
            ("Clusters (predicted / true)", clusters),
            ("Wall time of the cluster job (s)", seconds),
            ("Peak memory of the cluster job (MB)", memory),
        ],
        data=data,
        legend=_legend(with_published),
        notes=_notes(joined),
    )


def split_table(
    cells: pd.DataFrame,
    published: pd.DataFrame,
    *,
    dataset: str,
    methods: Sequence[str],
    split: str,
    metrics: Sequence[str],
    with_published: bool,
) -> Table:
    """Methods × metrics on one split (the published part1 P/R/F table, and the one-split
    YTF and DeepFashion tables), with the cluster counts, wall time and peak memory.

    TSV columns: ``{metric}`` (ours, %), with ``with_published`` also
    ``{metric}_published`` and ``{metric}_diff``; then ``n_pred_clusters``,
    ``n_true_clusters``, ``seconds``, ``peak_rss_mb``.
    """
    joined = compare(
        cells, published, dataset=dataset, methods=methods, splits=[split], metrics=metrics
    )
    rows = list(dict.fromkeys(joined["method"]))
    wide = joined.set_index(["method", "metric"])
    shown = pd.Series(
        [_value(o, p, d, with_published) for o, p, d in wide[["ours", "published", "diff"]].values],
        index=wide.index,
    ).unstack("metric")
    shown = shown.reindex(index=rows, columns=list(metrics))
    shown.columns = [f"{METRICS[m]} (%)" for m in metrics]
    clusters, seconds, memory, stats = _run_stats(cells, rows, [split])
    shown["clusters (predicted / true)"] = clusters[split]
    shown["time (s)"] = seconds[split]
    shown["peak memory (MB)"] = memory[split]
    data = pd.DataFrame(index=rows)
    for metric in metrics:
        part = wide.xs(metric, level="metric")
        data[metric] = part["ours"]
        if with_published:
            data[f"{metric}_published"] = part["published"]
            data[f"{metric}_diff"] = part["diff"]
    for column in ("n_pred_clusters", "n_true_clusters", "seconds", "peak_rss_mb"):
        data[column] = stats[column].xs(split, level="split")
    names = ", ".join(METRICS[m] for m in metrics)
    return Table(
        title=f"{dataset} {split}: {names}",
        sections=[(split, shown)],
        data=data,
        legend=_legend(with_published),
        notes=_notes(joined),
    )


def overview_table(
    cells: pd.DataFrame, *, dataset: str, methods: Sequence[str], splits: Sequence[str]
) -> Table:
    """Every method × split of a dataset: pairwise F, BCubed F, NMI, then cluster counts,
    wall time and peak memory (ours only). TSV columns ``{metric}_{split}`` (%)."""
    empty = pd.DataFrame(columns=list(PUBLISHED_COLUMNS[:3]) + ["metric", "value"])
    empty = empty.rename(columns={"method_id": "method"})
    metrics = ("pairwise_f", "bcubed_f", "nmi")
    joined = compare(cells, empty, dataset=dataset, methods=methods, splits=splits, metrics=metrics)
    wide = joined.set_index(["method", "split", "metric"])["ours"]
    sections, data = [], pd.DataFrame(index=list(methods))
    for metric in metrics:
        part = wide.xs(metric, level="metric").unstack("split")
        part = part.reindex(index=list(methods), columns=list(splits))
        sections.append((f"{METRICS[metric]} (%)", part.map(lambda v: _number(v, "{:.2f}"))))
        for split in splits:
            data[f"{metric}_{split}"] = part[split]
    clusters, seconds, memory, _ = _run_stats(cells, methods, splits)
    sections += [
        ("Clusters (predicted / true)", clusters),
        ("Wall time of the cluster job (s)", seconds),
        ("Peak memory of the cluster job (MB)", memory),
    ]
    knn = knn_section(cells, methods, splits)
    if knn is not None:
        sections.append(("kNN graph (backend, recall at k on a sample)", knn))
    return Table(
        title=dataset,
        sections=sections,
        data=data,
        legend=_legend(False),
        notes=_notes(joined),
        warnings=cell_warnings(cells),
    )


#: the columns of an unlabelled split's table: cell column -> (heading, format)
SUMMARY_VIEW = {
    "n_pred_clusters": ("clusters", "{:,.0f}"),
    "n_singletons": ("singletons", "{:,.0f}"),
    "largest_cluster": ("largest cluster", "{:,.0f}"),
    "size_p50": ("median size", "{:,.0f}"),
    "size_p90": ("size p90", "{:,.0f}"),
    "size_p99": ("size p99", "{:,.0f}"),
    "seconds": ("time (s)", "{:.1f}"),
    "peak_rss_mb": ("peak memory (MB)", "{:,.0f}"),
}


def unlabelled_table(
    cells: pd.DataFrame, *, dataset: str, methods: Sequence[str], split: str
) -> Table:
    """An unlabelled split, nothing to score: per method the number of clusters, of
    singletons, the largest cluster and the 50/90/99th percentiles of cluster sizes, with
    wall time and peak memory; refusals as notes, threshold warnings below."""
    rows = cells[cells["split"] == split].set_index("method") if len(cells) else cells
    data = pd.DataFrame(index=list(methods))
    for column in SUMMARY_VIEW:
        values = rows[column] if column in rows else pd.Series(dtype=float)
        data[column] = pd.to_numeric(values.reindex(list(methods)), errors="coerce")
    shown = pd.DataFrame(index=data.index)
    for column, (heading, fmt) in SUMMARY_VIEW.items():
        shown[heading] = data[column].map(lambda v, f=fmt: _number(v, f))
    notes = []
    for method in methods:
        if method not in rows.index:
            notes.append(f"{method} / {split}: not run")
        elif "note" in rows and isinstance(rows.at[method, "note"], str):
            notes.append(f"{method} / {split}: {rows.at[method, 'note']}")
    return Table(
        title=f"{dataset} (unlabelled, {split}): clusters found",
        sections=[("Clusters and their sizes (items)", shown)],
        data=data,
        legend=f"No labels: cluster counts and sizes per method; {DASH} where a cell was not run.",
        notes=notes,
        warnings=cell_warnings(cells),
    )


def sweep_table(
    cells: pd.DataFrame, points: Sequence[dict], variants: Sequence[str], *, title: str
) -> Table:
    """One row per sweep point (its variant name): the parameter values, pairwise and
    BCubed precision/recall/F and NMI (%), cluster counts, time and memory."""
    by_method = cells.set_index("method")
    rows = []
    for point, variant in zip(points, variants, strict=True):
        row = dict(point)
        cell = by_method.loc[variant] if variant in by_method.index else None
        for metric in METRICS:
            row[metric] = np.nan if cell is None else float(cell[metric]) * 100.0
        for column in ("n_pred_clusters", "n_true_clusters", "seconds", "peak_rss_mb"):
            row[column] = np.nan if cell is None else cell[column]
        rows.append(row)
    data = pd.DataFrame(rows, index=list(variants))
    shown = pd.DataFrame(index=data.index)
    for param in points[0]:
        shown[param] = data[param].astype(str)
    for metric, title_ in METRICS.items():
        shown[f"{title_} (%)"] = data[metric].map(lambda v: _number(v, "{:.2f}"))
    shown["clusters (predicted / true)"] = [
        _clusters(p, t)
        for p, t in zip(data["n_pred_clusters"], data["n_true_clusters"], strict=True)
    ]
    shown["time (s)"] = data["seconds"].map(lambda v: _number(v, "{:.1f}"))
    notes = []
    if "note" in cells:
        for variant in variants:
            if variant in by_method.index and isinstance(by_method.loc[variant, "note"], str):
                notes.append(f"{variant}: {by_method.loc[variant, 'note']}")
    return Table(title=title, sections=[("points", shown)], data=data, notes=notes)
