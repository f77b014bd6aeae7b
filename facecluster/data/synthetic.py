"""A seeded generator of MS1M-like face embeddings (the embedded default dataset ``synth``).

The model, per identity:

* a centre ``c`` on the unit sphere, drawn from a low-rank Gaussian (rank ``centre_rank``)
  plus an optional isotropic part (``isotropic``): centres crowd together as the number of
  identities grows, so, as on MS1M, neighbouring identities get closer and every method's
  F-score falls with scale;
* a long-tailed (log-normal) number of images, mean ``mean_images``;
* ``1 + Poisson(extra_modes)`` sub-modes (pose, age) around the centre, spread
  ``mode_spread``, with Dirichlet weights. Their offsets lie in a subspace of rank
  ``mode_rank`` shared by all identities (pose and age move every face along the same
  directions); ``mode_rank = 0`` draws them isotropically instead;
* an identity-specific spread (log-normal around ``spread``) of its images around their mode;
* a fraction ``label_noise`` of images whose label is replaced by another identity;
* a fraction ``low_quality`` of low-quality images (blur, occlusion, extreme pose), each with
  a quality ``q ~ Beta(quality_a, quality_b)`` (1 = clean): its noise is multiplied by
  ``1 + low_quality_noise * (1 - q)`` and the (normalised) image is pulled towards a
  low-quality region, ``(1 - w) * x + w * p`` with ``w = low_quality_pull * (1 - q)``. The
  region is one fixed direction plus a subspace of rank ``low_quality_rank`` around it
  (spread ``low_quality_spread``), the same for every identity and every split; each image
  has its own point ``p`` in it. Real embeddings do this: a network that cannot see a face
  well maps it near the other unrecognisable faces, whoever they are. Such images have many
  close neighbours of other identities: a high density but a low ``s_nbr`` (GCN-V's
  target), and the shared direction a GCN can learn carries over from the train split to
  the test splits.

Images are ``normalize(mode + spread * e / sqrt(D))`` with ``e`` standard normal, so the
cosine between two images of one mode is about ``1 / (1 + spread**2)``.

Keeping all identity structure in a subspace of low rank (``centre_rank + mode_rank``, with
no isotropic part) matters for supervised methods: if every identity and sub-mode had its
own direction in the 256-d space, the ~170 modes of a small train split would be linearly
separable and a GCN would memorise them instead of learning something that transfers
(real train sets have 8,573 identities, far more than 256 dimensions).

``scale = 1.0`` gives MS1M's size: 10 parts of 8,573 identities (about 5.8M images).
Generation streams over blocks of identities, so memory stays bounded at any scale.

The low-quality draws (which images, their quality, their point in the region) come from a
child stream of each block's seed and the region from a fourth child of the root seed, so
``low_quality = 0`` gives exactly the data of the generator without them.

Committee members (CDP's committee: the same images seen through differently perturbed
embedding models) come from :func:`generate_member_blocks`. Member ``m`` re-uses every draw
of the base (identities, image counts, sub-mode choices, spreads, labels) and mixes each
Gaussian latent of the base with an independent one of its own,
``sqrt(1 - t**2) * base + t * own``: the identity latents (centre and sub-mode offsets) with
``t = member_identity_noise`` (the model places identities a little differently) and the
image noise and the image's point in the low-quality region with ``t = member_image_noise``
(the model's own errors on each image); an image's quality is the base's. The mix
keeps every latent's distribution, so a member is statistically as good a clustering input
as the base, while its errors are only partly shared with the base and the other members.
Member streams are seeded from ``(seed, member)``: each member is deterministic and
independent of the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SyntheticSpec",
    "n_identities",
    "generate_blocks",
    "generate",
    "generate_member_blocks",
    "generate_member",
]

MS1M_IDENTITIES_PER_PART = 8573
MS1M_PARTS = 10


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generator (config keys of ``datasets.<name>.synthetic``)."""

    scale: float = 0.01
    dim: int = 256
    mean_images: float = 68.0
    images_sigma: float = 0.8
    min_images: int = 2
    max_images: int = 1000
    centre_rank: int = 12
    isotropic: float = 0.0
    extra_modes: float = 1.0
    mode_spread: float = 0.5
    mode_rank: int = 12
    spread: float = 0.65
    spread_sigma: float = 0.15
    label_noise: float = 0.03
    #: fraction of images of low quality (blur, occlusion, extreme pose): 0 disables it (the
    #: embedded default ``synth`` sets 0.1)
    low_quality: float = 0.0
    #: a low-quality image's quality q ~ Beta(quality_a, quality_b) in (0, 1) (1 = clean)
    quality_a: float = 0.5
    quality_b: float = 0.5
    #: weight of the shared low-quality region in an image of quality q: pull * (1 - q)
    low_quality_pull: float = 0.9
    #: rank and spread of the low-quality region (a fixed point and a low-rank subspace
    #: around it, shared by every identity and every split)
    low_quality_rank: int = 4
    low_quality_spread: float = 0.5
    #: a low-quality image's noise is multiplied by 1 + low_quality_noise * (1 - q)
    low_quality_noise: float = 1.0
    seed: int = 0
    member_identity_noise: float = 0.3
    member_image_noise: float = 0.3


def n_identities(spec: SyntheticSpec) -> int:
    """Total identities over all 10 parts: ``round(scale * 85,730)``, at least 10."""
    return max(MS1M_PARTS, int(round(spec.scale * MS1M_IDENTITIES_PER_PART * MS1M_PARTS)))


def _image_counts(spec: SyntheticSpec, n_ids: int, rng: np.random.Generator) -> np.ndarray:
    mu = np.log(spec.mean_images) - spec.images_sigma**2 / 2
    counts = np.round(rng.lognormal(mu, spec.images_sigma, size=n_ids)).astype(np.int64)
    return np.clip(counts, spec.min_images, spec.max_images)


def _centre_latents(
    spec: SyntheticSpec, n_ids: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centres' subspace basis (D, centre_rank), low-rank latents and isotropic parts."""
    basis, _ = np.linalg.qr(rng.standard_normal((spec.dim, spec.centre_rank)))
    z = rng.standard_normal((n_ids, spec.centre_rank)) / np.sqrt(spec.centre_rank)
    iso = rng.standard_normal((n_ids, spec.dim)) / np.sqrt(spec.dim)
    return basis, z, iso


def _centres_from(
    spec: SyntheticSpec, basis: np.ndarray, z: np.ndarray, iso: np.ndarray
) -> np.ndarray:
    c = z @ basis.T + spec.isotropic * iso
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _low_quality_region(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """The shared low-quality region: (D, 1 + low_quality_rank) orthonormal columns, the
    region's centre direction first, then the directions it spreads along."""
    q, _ = np.linalg.qr(rng.standard_normal((spec.dim, 1 + spec.low_quality_rank)))
    return q


def _quality_draws(
    spec: SyntheticSpec, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: quality float64 (n,) (1 for the clean majority, Beta(quality_a,
    quality_b) for a fraction ``low_quality``) and a standard normal position (n,
    low_quality_rank) in the low-quality region."""
    quality = np.ones(n)
    low = rng.random(n) < spec.low_quality
    quality[low] = rng.beta(spec.quality_a, spec.quality_b, size=int(low.sum()))
    return quality, rng.standard_normal((n, spec.low_quality_rank))


def _degrade(
    x: np.ndarray, quality: np.ndarray, z: np.ndarray, region: np.ndarray, spec: SyntheticSpec
) -> np.ndarray:
    """Pull images (n, D) towards the low-quality region by ``pull * (1 - quality)``.

    ``x`` is normalised first; the image's point in the region is ``normalize(region[:, 0]
    + low_quality_spread * z @ region[:, 1:].T / sqrt(rank))``; the result is
    ``(1 - w) * x + w * point`` (normalised later by the caller).
    """
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    point = region[:, 0] + (spec.low_quality_spread / np.sqrt(max(1, spec.low_quality_rank))) * (
        z @ region[:, 1:].T
    )
    point /= np.linalg.norm(point, axis=1, keepdims=True)
    w = (spec.low_quality_pull * (1.0 - quality))[:, None]
    return (1.0 - w) * x + w * point


def _mix(base: np.ndarray, own: np.ndarray, t: float) -> np.ndarray:
    """``sqrt(1 - t**2) * base + t * own``: keeps a standard Gaussian standard."""
    return np.sqrt(1.0 - t * t) * base + t * own


#: entropy word that separates the members' seed sequences from the base's
_MEMBER_TAG = 0x6D656D62


#: identities generated per block (each block has its own seeded random stream, so this
#: constant is part of the generator's definition: changing it changes the data)
BLOCK_IDENTITIES = 2048


def generate_blocks(spec: SyntheticSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features float32 (n, D), labels int64 (n,)) blocks covering every identity.

    Identities are numbered 0..n_identities-1 and appear in order; the output depends only
    on ``spec`` (including ``seed``). Memory is bounded by one block of identities.
    """
    yield from _blocks(spec, None)


def generate_member_blocks(
    spec: SyntheticSpec, member: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Committee member ``member`` (>= 0) of the dataset, block by block.

    Yields the blocks of :func:`generate_blocks` (same items in the same order, identical
    labels) with the member's features, float32 (n, D), L2-normalised: the same identity,
    sub-mode and spread of every image, identity latents and image noise mixed with the
    member's own (``member_identity_noise``, ``member_image_noise``; see the module
    docstring). Seeded from ``(spec.seed, member)``. Costs about twice the base's time.
    """
    if int(member) != member or member < 0:
        raise ValueError(f"member must be an integer >= 0, got {member}")
    for name in ("member_identity_noise", "member_image_noise"):
        t = getattr(spec, name)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {t}")
    yield from _blocks(spec, int(member))


def _blocks(spec: SyntheticSpec, member: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The base's blocks (``member is None``) or member ``member``'s (same draws, plus the
    member's own from an independent stream; the base's draws are never disturbed)."""
    block_identities = BLOCK_IDENTITIES
    root = np.random.SeedSequence(spec.seed)
    meta_rng, noise_seq, mode_seq = (np.random.default_rng(s) for s in root.spawn(3))
    region = None
    if spec.low_quality > 0:
        # a fourth child stream: the three above (and so the data without low-quality
        # images) stay as they were
        region = _low_quality_region(spec, np.random.default_rng(root.spawn(1)[0]))
    n_ids = n_identities(spec)
    counts = _image_counts(spec, n_ids, meta_rng)
    basis, z, iso = _centre_latents(spec, n_ids, meta_rng)
    centres = _centres_from(spec, basis, z, iso)
    d = spec.dim
    mode_basis = None
    if spec.mode_rank:
        mode_basis, _ = np.linalg.qr(mode_seq.standard_normal((d, spec.mode_rank)))
    # one independent stream per identity block, so blocks can be generated in any order
    n_blocks = (n_ids + block_identities - 1) // block_identities
    block_seeds = np.random.SeedSequence(int(noise_seq.integers(2**63))).spawn(n_blocks)
    if member is not None:
        t_id, t_img = spec.member_identity_noise, spec.member_image_noise
        member_root = np.random.SeedSequence([spec.seed, _MEMBER_TAG, member])
        member_meta, member_blocks = member_root.spawn(2)
        own = np.random.default_rng(member_meta)
        own_z = own.standard_normal(z.shape) / np.sqrt(spec.centre_rank)
        own_iso = own.standard_normal(iso.shape) / np.sqrt(spec.dim)
        centres = _centres_from(spec, basis, _mix(z, own_z, t_id), _mix(iso, own_iso, t_id))
        del own_z, own_iso
        member_seeds = member_blocks.spawn(n_blocks)
    del z, iso
    for b, start in enumerate(range(0, n_ids, block_identities)):
        rng = np.random.default_rng(block_seeds[b])
        own = np.random.default_rng(member_seeds[b]) if member is not None else None
        ids = np.arange(start, min(n_ids, start + block_identities))
        n_modes = 1 + rng.poisson(spec.extra_modes, size=ids.size)
        spreads = spec.spread * rng.lognormal(0.0, spec.spread_sigma, size=ids.size)
        if region is not None:
            # per-image quality from a child stream of the block's seed, so the base's other
            # draws are undisturbed and every member sees the same images' qualities
            quality, place = _quality_draws(
                spec, int(counts[ids].sum()), np.random.default_rng(block_seeds[b].spawn(1)[0])
            )
            if own is not None:  # the member's own placement inside the region
                own_place = np.random.default_rng(member_seeds[b].spawn(1)[0])
                place = _mix(place, own_place.standard_normal(place.shape), t_img)
            noise_scale = 1.0 + spec.low_quality_noise * (1.0 - quality)
        first = 0
        label_blocks, feat_blocks = [], []
        for j, ident in enumerate(ids):
            m = n_modes[j]
            if mode_basis is None:
                g = rng.standard_normal((m, d))
                if own is not None:
                    g = _mix(g, own.standard_normal((m, d)), t_id)
                offsets = g / np.sqrt(d)
            else:
                g = rng.standard_normal((m, spec.mode_rank))
                if own is not None:
                    g = _mix(g, own.standard_normal((m, spec.mode_rank)), t_id)
                offsets = g @ mode_basis.T
                offsets /= np.sqrt(spec.mode_rank)
            modes = centres[ident] + spec.mode_spread * offsets
            modes /= np.linalg.norm(modes, axis=1, keepdims=True)
            weights = rng.dirichlet(np.full(m, 2.0))
            which = rng.choice(m, size=counts[ident], p=weights)
            noise = rng.standard_normal((counts[ident], d)) / np.sqrt(d)
            if own is not None:
                noise = _mix(noise, own.standard_normal((counts[ident], d)) / np.sqrt(d), t_img)
            if region is None:
                x = modes[which] + spreads[j] * noise
            else:
                sl = slice(first, first + counts[ident])
                x = modes[which] + spreads[j] * noise_scale[sl, None] * noise
                x = _degrade(x, quality[sl], place[sl], region, spec)
            first += counts[ident]
            feat_blocks.append(x)
            label_blocks.append(np.full(counts[ident], ident, dtype=np.int64))
        feats = np.concatenate(feat_blocks).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        labels = np.concatenate(label_blocks)
        flip = rng.random(labels.size) < spec.label_noise
        if flip.any() and n_ids > 1:
            # a wrong label: any other identity
            other = rng.integers(0, n_ids - 1, size=int(flip.sum()))
            other += other >= labels[flip]
            labels[flip] = other
        yield feats, labels


def generate(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """The whole dataset in memory: features float32 (N, D), labels int64 (N,)."""
    blocks = list(generate_blocks(spec))
    return np.concatenate([f for f, _ in blocks]), np.concatenate([lb for _, lb in blocks])


def generate_member(spec: SyntheticSpec, member: int) -> tuple[np.ndarray, np.ndarray]:
    """Committee member ``member`` in memory: features float32 (N, D), labels int64 (N,)."""
    blocks = list(generate_member_blocks(spec, member))
    return np.concatenate([f for f, _ in blocks]), np.concatenate([lb for _, lb in blocks])
