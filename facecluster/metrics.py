"""Clustering metrics against a ground-truth labelling, vectorised over a contingency matrix.

Every metric is derived from the contingency matrix ``C`` of the two labellings (rows are
ground-truth classes ``G_i``, columns predicted clusters ``P_j``, ``C_ij = |G_i ∩ P_j|``),
built once in O(N) with :func:`pandas.factorize` and a :mod:`scipy.sparse` matrix; the
metrics then cost O(number of non-zero cells + number of clusters) with no Python loops.

* **Pairwise** precision / recall / F (the Fowlkes–Mallows form used by learn-to-cluster):
  over all unordered pairs of items, precision is the fraction of pairs in the same predicted
  cluster that are also in the same class, recall the fraction of pairs in the same class
  that are also in the same predicted cluster. ``sqrt(P * R)`` is the Fowlkes–Mallows index.
* **BCubed** precision / recall / F: per item, precision is the fraction of its predicted
  cluster that shares its class, recall the fraction of its class that shares its predicted
  cluster, each averaged over all items.
* **NMI**: normalised mutual information, ``MI / mean(H(gt), H(pred))`` with natural
  logarithms and the *arithmetic* mean, the default of
  :func:`sklearn.metrics.normalized_mutual_info_score` since scikit-learn 0.22 (it was the
  geometric mean before). learn-to-cluster calls that function without pinning
  ``average_method``, so its published NMI depends on the scikit-learn version it ran with;
  this module always uses the arithmetic mean and matches current scikit-learn, edge cases
  included.

F scores are harmonic means of precision and recall, 0.0 when both are 0.

:func:`evaluate` computes them all at once and drops items whose ground-truth label is
``-1`` (unknown) before anything else; the individual metric functions score every item
they are given and treat ``-1`` as an ordinary label.

Labels are arbitrary integers (any values, including large and negative ones); only which
items share a label matters, so every metric is invariant to renaming labels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["UNKNOWN", "contingency", "pairwise", "bcubed", "nmi", "evaluate"]

UNKNOWN = -1
"""Ground-truth label of items whose identity is unknown; :func:`evaluate` does not score them."""

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------- input handling


def _check_labels(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    """Validate two labellings and return them as 1-D integer arrays.

    Parameters
    ----------
    gt, pred : array-like of int, shape (N,)
        Ground-truth classes and predicted clusters of the same N items.

    Returns
    -------
    gt, pred : numpy.ndarray of shape (N,)
        The inputs as arrays (not copied when already arrays).

    Raises
    ------
    ValueError
        If either is not 1-D or not of an integer dtype, if their lengths differ, or if they
        are empty.
    """
    arrays = []
    for name, labels in (("gt", gt), ("pred", pred)):
        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise ValueError(f"{name} labels must be 1-D, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} labels must be integers, got dtype {arr.dtype}")
        arrays.append(arr)
    gt_arr, pred_arr = arrays
    if len(gt_arr) != len(pred_arr):
        raise ValueError(
            f"gt and pred must have the same length, got len(gt)={len(gt_arr)} "
            f"and len(pred)={len(pred_arr)}"
        )
    if len(gt_arr) == 0:
        raise ValueError("gt and pred are empty: there is nothing to score")
    return gt_arr, pred_arr


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map labels to dense codes ``0 .. K-1`` in increasing label order.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (N,)

    Returns
    -------
    codes : numpy.ndarray of int64, shape (N,)
        ``codes[i]`` is the rank of ``labels[i]`` among the distinct labels.
    n_labels : int
        K, the number of distinct labels.
    """
    codes, uniques = pd.factorize(labels, sort=True)
    return codes.astype(np.int64, copy=False), len(uniques)


def _contingency(gt: np.ndarray, pred: np.ndarray) -> sp.csr_matrix:
    """Contingency matrix of two already validated labellings (see :func:`contingency`)."""
    gt_codes, n_classes = _codes(gt)
    pred_codes, n_clusters = _codes(pred)
    ones = np.ones(len(gt_codes), dtype=np.int64)
    cells = sp.coo_matrix((ones, (gt_codes, pred_codes)), shape=(n_classes, n_clusters))
    # COO -> CSR sums duplicate (row, col) entries with a linear-time bucket sort; summing
    # them on the COO matrix first would need an O(N log N) lexsort.
    return cells.tocsr()


# --------------------------------------------------------------------------- contingency parts


def _class_sizes(c: sp.csr_matrix) -> np.ndarray:
    """Row sums ``|G_i|`` of a contingency matrix, int64 of shape (n_classes,)."""
    return np.asarray(c.sum(axis=1), dtype=np.int64).ravel()


def _cluster_sizes(c: sp.csr_matrix) -> np.ndarray:
    """Column sums ``|P_j|`` of a contingency matrix, int64 of shape (n_clusters,)."""
    return np.asarray(c.sum(axis=0), dtype=np.int64).ravel()


def _nonzero_cells(c: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, column indices and int64 counts of the non-zero cells, each shape (nnz,)."""
    rows = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr))
    return rows, c.indices.astype(np.int64, copy=False), c.data.astype(np.int64, copy=False)


def _sum_of_squares(x: np.ndarray) -> int:
    """Exact ``Σ x²`` of non-negative int64 counts summing to N, as a Python int.

    ``Σ x² <= N²`` fits in int64 for N up to 3e9, so int64 arithmetic is exact here.
    """
    return int(np.dot(x, x))


def _harmonic_mean(precision: float, recall: float) -> float:
    """F score ``2PR / (P + R)``, 0.0 when ``P + R == 0``."""
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, 0.0 when the denominator is 0."""
    return numerator / denominator if denominator else 0.0


def _pairwise_scores(c: sp.csr_matrix) -> tuple[float, float, float]:
    """Pairwise precision, recall and F of a contingency matrix (see :func:`pairwise`)."""
    n = int(c.data.sum())
    tk = _sum_of_squares(c.data.astype(np.int64, copy=False)) - n
    pk = _sum_of_squares(_cluster_sizes(c)) - n
    qk = _sum_of_squares(_class_sizes(c)) - n
    precision, recall = _ratio(tk, pk), _ratio(tk, qk)
    return precision, recall, _harmonic_mean(precision, recall)


def _bcubed_scores(c: sp.csr_matrix) -> tuple[float, float, float]:
    """BCubed precision, recall and F of a contingency matrix (see :func:`bcubed`)."""
    rows, cols, counts = _nonzero_cells(c)
    n = float(counts.sum())
    squares = counts.astype(np.float64) ** 2
    precision = float(np.sum(squares / _cluster_sizes(c)[cols]) / n)
    recall = float(np.sum(squares / _class_sizes(c)[rows]) / n)
    return precision, recall, _harmonic_mean(precision, recall)


def _entropy(sizes: np.ndarray) -> float:
    """Shannon entropy (natural log) of a partition given its part sizes, shape (K,)."""
    if len(sizes) == 1:
        return 0.0
    p = sizes.astype(np.float64)
    total = p.sum()
    return float(-np.sum((p / total) * (np.log(p) - math.log(total))))


def _mutual_information(c: sp.csr_matrix) -> float:
    """Mutual information (natural log) of a contingency matrix, as scikit-learn computes it.

    Terms smaller in magnitude than float64 eps are zeroed and the sum is clipped at 0, like
    :func:`sklearn.metrics.mutual_info_score`.
    """
    if c.shape[0] == 1 or c.shape[1] == 1:
        return 0.0
    rows, cols, counts = _nonzero_cells(c)
    n = float(counts.sum())
    joint = counts.astype(np.float64)
    share = joint / n
    # |G_i| |P_j| in float64: exact below 2**53, i.e. for any N up to ~9e7, and never overflows.
    outer = _class_sizes(c)[rows].astype(np.float64) * _cluster_sizes(c)[cols]
    # Σ n_ij/N · log(n_ij N / (|G_i| |P_j|)), grouped as scikit-learn groups it.
    terms = share * (np.log(joint) - math.log(n)) + share * (2.0 * math.log(n) - np.log(outer))
    terms = np.where(np.abs(terms) < _EPS, 0.0, terms)
    return max(float(terms.sum()), 0.0)


def _nmi_score(c: sp.csr_matrix) -> float:
    """Arithmetic-mean NMI of a contingency matrix (see :func:`nmi`)."""
    n_classes, n_clusters = c.shape
    if n_classes == n_clusters == 1:
        return 1.0  # nothing is split in either labelling: a perfect, if trivial, match
    mi = _mutual_information(c)
    if mi == 0.0:
        return 0.0
    normalizer = (_entropy(_class_sizes(c)) + _entropy(_cluster_sizes(c))) / 2.0
    return float(np.clip(mi / max(normalizer, _EPS), 0.0, 1.0))


# --------------------------------------------------------------------------- public API


def contingency(gt, pred) -> sp.csr_matrix:
    """Contingency matrix of a ground-truth and a predicted labelling.

    Parameters
    ----------
    gt : array-like of int, shape (N,)
        Ground-truth class of each item.
    pred : array-like of int, shape (N,)
        Predicted cluster of each item.

    Returns
    -------
    scipy.sparse.csr_matrix of int64, shape (n_classes, n_clusters)
        Entry ``(i, j)`` counts the items in the i-th smallest ground-truth label and the j-th
        smallest predicted label (the ordering of
        :func:`sklearn.metrics.cluster.contingency_matrix`). Duplicates are summed, so every
        stored entry is a positive count and the entries sum to N.

    Raises
    ------
    ValueError
        If the labellings are not 1-D integer arrays of the same, non-zero length.
    """
    return _contingency(*_check_labels(gt, pred))


def pairwise(gt, pred) -> tuple[float, float, float]:
    """Pairwise precision, recall and F score (Fowlkes–Mallows form, as in learn-to-cluster).

    With ``C`` the contingency matrix and N the number of items::

        tk = Σ_ij C_ij² - N    # 2 × pairs together in both labellings
        pk = Σ_j |P_j|² - N    # 2 × pairs together in the prediction
        qk = Σ_i |G_i|² - N    # 2 × pairs together in the ground truth
        precision = tk / pk,  recall = tk / qk,  F = 2PR / (P + R)

    The sums are exact int64 arithmetic (no overflow for N up to 3e9).

    Parameters
    ----------
    gt : array-like of int, shape (N,)
        Ground-truth class of each item.
    pred : array-like of int, shape (N,)
        Predicted cluster of each item.

    Returns
    -------
    precision, recall, f : float
        Each in [0, 1]. Zero-division cases are scored 0.0 (like scikit-learn's
        ``zero_division=0``): precision is 0.0 when ``pk == 0`` (every predicted cluster is
        a singleton), recall is 0.0 when ``qk == 0`` (every ground-truth class is a
        singleton), and F is 0.0 when ``precision + recall == 0``.

    Raises
    ------
    ValueError
        If the labellings are not 1-D integer arrays of the same, non-zero length.
    """
    return _pairwise_scores(contingency(gt, pred))


def bcubed(gt, pred) -> tuple[float, float, float]:
    """BCubed precision, recall and F score.

    Per item, precision is ``|P(i) ∩ G(i)| / |P(i)|`` and recall ``|P(i) ∩ G(i)| / |G(i)|``
    (``P(i)``, ``G(i)``: its predicted cluster and ground-truth class), each averaged over the
    N items; summed per contingency cell this is ``Σ_ij C_ij² / |P_j| / N`` and
    ``Σ_ij C_ij² / |G_i| / N``.

    Parameters
    ----------
    gt : array-like of int, shape (N,)
        Ground-truth class of each item.
    pred : array-like of int, shape (N,)
        Predicted cluster of each item.

    Returns
    -------
    precision, recall, f : float
        Each in [0, 1]; F is the harmonic mean, 0.0 when precision and recall are both 0.

    Raises
    ------
    ValueError
        If the labellings are not 1-D integer arrays of the same, non-zero length.
    """
    return _bcubed_scores(contingency(gt, pred))


def nmi(gt, pred) -> float:
    """Normalised mutual information with arithmetic-mean normalisation.

    ``MI(gt, pred) / ((H(gt) + H(pred)) / 2)`` with natural logarithms, equal to
    ``sklearn.metrics.normalized_mutual_info_score(gt, pred)`` (``average_method=
    'arithmetic'``, its default since 0.22), edge cases included: 1.0 when both labellings
    put every item in one cluster, 0.0 when the mutual information is 0 (in particular when
    exactly one of them is a single cluster). The result is clipped to [0, 1] against
    rounding error.

    Parameters
    ----------
    gt : array-like of int, shape (N,)
        Ground-truth class of each item.
    pred : array-like of int, shape (N,)
        Predicted cluster of each item.

    Returns
    -------
    float
        NMI in [0, 1].

    Raises
    ------
    ValueError
        If the labellings are not 1-D integer arrays of the same, non-zero length.
    """
    return _nmi_score(contingency(gt, pred))


def evaluate(gt, pred) -> dict[str, int | float]:
    """All metrics of a predicted clustering against the ground truth.

    Items whose ground-truth label is ``-1`` (:data:`UNKNOWN`) are removed from both
    labellings before anything is computed: they count neither as items nor in any cluster,
    so a predicted cluster made only of such items does not exist for scoring.

    Parameters
    ----------
    gt : array-like of int, shape (N,)
        Ground-truth class of each item, ``-1`` where unknown.
    pred : array-like of int, shape (N,)
        Predicted cluster of each item.

    Returns
    -------
    dict
        Plain Python numbers: ``n_items`` (scored items), ``n_true_clusters`` and
        ``n_pred_clusters`` (distinct labels among scored items), ``pairwise_precision``,
        ``pairwise_recall``, ``pairwise_f``, ``bcubed_precision``, ``bcubed_recall``,
        ``bcubed_f`` and ``nmi`` (fractions in [0, 1]; see :func:`pairwise`, :func:`bcubed`,
        :func:`nmi`).

    Raises
    ------
    ValueError
        If the labellings are not 1-D integer arrays of the same, non-zero length, or if
        every item's ground truth is unknown.
    """
    gt, pred = _check_labels(gt, pred)
    known = gt != UNKNOWN
    if not known.any():
        raise ValueError(
            f"all {len(gt)} items have unknown ground truth ({UNKNOWN}): nothing to score"
        )
    c = _contingency(gt[known], pred[known])
    pairwise_p, pairwise_r, pairwise_f = _pairwise_scores(c)
    bcubed_p, bcubed_r, bcubed_f = _bcubed_scores(c)
    return {
        "n_items": int(known.sum()),
        "n_true_clusters": int(c.shape[0]),
        "n_pred_clusters": int(c.shape[1]),
        "pairwise_precision": pairwise_p,
        "pairwise_recall": pairwise_r,
        "pairwise_f": pairwise_f,
        "bcubed_precision": bcubed_p,
        "bcubed_recall": bcubed_r,
        "bcubed_f": bcubed_f,
        "nmi": _nmi_score(c),
    }
