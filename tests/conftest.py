import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_synth():
    """Well-separated blobs on the unit sphere: features (N, 32) float32, labels int64.

    40 identities of 5..60 images each, within-identity cosine about 0.9.
    """
    rng = np.random.default_rng(3)
    d = 32
    sizes = rng.integers(5, 61, size=40)
    centres = rng.standard_normal((40, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(40), sizes)
    feats = centres[labels] + 0.3 * rng.standard_normal((labels.size, d)) / np.sqrt(d)
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    return feats, labels.astype(np.int64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
