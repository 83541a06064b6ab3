import pytest
import torch

from medssl.data import ssl_views as sv
from medssl.tasks.config import InpaintConfig
from medssl.tasks.inpaint import InpaintTask


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_apply_box_mask_exact_voxels():
    img = torch.ones(2, 1, 6, 6, 6)
    boxes = torch.tensor([[[0, 0, 0, 2, 3, 1]], [[4, 4, 4, 6, 6, 6]]])
    masked, mask = sv.apply_box_mask(img, boxes, fill=0.0)
    assert mask.shape == (2, 1, 6, 6, 6)
    assert mask[0].sum() == 2 * 3 * 1 and mask[1].sum() == 8
    assert mask[0, 0, :2, :3, :1].all() and mask[1, 0, 4:, 4:, 4:].all()
    assert (masked[mask] == 0).all() and (masked[~mask] == 1).all()


def test_grid_mask_ratio_exact_and_seeded():
    cells = sv.sample_grid_keep(3, (4, 4, 4), 0.25, _gen(1))
    assert (cells.flatten(1).sum(1) == 16).all()
    assert torch.equal(cells, sv.sample_grid_keep(3, (4, 4, 4), 0.25, _gen(1)))
    masked, mask = sv.apply_grid_mask(torch.ones(3, 1, 16, 16, 16), cells, 4)
    assert mask.float().mean().item() == pytest.approx(0.25)
    assert torch.equal(mask[:, 0, ::4, ::4, ::4], cells)


def test_sample_boxes_inside_crop():
    boxes = sv.sample_boxes(50, 3, 16, 2, 8, _gen(2))
    assert (boxes[..., :3] >= 0).all() and (boxes[..., 3:] <= 16).all()
    ext = boxes[..., 3:] - boxes[..., :3]
    assert (ext >= 2).all() and (ext <= 8).all()


def test_apply_crop_matches_slicing():
    region = torch.arange(2 * 8**3, dtype=torch.float32).view(2, 1, 8, 8, 8)
    offsets = torch.tensor([[0, 1, 2], [3, 0, 1]])
    out = sv.apply_crop(region, offsets, 5)
    assert torch.equal(out[0, 0], region[0, 0, 0:5, 1:6, 2:7])
    assert torch.equal(out[1, 0], region[1, 0, 3:8, 0:5, 1:6])


def test_flips_rotation_blur():
    x = torch.randn(2, 1, 4, 4, 4)
    flips = torch.tensor([[True, False, False], [False, False, True]])
    y = sv.apply_flips(x, flips)
    assert torch.equal(y[0], x[0].flip(1)) and torch.equal(y[1], x[1].flip(3))
    r = sv.apply_rotation(x, torch.tensor([1, 3]))
    assert torch.equal(r[0], torch.rot90(x[0], 1, dims=(1, 2))) and torch.equal(r[1], torch.rot90(x[1], 3, dims=(1, 2)))
    blurred = sv.gaussian_blur(x, torch.tensor([0.0, 1.0]), radius=2)
    assert torch.allclose(blurred[0], x[0], atol=1e-6)
    assert blurred[1].std() < x[1].std()
    const = torch.full((1, 1, 5, 5, 5), 0.7)
    assert torch.allclose(sv.gaussian_blur(const, torch.tensor([1.5]), 3), const, atol=1e-6)


def test_two_views_shapes_deterministic_and_overlapping():
    region = torch.rand(3, 1, 12, 12, 12)
    a = sv.two_views(region, 8, _gen(5))
    b = sv.two_views(region, 8, _gen(5))
    assert a.shape == (6, 1, 8, 8, 8) and torch.equal(a, b)
    assert not torch.equal(a, sv.two_views(region, 8, _gen(6)))
    plain = sv.two_views(region, 8, _gen(5), flip_prob=0, intensity_scale=0, intensity_shift=0,
                         noise_std=0, blur_prob=0)
    assert torch.equal(plain[0, 0, :4, :4, :4], plain[0, 0, :4, :4, :4])  # shapes sane
    offsets_ok = any(torch.equal(plain[0, 0], region[0, 0, i:i + 8, j:j + 8, k:k + 8])
                     for i in range(5) for j in range(5) for k in range(5))
    assert offsets_ok


def test_intensity_curves_run_from_0_to_1_rise_or_fall_and_skip_unpicked_views():
    gen = torch.Generator().manual_seed(0)
    applied, xs, ys = sv.sample_intensity_curves(400, 0.5, gen)
    assert 120 < int(applied.sum()) < 280
    assert torch.allclose(xs[:, 0], torch.zeros(400)) and torch.allclose(xs[:, -1], torch.ones(400))
    assert (xs.diff(dim=1) >= 0).all()
    rising, falling = (ys.diff(dim=1) >= 0).all(dim=1), (ys.diff(dim=1) <= 0).all(dim=1)
    assert 120 < int(rising.sum()) < 280 and bool((rising ^ falling).all())
    x = torch.rand(400, 1, 4, 4, 4) * 1.2 - 0.1  # some values outside [0, 1]
    y = sv.apply_intensity_curves(x, applied, xs, ys)
    assert torch.equal(y[~applied], x[~applied])
    outside = (x > 1) & applied[:, None, None, None, None]
    end = ys[:, -1].reshape(-1, 1, 1, 1, 1).expand_as(x)  # what 1 maps to: 1 on a rising curve, 0 on a falling one
    assert torch.allclose(y[outside] - end[outside], x[outside] - 1, atol=1e-5)
    ident = sv.apply_intensity_curves(x, torch.ones(400, dtype=torch.bool), torch.linspace(0, 1, 64).expand(400, 64),
                                      torch.linspace(0, 1, 64).expand(400, 64))
    assert torch.allclose(ident, x, atol=1e-6)


def test_inpaint_with_intensity_curves_keeps_the_target_and_changes_what_the_encoder_sees():
    task = InpaintTask(InpaintConfig(decoder="light", skips="none", intensity_curve=1.0), [8, 16], [2, 2])
    x = torch.rand(4, 1, 16, 16, 16)
    masked, mask = task.mask(x, torch.Generator().manual_seed(1))
    visible = ~mask.expand_as(x)
    assert not torch.allclose(masked[visible], x[visible])
    plain = InpaintTask(InpaintConfig(decoder="light", skips="none"), [8, 16], [2, 2])
    masked0, mask0 = plain.mask(x, torch.Generator().manual_seed(1))
    assert torch.equal(masked0[~mask0.expand_as(x)], x[~mask0.expand_as(x)])
