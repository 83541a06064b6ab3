"""The batched views do only the work they need and give what the earlier whole-batch
versions gave: the same flips, rotations and blurs, the same views for a seed."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.data import ssl_views as sv


def _old_flips(x, flips):
    for d in range(3):
        x = torch.where(flips[:, d].view(-1, 1, 1, 1, 1), x.flip(2 + d), x)
    return x


def _old_rotation(x, k):
    rots = torch.stack([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])
    return rots[k, torch.arange(x.shape[0])]


def _old_two_views(region, size, gen, *, flip_prob, intensity_scale, intensity_shift, noise_std, blur_prob, blur_sigma):
    b = region.shape[0]
    n = 2 * b
    max_shift = region.shape[2] - size
    both = torch.cat([region, region])
    x = sv.apply_crop(both, sv.sample_view_offsets(n, max_shift, gen), size) if max_shift > 0 else both
    x = _old_flips(x, sv._rand((n, 3), gen) < flip_prob)
    scale = 1 + (2 * sv._rand((n,), gen) - 1) * intensity_scale
    shift = (2 * sv._rand((n,), gen) - 1) * intensity_shift
    x = sv.apply_intensity(x, scale, shift)
    if blur_prob > 0 and blur_sigma > 0:
        sigma = torch.where(sv._rand((n,), gen) < blur_prob, sv._rand((n,), gen) * blur_sigma, torch.zeros(n))
        x = sv.gaussian_blur(x, sigma, radius=max(1, math.ceil(2 * blur_sigma)))
    if noise_std > 0:
        x = sv.apply_noise(x, sv._rand((n,), gen) * noise_std, gen)
    return x


def test_flips_by_index_equal_the_whole_batch_flips():
    x = torch.randn(16, 2, 5, 6, 7)
    combos = torch.tensor([[(c >> d) & 1 for d in range(3)] for c in range(8)] * 2, dtype=torch.bool)
    assert torch.equal(sv.apply_flips(x, combos), _old_flips(x, combos))
    assert sv.apply_flips(x, torch.zeros(16, 3, dtype=torch.bool)) is x  # nothing to flip: no copy


def test_rotation_by_index_equals_picking_from_all_four():
    x = torch.randn(12, 1, 6, 6, 4)
    k = torch.arange(12) % 4
    assert torch.equal(sv.apply_rotation(x, k), _old_rotation(x, k))
    assert torch.equal(sv.apply_rotation(x, k.flip(0)), _old_rotation(x, k.flip(0)))


@pytest.mark.parametrize("views", [
    dict(flip_prob=0.5, intensity_scale=0.1, intensity_shift=0.1, noise_std=0.02, blur_prob=0.2, blur_sigma=1.0),
    dict(flip_prob=0.0, intensity_scale=0.0, intensity_shift=0.0, noise_std=0.0, blur_prob=0.0, blur_sigma=0.0),
    dict(flip_prob=1.0, intensity_scale=0.0, intensity_shift=0.2, noise_std=0.0, blur_prob=1.0, blur_sigma=1.5),
])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_two_views_equal_the_whole_batch_version_for_a_seed(views, seed):
    region = torch.rand(3, 1, 14, 14, 14)
    new = sv.two_views(region, 12, torch.Generator().manual_seed(seed), **views)
    old = _old_two_views(region, 12, torch.Generator().manual_seed(seed), **views)
    assert torch.allclose(new, old, atol=1e-6)
