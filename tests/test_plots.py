"""Benchmark plots: readable alone (title naming the dataset, axis labels, legend), written
as PNG and SVG."""

import numpy as np
import pandas as pd
import pytest

from facecluster import plots, tasks

SPLITS = ["part1", "part3", "part5"]
METHODS = ["cdp", "gcnv", "spectral"]


@pytest.fixture
def cells():
    rows = []
    for i, split in enumerate(SPLITS):
        n = 1000 * 3**i
        for j, method in enumerate(METHODS):
            row = {c: np.nan for c in tasks.METRIC_COLUMNS}
            row.update(dataset="synth", split=split, method=method, n_items=n)
            if method == "spectral" and split != "part1":
                row["note"] = "refused"
            else:
                f = 0.9 - 0.05 * i - 0.1 * j
                row.update(
                    pairwise_precision=f + 0.05, pairwise_recall=f - 0.05, pairwise_f=f,
                    bcubed_f=f + 0.01, nmi=f, n_pred_clusters=10, n_true_clusters=12,
                    seconds=0.002 * n ** (1 + 0.5 * j), peak_rss_mb=100.0,
                )  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows, columns=tasks.METRIC_COLUMNS)


def _texts(fig):
    axes = fig.get_axes()
    return {
        "suptitle": fig._suptitle.get_text() if fig._suptitle else "",
        "titles": [ax.get_title() for ax in axes],
        "xlabels": [ax.get_xlabel() for ax in axes],
        "ylabels": [ax.get_ylabel() for ax in axes],
        "legend": [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().texts]
        + [t.get_text() for leg in fig.legends for t in leg.texts],
    }


def test_fitted_slope_of_a_power_law():
    n = np.array([1e3, 3e3, 1e4, 3e4])
    assert plots.fitted_slope(n, 0.5 * n**1.5) == pytest.approx(1.5)
    assert np.isnan(plots.fitted_slope(n[:1], n[:1]))
    assert np.isnan(plots.fitted_slope(np.array([10.0, 10.0]), np.array([1.0, 2.0])))


def test_f_vs_scale_draws_ours_and_published(cells):
    published = pd.DataFrame(
        {"method": ["cdp", "cdp"], "split": ["part1", "part3"], "metric": ["pairwise_f"] * 2,
         "value": [75.0, 70.0]}
    )  # fmt: skip
    fig = plots.f_vs_scale(cells, published, dataset="ms1m", methods=METHODS, splits=SPLITS)
    t = _texts(fig)
    assert "ms1m" in t["suptitle"]
    assert t["ylabels"][0] == "F-score (%)" and "number of items" in t["xlabels"][0]
    assert {"cdp", "gcnv", "spectral", "cdp (published)"} <= set(t["legend"])
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "cdp")
    assert list(line.get_ydata()) == pytest.approx([90.0, 85.0, 80.0])


def test_time_vs_items_legend_has_slopes(cells):
    fig = plots.time_vs_items(cells, dataset="synth", methods=METHODS)
    t = _texts(fig)
    assert "synth" in t["titles"][0] and "(s, log scale)" in t["ylabels"][0]
    assert "cdp (slope 1.00)" in t["legend"] and "gcnv (slope 1.50)" in t["legend"]
    assert "spectral" in t["legend"]  # one point: no slope
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


def test_precision_recall_one_panel_per_split(cells):
    fig = plots.precision_recall(cells, dataset="synth", methods=METHODS, splits=SPLITS)
    t = _texts(fig)
    assert [x for x in t["titles"] if x] == [
        "part1 (1,000 items)", "part3 (3,000 items)", "part5 (9,000 items)"
    ]  # fmt: skip
    assert "pairwise recall (%)" in t["xlabels"] and set(METHODS) <= set(t["legend"])


def test_cluster_sizes_against_truth(tmp_path):
    true = np.repeat(np.arange(4), [1, 2, 4, 8])
    merged = np.zeros(15, dtype=int)
    fig = plots.cluster_sizes(
        true, {"merged": merged, "refused": None}, dataset="synth", split="part1"
    )
    t = _texts(fig)
    assert "synth part1" in t["suptitle"] and "4 clusters, 15 items" in t["suptitle"]
    assert t["titles"][:2] == ["merged (1 clusters)", "refused"]
    assert "cluster size (items)" in t["xlabels"] and "clusters" in t["ylabels"]
    png, svg = tmp_path / "c.png", tmp_path / "c.svg"
    plots.save(fig, str(png), str(svg))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]


def test_sweep_marks_the_published_setting():
    table = pd.DataFrame(
        {"th": [0.6, 0.7, 0.8], "pairwise_f": [70.0, 80.0, 75.0], "bcubed_f": [72.0, 81.0, 77.0]}
    )
    fig = plots.sweep(table, dataset="synth", split="part1", method="cdp", setting={"th": 0.7})
    t = _texts(fig)
    assert "synth part1" in t["titles"][0] and t["xlabels"][0] == "cdp parameter th"
    assert "published setting th=0.7" in t["legend"]
    star = fig.axes[0].collections[-1].get_offsets()
    assert np.asarray(star).tolist() == [[0.7, 80.0], [0.7, 81.0]]
