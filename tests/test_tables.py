"""Benchmark tables: the join of our cells with the published numbers, and their formats."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facecluster import tables, tasks
from facecluster.io import InputError

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "published_fixture.tsv"


def _cell(method, split, f, *, note=None, n_pred=10, n_true=12, seconds=1.5):
    row = {c: np.nan for c in tasks.METRIC_COLUMNS}
    row.update(dataset="ms1m", split=split, method=method, n_items=100)
    if note:
        row["note"] = note
        return row
    row.update(
        n_true_clusters=n_true,
        n_pred_clusters=n_pred,
        pairwise_precision=f + 0.05,
        pairwise_recall=f - 0.05,
        pairwise_f=f,
        bcubed_precision=f,
        bcubed_recall=f,
        bcubed_f=f,
        nmi=f,
        seconds=seconds,
        peak_rss_mb=321.0,
    )
    return row


@pytest.fixture
def cells():
    """cdp on both splits; gcnv refused on part3; cw without a part3 cell (and without a
    published row); lgcn is published but not configured."""
    return pd.DataFrame(
        [
            _cell("cdp", "part1", 0.76),
            _cell("cdp", "part3", 0.70),
            _cell("gcnv", "part1", 0.88, n_pred=8, n_true=487),
            _cell("gcnv", "part3", None, note="gcnv on 100 items needs 9 GB > limits.mem_mb"),
            _cell("cw", "part1", 0.50),
        ],
        columns=tasks.METRIC_COLUMNS,
    )


METHODS = ["cdp", "gcnv", "cw"]
SPLITS = ["part1", "part3"]


def test_join_covers_present_missing_unpublished_and_unconfigured(cells):
    published = tables.read_published(FIXTURE)
    joined = tables.compare(
        cells, published, dataset="ms1m", methods=METHODS, splits=SPLITS, metrics=["pairwise_f"]
    ).set_index(["method", "split"])
    # configured methods first, in order, then the published-only method
    assert list(dict.fromkeys(joined.index.get_level_values("method"))) == [*METHODS, "lgcn"]
    present = joined.loc[("cdp", "part1")]
    assert present["ours"] == pytest.approx(76.0)
    assert present["published"] == pytest.approx(75.02)
    assert present["diff"] == pytest.approx(0.98)
    refused = joined.loc[("gcnv", "part3")]
    assert np.isnan(refused["ours"]) and refused["published"] == pytest.approx(84.04)
    assert "limits.mem_mb" in refused["note"]
    no_cell = joined.loc[("cw", "part3")]
    assert np.isnan(no_cell["ours"]) and no_cell["note"] == "not run"
    unpublished = joined.loc[("cw", "part1")]
    assert unpublished["ours"] == pytest.approx(50.0) and np.isnan(unpublished["published"])
    assert np.isnan(unpublished["diff"]) and unpublished["note"] == ""
    only_published = joined.loc[("lgcn", "part1")]
    assert np.isnan(only_published["ours"]) and only_published["published"] == 78.68
    assert only_published["note"] == "not configured for ms1m"
    # another dataset's published rows never join
    assert "ytf" not in set(published[published["dataset"] == "ms1m"]["dataset"])


def test_scales_table_formats_ours_published_and_difference(cells):
    published = tables.read_published(FIXTURE)
    table = tables.scales_table(
        cells, published, dataset="ms1m", methods=METHODS, splits=SPLITS,
        metric="pairwise_f", with_published=True,
    )  # fmt: skip
    md = table.markdown()
    assert "| cdp | 76.00 / 75.02 (+0.98) | 70.00 / 70.75 (-0.75) |" in md
    assert "| gcnv | 88.00 / 87.93 (+0.07) | — / 84.04 |" in md
    assert "| cw | 50.00 / — | — |" in md
    assert "| lgcn | — / 78.68 | — |" in md
    # the collapse is visible: 8 predicted clusters for 487 identities
    assert "| gcnv | 8 / 487 | — |" in md
    assert "gcnv / part3: gcnv on 100 items" in md
    assert "- lgcn: not configured for ms1m (a published row only)" in md
    assert "cw / part3: not run" in md
    data = table.data
    assert list(data.index) == [*METHODS, "lgcn"]
    assert data.loc["cdp", "part1_published"] == 75.02
    assert data.loc["cdp", "part3_diff"] == pytest.approx(-0.75)
    assert data.loc["gcnv", "part1_n_pred_clusters"] == 8
    assert np.isnan(data.loc["gcnv", "part3"])
    html = table.html()
    assert html.count("<table") == 4 and "76.00 / 75.02 (+0.98)" in html


def test_synthetic_tables_show_ours_only(cells):
    published = tables.read_published(FIXTURE)
    table = tables.scales_table(
        cells, published.iloc[:0], dataset="ms1m", methods=METHODS, splits=SPLITS,
        metric="pairwise_f", with_published=False,
    )  # fmt: skip
    md = table.markdown()
    assert "| cdp | 76.00 | 70.00 |" in md and "/ 75.02" not in md
    assert "part1_published" not in table.data.columns


def test_split_table_precision_recall_f(cells):
    published = tables.read_published(FIXTURE)
    table = tables.split_table(
        cells, published, dataset="ms1m", methods=METHODS, split="part1",
        metrics=tasks.SPLIT_VIEWS["prf"], with_published=True,
    )  # fmt: skip
    md = table.markdown()
    assert "| cdp | 81.00 / 80.19 (+0.81) | 71.00 / 70.47 (+0.53) | 76.00 / 75.02 (+0.98) |" in md
    row = table.data.loc["cdp"]
    assert row["pairwise_recall_published"] == 70.47 and row["seconds"] == 1.5
    assert table.data.loc["lgcn", "pairwise_f_published"] == 78.68


def test_table_files_are_written(tmp_path, cells):
    paths = []
    for i, (_, row) in enumerate(cells.iterrows()):
        p = tmp_path / f"cell{i}.tsv"
        pd.DataFrame([row], columns=tasks.METRIC_COLUMNS).to_csv(p, sep="\t", index=False)
        paths.append(str(p))
    out = {ext: str(tmp_path / f"t.{ext}") for ext in ("tsv", "md", "html")}
    tasks.table_scales(
        paths, str(FIXTURE), out["tsv"], out["md"], out["html"], dataset="ms1m",
        methods=METHODS, splits=SPLITS, metric="pairwise_f", with_published=True,
    )  # fmt: skip
    tsv = pd.read_csv(out["tsv"], sep="\t", index_col="method")
    assert tsv.loc["cdp", "part1"] == 76.0 and tsv.loc["lgcn", "part1_published"] == 78.68
    assert Path(out["html"]).read_text().startswith("<!DOCTYPE html>")
    tasks.table(paths, out["tsv"], out["md"], out["html"], dataset="ms1m", methods=METHODS,
                splits=SPLITS)  # fmt: skip
    overview = pd.read_csv(out["tsv"], sep="\t", index_col="method")
    assert overview.loc["cdp", "pairwise_f_part3"] == 70.0
    assert np.isnan(overview.loc["gcnv", "nmi_part3"])


def test_shipped_published_results_read_and_cover_the_tables():
    published = tables.read_published(ROOT / "config" / "published_results.tsv")
    ms1m = published[published["dataset"] == "ms1m"]
    assert {"part1", "part3", "part5", "part7", "part9"} <= set(ms1m["split"])
    assert ms1m.query("method == 'gcnv' and split == 'part9' and metric == 'pairwise_f'").size
    assert published["source"].str.len().min() > 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("dataset\tsplit\tmethod_id\tmetric\tvalue\tsource\n", "missing column(s) method"),
        ("{h}ms1m\tpart1\tcdp\tCDP\tpairwise_f\tabc\tx\n", "line(s) 2: value is not a number"),
        ("{h}ms1m\tpart1\tcdp\tCDP\tpairwise_f\t175\tx\n", "value is not a number in [0, 100]"),
        ("{h}ms1m\tpart1\tcdp\tCDP\tf1\t75\tx\n", "line(s) 2: metric not one of"),
        ("{h}ms1m\tpart1\tcdp\tCDP\tnmi\t75\tx\nms1m\tpart1\tcdp\tCDP\tnmi\t76\tx\n", "line(s) 3"),
    ],
)
def test_bad_published_file_names_file_and_line(tmp_path, text, message):
    header = "\t".join(tables.PUBLISHED_COLUMNS) + "\n"
    path = tmp_path / "published.tsv"
    path.write_text(text.format(h=header))
    with pytest.raises(InputError, match=str(path)) as err:
        tables.read_published(path)
    assert message in str(err.value)


def test_missing_published_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the published results"):
        tables.read_published(tmp_path / "absent.tsv")


def test_sweep_table_rows_follow_the_points(cells):
    sweep = cells.copy()
    sweep.loc[0, "method"] = "cdp/th~0.6"
    sweep.loc[1, "method"] = "cdp/th~0.7"
    table = tables.sweep_table(
        sweep, [{"th": 0.6}, {"th": 0.7}], ["cdp/th~0.6", "cdp/th~0.7"], title="t"
    )
    assert list(table.data["th"]) == [0.6, 0.7]
    assert list(table.data["pairwise_f"]) == pytest.approx([76.0, 70.0])
