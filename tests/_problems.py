"""Small clustering problems and checks shared by the family tests (plain functions).

The fixture ``separated_groups`` in ``conftest.py`` serves :func:`two_groups_and_outlier`
with its kNN graph.
"""

import numpy as np


def unit(x):
    """Rows of ``x`` scaled to unit length, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def two_groups_and_outlier(seed=0, size=20, dim=16, spread=0.05):
    """Groups A (items 0..size-1) near e0 and B (size..2size-1) near e1, outlier near e2."""
    rng = np.random.default_rng(seed)
    which = np.r_[np.zeros(size, int), np.ones(size, int), 2]
    x = np.eye(dim)[which] + spread * rng.standard_normal((which.size, dim))
    return unit(x), which


def blobs(n=240, groups=6, dim=16, noise=0.6, seed=0):
    """``n`` unit vectors around ``groups`` random directions (labels drawn at random)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((groups, dim))
    y = rng.integers(0, groups, n)
    x = c[y] / np.linalg.norm(c[y], axis=1, keepdims=True)
    x = x + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return unit(x), y


def same_partition(a, b):
    """Equal up to renaming the clusters (-1 compared as a label of its own)."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))
