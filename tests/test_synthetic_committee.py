import dataclasses
import hashlib

import numpy as np
import pytest

from facecluster import metrics
from facecluster.data import synthetic
from facecluster.data.synthetic import (
    SyntheticSpec,
    generate,
    generate_blocks,
    generate_member,
    generate_member_blocks,
)
from facecluster.graph import finalize_labels
from facecluster.knn import brute_force_knn
from facecluster.methods import cdp

SPEC = SyntheticSpec(scale=0.0005, seed=0)  # 43 identities, about 3,000 images


@pytest.fixture(scope="module")
def base():
    return generate(SPEC)


@pytest.fixture(scope="module")
def members():
    return [generate_member(SPEC, m) for m in range(3)]


def test_same_labels_and_blocks_as_the_base(base, members, monkeypatch):
    _, labels = base
    for feats, member_labels in members:
        np.testing.assert_array_equal(member_labels, labels)
        assert feats.dtype == np.float32 and feats.shape == base[0].shape
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # block by block, too (several blocks of identities)
    monkeypatch.setattr(synthetic, "BLOCK_IDENTITIES", 16)
    blocks = list(generate_blocks(SPEC))
    assert len(blocks) == 3
    for (bf, bl), (mf, ml) in zip(blocks, generate_member_blocks(SPEC, 2), strict=True):
        np.testing.assert_array_equal(ml, bl)
        assert mf.shape == bf.shape and not np.allclose(mf, bf)


def test_deterministic(members):
    # member 1 alone equals member 1 generated after member 0 (streams are independent)
    feats, labels = generate_member(SPEC, 1)
    np.testing.assert_array_equal(feats, members[1][0])
    np.testing.assert_array_equal(labels, members[1][1])


def test_members_differ_from_the_base_and_each_other(base, members):
    feats = [base[0]] + [f for f, _ in members]
    for a in range(len(feats)):
        for b in range(a + 1, len(feats)):
            cos = np.einsum("nd,nd->n", feats[a], feats[b])
            # correlated (the same images of the same identities), never identical
            assert 0.5 < cos.mean() < 0.99, (a, b, cos.mean())
            assert np.mean(cos < 0.999) > 0.99


def test_no_member_noise_gives_the_base(base):
    spec = dataclasses.replace(SPEC, member_identity_noise=0.0, member_image_noise=0.0)
    feats, _ = generate_member(spec, 0)
    np.testing.assert_allclose(feats, base[0], atol=1e-6)


def test_members_see_the_same_low_quality_images():
    spec = dataclasses.replace(SPEC, low_quality=0.3, quality_a=0.5, quality_b=0.5)
    base_feats, _ = generate(spec)
    quiet = dataclasses.replace(spec, member_identity_noise=0.0, member_image_noise=0.0)
    np.testing.assert_allclose(generate_member(quiet, 0)[0], base_feats, atol=1e-6)
    # with the default member noise, an image's degradation is shared with the base: its
    # offset from its clean version points the same way in both
    clean, _ = generate(dataclasses.replace(spec, low_quality=0.0))
    member, _ = generate_member(spec, 1)
    member_clean, _ = generate_member(dataclasses.replace(spec, low_quality=0.0), 1)
    moved = np.linalg.norm(base_feats - clean, axis=1) > 0.3
    assert moved.mean() > 0.05
    cos = np.einsum("nd,nd->n", (base_feats - clean)[moved], (member - member_clean)[moved])
    cos /= np.linalg.norm((base_feats - clean)[moved], axis=1)
    cos /= np.linalg.norm((member - member_clean)[moved], axis=1)
    assert np.median(cos) > 0.7


def test_base_output_unchanged_by_member_fields(base):
    # the member fields do not enter the base features
    spec = dataclasses.replace(SPEC, member_identity_noise=0.9, member_image_noise=0.1)
    feats, labels = generate(spec)
    assert hashlib.sha256(feats.tobytes()).digest() == hashlib.sha256(base[0].tobytes()).digest()
    np.testing.assert_array_equal(labels, base[1])


def test_members_cluster_as_well_as_the_base(base, members):
    _, labels = base

    def cdp_f(feats):
        pred = cdp.cluster(feats, brute_force_knn(feats, 15), th=0.6)
        return metrics.evaluate(labels, finalize_labels(pred))["pairwise_f"]

    f_base = cdp_f(base[0])
    assert f_base > 0.8
    for feats, _ in members:
        assert abs(cdp_f(feats) - f_base) < 0.03


@pytest.mark.parametrize(
    "kwargs,member,name",
    [
        ({}, -1, "member"),
        ({"member_identity_noise": 1.5}, 0, "member_identity_noise"),
        ({"member_image_noise": -0.1}, 0, "member_image_noise"),
    ],
)
def test_bad_member_arguments(kwargs, member, name):
    with pytest.raises(ValueError, match=name):
        next(generate_member_blocks(dataclasses.replace(SPEC, **kwargs), member))
