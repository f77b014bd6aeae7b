"""Tests of facecluster.metrics against brute-force definitions and scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import fowlkes_mallows_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from facecluster import metrics

# --------------------------------------------------------------------------- fixtures


def _labelling(rng: np.random.Generator, n: int, k: int | str) -> np.ndarray:
    """Random labels for n items: k clusters, or 'singletons' / 'one' for the extreme cases."""
    if k == "singletons":
        return rng.permutation(n).astype(np.int64)
    if k == "one":
        return np.full(n, int(rng.integers(-5, 5)), dtype=np.int64)
    return rng.integers(0, k, size=n).astype(np.int64)


SHAPES = ["singletons", "one", 2, 5, 30]
CASES = [
    (seed, n, k_gt, k_pred)
    for seed, (n, k_gt, k_pred) in enumerate(
        itertools.product([1, 2, 7, 60, 200], SHAPES, SHAPES),
    )
]


def _case(seed: int, n: int, k_gt, k_pred) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _labelling(rng, n, k_gt), _labelling(rng, n, k_pred)


def _case_id(case) -> str:
    seed, n, k_gt, k_pred = case
    return f"s{seed}-n{n}-gt{k_gt}-pred{k_pred}"


# --------------------------------------------------------------------------- brute force


def _brute_pairwise(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    same_both = same_pred = same_gt = 0
    for i, j in itertools.combinations(range(len(gt)), 2):
        in_gt, in_pred = gt[i] == gt[j], pred[i] == pred[j]
        same_both += in_gt and in_pred
        same_pred += in_pred
        same_gt += in_gt
    p = same_both / same_pred if same_pred else 0.0
    r = same_both / same_gt if same_gt else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _brute_bcubed(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    precisions, recalls = [], []
    for i in range(len(gt)):
        in_cluster, in_class = pred == pred[i], gt == gt[i]
        both = np.sum(in_cluster & in_class)
        precisions.append(both / np.sum(in_cluster))
        recalls.append(both / np.sum(in_class))
    p, r = float(np.mean(precisions)), float(np.mean(recalls))
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_pairwise_matches_brute_force_and_fowlkes_mallows(case):
    gt, pred = _case(*case)
    p, r, f = metrics.pairwise(gt, pred)
    assert (p, r, f) == pytest.approx(_brute_pairwise(gt, pred), abs=1e-12)
    assert math.sqrt(p * r) == pytest.approx(fowlkes_mallows_score(gt, pred), abs=1e-12)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bcubed_matches_brute_force(case):
    gt, pred = _case(*case)
    assert metrics.bcubed(gt, pred) == pytest.approx(_brute_bcubed(gt, pred), abs=1e-12)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_nmi_matches_sklearn(case):
    gt, pred = _case(*case)
    assert metrics.nmi(gt, pred) == pytest.approx(normalized_mutual_info_score(gt, pred), abs=1e-10)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_contingency_matches_sklearn(case):
    gt, pred = _case(*case)
    c = metrics.contingency(gt, pred)
    assert isinstance(c, sp.csr_matrix)
    assert c.dtype == np.int64
    expected = contingency_matrix(gt, pred)
    assert c.shape == expected.shape
    np.testing.assert_array_equal(c.toarray(), expected)
    assert np.all(c.data > 0)  # duplicates summed, no explicit zeros


@pytest.mark.parametrize("seed", range(5))
def test_larger_random_labellings_match_sklearn(seed):
    rng = np.random.default_rng(1000 + seed)
    n = 20_000
    gt = rng.integers(0, 500, size=n)
    pred = np.where(rng.random(n) < 0.8, gt, rng.integers(0, 800, size=n))
    p, r, _ = metrics.pairwise(gt, pred)
    assert math.sqrt(p * r) == pytest.approx(fowlkes_mallows_score(gt, pred), abs=1e-12)
    assert metrics.nmi(gt, pred) == pytest.approx(normalized_mutual_info_score(gt, pred), abs=1e-10)


def test_edge_cases():
    n = 10
    one, singletons = np.zeros(n, dtype=int), np.arange(n)
    assert metrics.pairwise(one, singletons) == (0.0, 0.0, 0.0)  # pk == 0: precision 0
    assert metrics.pairwise(singletons, one) == (0.0, 0.0, 0.0)  # qk == 0: recall 0
    assert metrics.pairwise(singletons, singletons) == (0.0, 0.0, 0.0)
    assert metrics.pairwise(one, one) == (1.0, 1.0, 1.0)
    assert metrics.bcubed(singletons, singletons) == (1.0, 1.0, 1.0)
    assert metrics.bcubed(one, singletons) == pytest.approx((1.0, 0.1, 2 * 0.1 / 1.1))
    assert metrics.nmi(one, one) == 1.0
    assert metrics.nmi(one, singletons) == 0.0
    assert metrics.nmi(singletons, singletons) == 1.0
    assert metrics.nmi([3], [7]) == 1.0


def test_perfect_clustering_scores_one():
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 20, size=300)
    pred = gt * 13 + 1000  # renamed, same partition
    result = metrics.evaluate(gt, pred)
    for key in ("pairwise", "bcubed"):
        for part in ("precision", "recall", "f"):
            assert result[f"{key}_{part}"] == pytest.approx(1.0)
    assert result["nmi"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("seed", range(10))
def test_label_values_do_not_matter(seed):
    rng = np.random.default_rng(seed)
    n = 150
    gt, pred = rng.integers(0, 8, size=n), rng.integers(0, 12, size=n)
    # Arbitrary large / negative label values, distinct per original label (gt avoids -1).
    gt_values = rng.permutation([-(2**62), 2**62, -7, 10**18, -(10**17), 2**40 + 1, -2, 0])
    pred_values = rng.permutation(np.arange(12)) * -(10**15) - 3
    gt2, pred2 = gt_values[gt], pred_values[pred]

    assert metrics.pairwise(gt2, pred2) == pytest.approx(metrics.pairwise(gt, pred), abs=1e-15)
    assert metrics.bcubed(gt2, pred2) == pytest.approx(metrics.bcubed(gt, pred), abs=1e-15)
    assert metrics.nmi(gt2, pred2) == pytest.approx(metrics.nmi(gt, pred), abs=1e-12)
    assert metrics.evaluate(gt2, pred2) == pytest.approx(metrics.evaluate(gt, pred), abs=1e-12)
    assert metrics.nmi(gt2, pred2) == pytest.approx(
        normalized_mutual_info_score(gt2, pred2), abs=1e-10
    )


@pytest.mark.parametrize("seed", range(5))
def test_item_order_does_not_matter(seed):
    rng = np.random.default_rng(seed)
    gt, pred = rng.integers(0, 6, size=100), rng.integers(0, 9, size=100)
    order = rng.permutation(100)
    assert metrics.evaluate(gt[order], pred[order]) == pytest.approx(
        metrics.evaluate(gt, pred), abs=1e-12
    )


def test_swapping_labellings_swaps_precision_and_recall():
    rng = np.random.default_rng(3)
    gt, pred = rng.integers(0, 6, size=100), rng.integers(0, 9, size=100)
    for fn in (metrics.pairwise, metrics.bcubed):
        p, r, f = fn(gt, pred)
        assert fn(pred, gt) == pytest.approx((r, p, f), abs=1e-15)
    assert metrics.nmi(pred, gt) == pytest.approx(metrics.nmi(gt, pred), abs=1e-12)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_keys_and_types():
    gt = np.array([0, 0, 1, 1, 2])
    pred = np.array([5, 5, 5, 6, 7])
    result = metrics.evaluate(gt, pred)
    assert list(result) == [
        "n_items",
        "n_true_clusters",
        "n_pred_clusters",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f",
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f",
        "nmi",
    ]
    assert (result["n_items"], result["n_true_clusters"], result["n_pred_clusters"]) == (5, 3, 3)
    for key, value in result.items():
        assert type(value) is (int if key.startswith("n_") else float), key
        if not key.startswith("n_"):
            assert 0.0 <= value <= 1.0
    # pairs: pred together {01, 02, 12}, gt together {01, 23}; both {01}
    assert result["pairwise_precision"] == pytest.approx(1 / 3)
    assert result["pairwise_recall"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("seed", range(10))
def test_evaluate_excludes_unknown_ground_truth(seed):
    rng = np.random.default_rng(seed)
    n = 120
    gt = rng.integers(0, 10, size=n)
    pred = rng.integers(-3, 15, size=n)
    unknown = rng.random(n) < 0.3
    gt_with_unknown = np.where(unknown, -1, gt)
    # Items with unknown ground truth may even form predicted clusters of their own.
    pred_with_extra = np.where(unknown & (rng.random(n) < 0.5), 10**9, pred)

    result = metrics.evaluate(gt_with_unknown, pred_with_extra)
    known = ~unknown
    gk, pk = gt[known], pred_with_extra[known]
    assert result["n_items"] == known.sum()
    assert result["n_true_clusters"] == len(np.unique(gk))
    assert result["n_pred_clusters"] == len(np.unique(pk))
    p, r, f = _brute_pairwise(gk, pk)
    assert (result["pairwise_precision"], result["pairwise_recall"], result["pairwise_f"]) == (
        pytest.approx((p, r, f), abs=1e-12)
    )
    p, r, f = _brute_bcubed(gk, pk)
    assert (result["bcubed_precision"], result["bcubed_recall"], result["bcubed_f"]) == (
        pytest.approx((p, r, f), abs=1e-12)
    )
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(gk, pk), abs=1e-10)


def test_evaluate_all_unknown_raises():
    with pytest.raises(ValueError, match="unknown"):
        metrics.evaluate([-1, -1, -1], [0, 1, 2])


def test_pred_minus_one_is_an_ordinary_cluster():
    result = metrics.evaluate([0, 0, 1, 1], [-1, -1, 3, 3])
    assert result["n_items"] == 4
    assert result["pairwise_f"] == 1.0


# --------------------------------------------------------------------------- validation

FUNCTIONS = [
    metrics.contingency,
    metrics.pairwise,
    metrics.bcubed,
    metrics.nmi,
    metrics.evaluate,
]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__name__)
def test_mismatched_lengths_raise(fn):
    with pytest.raises(ValueError, match=r"same length.*\b5\b.*\b7\b"):
        fn(np.zeros(5, dtype=int), np.zeros(7, dtype=int))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__name__)
def test_empty_raises(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([], dtype=int), np.array([], dtype=int))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((2, 3), dtype=int), np.zeros(6, dtype=int), "1-D"),
        (np.zeros(4, dtype=int), np.zeros((4, 1), dtype=int), "1-D"),
        (np.zeros(4), np.zeros(4, dtype=int), "integer"),
        (np.zeros(4, dtype=int), np.array(["a", "b", "c", "d"]), "integer"),
        (np.zeros(4, dtype=int), np.zeros(4, dtype=bool), "integer"),
    ],
)
def test_invalid_inputs_raise(fn, gt, pred, message):
    with pytest.raises(ValueError, match=message):
        fn(gt, pred)


def test_accepts_lists_and_other_integer_dtypes():
    gt, pred = [0, 0, 1, 1, 2], [1, 1, 0, 0, 0]
    expected = metrics.evaluate(np.array(gt), np.array(pred))
    assert metrics.evaluate(gt, pred) == expected
    assert metrics.evaluate(np.array(gt, dtype=np.int32), np.array(pred, dtype=np.uint8)) == (
        pytest.approx(expected)
    )
