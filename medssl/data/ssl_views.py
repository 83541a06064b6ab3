"""Batched, on-device view generation and masking for self-supervised pretraining.

Every random step is split in two: ``sample_*`` draws parameters from a ``torch.Generator``
on the data's device (deterministic for a given seed), and a pure ``apply_*`` function
applies them to the whole batch at once. No Python loop runs per sample.
Shapes are channel-first: images (B, C, X, Y, Z)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _rand(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device)


# --- crops with controlled overlap -------------------------------------------------------


def sample_view_offsets(n: int, max_shift: int, gen: torch.Generator) -> Tensor:
    """(n, 3) integer offsets in [0, max_shift] per axis."""
    return (_rand((n, 3), gen) * (max_shift + 1)).long().clamp_max(max_shift)


def apply_crop(region: Tensor, offsets: Tensor, size: int) -> Tensor:
    """Crop ``size``^3 from each sample of ``region`` (B, C, R, R, R) at ``offsets`` (B, 3).

    Two views of one region with offsets in [0, s] overlap by at least (size - s) / size
    per axis. Returns (B, C, size, size, size)."""
    b = region.shape[0]
    ar = torch.arange(size, device=region.device)
    ix, iy, iz = (offsets[:, d, None] + ar for d in range(3))  # [B, size] each
    bi = torch.arange(b, device=region.device)[:, None, None, None]
    out = region.permute(0, 2, 3, 4, 1)[bi, ix[:, :, None, None], iy[:, None, :, None], iz[:, None, None, :]]
    return out.permute(0, 4, 1, 2, 3).contiguous()  # [B, C, size, size, size]


# --- photometric / geometric augmentation ------------------------------------------------


def _by_group(x: Tensor, groups: Tensor, n_groups: int, fn) -> Tensor:  # noqa: ANN001
    """``fn(x[groups == g], g)`` for every group g present (samples of group 0 are kept as
    they are): each sample is transformed once, by its own group's operation."""
    present = torch.bincount(groups, minlength=n_groups).tolist()
    if present[0] == x.shape[0]:
        return x
    out = x.clone()
    for g in range(1, n_groups):
        if present[g]:
            sel = groups == g
            out[sel] = fn(x[sel], g)
    return out


def apply_flips(x: Tensor, flips: Tensor) -> Tensor:
    """Flip sample i along spatial axis d where ``flips[i, d]`` (bool (B, 3)) is true.

    Samples are grouped by their combination of flipped axes; each is flipped once."""
    code = (flips.long() * torch.tensor([1, 2, 4], device=flips.device)).sum(1)  # [B] in 0..7
    return _by_group(x, code, 8, lambda part, c: part.flip([2 + d for d in range(3) if c >> d & 1]))


def apply_intensity(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """x * scale + shift per sample; scale, shift: (B,)."""
    return x * scale.view(-1, 1, 1, 1, 1) + shift.view(-1, 1, 1, 1, 1)


def apply_noise(x: Tensor, std: Tensor, gen: torch.Generator) -> Tensor:
    """Add Gaussian noise with a per-sample standard deviation ``std`` (B,)."""
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x + noise * std.view(-1, 1, 1, 1, 1).to(x.dtype)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (B,) in voxels; sigma 0 keeps x.

    One grouped convolution per axis for the whole batch; kernel width 2 * radius + 1."""
    b, c = x.shape[:2]
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0).to(x.dtype)  # [B*C, K]
    y = x.reshape(1, b * c, *x.shape[2:])
    for d in range(3):
        shape = [b * c, 1, 1, 1, 1]
        shape[2 + d] = 2 * radius + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - d)] = pad[2 * (2 - d) + 1] = radius
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.view(shape), groups=b * c)
    return y.reshape(x.shape)


def sample_intensity_curves(n: int, prob: float, gen: torch.Generator, points: int = 64,
                            device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Models Genesis' non-linear intensity transformation, one curve per view: a cubic
    Bezier through (0, 0) and (1, 1) with two random control points, rising in half the
    views and mirrored to fall from 1 to 0 in the other half (bright becomes dark, as a lesion
    is bright in one contrast phase and dark in another). Returns (applied (n,) bool,
    xs (n, points) ascending, ys (n, points))."""
    applied = torch.rand(n, generator=gen, device=device) < prob
    ctrl = torch.rand(n, 2, 2, generator=gen, device=device)  # (view, control point, x|y)
    falling = torch.rand(n, generator=gen, device=device) < 0.5
    t = torch.linspace(0, 1, points, device=device)
    b1, b2, b3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
    xs = b1 * ctrl[:, 0, :1] + b2 * ctrl[:, 1, :1] + b3
    ys = b1 * ctrl[:, 0, 1:] + b2 * ctrl[:, 1, 1:] + b3
    xs, ys = xs.sort(dim=1).values, ys.sort(dim=1).values
    ys = torch.where(falling[:, None], ys.flip(1), ys)
    return applied, xs, ys


def apply_intensity_curves(x: Tensor, applied: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """Map each view's intensities in [0, 1] through its curve (piecewise linear between the
    curve's points); values outside [0, 1] keep their distance from it; views not
    ``applied`` are returned as they were."""
    if not bool(applied.any()):
        return x
    n = x.shape[0]
    flat = x.reshape(n, -1)
    inside = flat.clamp(0, 1)
    xs, ys = xs.to(flat.dtype), ys.to(flat.dtype)
    idx = torch.searchsorted(xs.contiguous(), inside.contiguous()).clamp(1, xs.shape[1] - 1)
    x0, x1 = xs.gather(1, idx - 1), xs.gather(1, idx)
    y0, y1 = ys.gather(1, idx - 1), ys.gather(1, idx)
    w = ((inside - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)
    mapped = y0 + w * (y1 - y0) + (flat - inside)
    return torch.where(applied[:, None], mapped, flat).reshape(x.shape)


def apply_rotation(x: Tensor, k: Tensor) -> Tensor:
    """Rotate sample i by ``k[i]`` x 90 degrees in the (X, Y) plane (cubic crops).

    k: (B,) integers in 0..3. Each sample is rotated once, by its own k."""
    return _by_group(x, k.long(), 4, lambda part, r: torch.rot90(part, r, dims=(2, 3)))


# --- masking ------------------------------------------------------------------------------


def sample_boxes(n: int, n_boxes: int, size: int, min_size: int, max_size: int, gen: torch.Generator) -> Tensor:
    """(n, n_boxes, 6) boxes ``x0, y0, z0, x1, y1, z1`` (end-exclusive) inside a size^3 crop."""
    hi = min(max_size, size)
    lo = min(min_size, hi)
    extent = lo + (_rand((n, n_boxes, 3), gen) * (hi - lo + 1)).long().clamp_max(hi - lo)
    start = (_rand((n, n_boxes, 3), gen) * (size - extent + 1).float()).long()
    return torch.cat([start, start + extent], dim=-1)


def apply_box_mask(image: Tensor, boxes: Tensor, fill: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
    """Mask the union of ``boxes`` (B, K, 6) in ``image`` (B, C, X, Y, Z).

    Returns (masked image, mask (B, 1, X, Y, Z) bool, true inside a box). ``fill`` is a
    scalar or a tensor broadcastable to the image (e.g. noise)."""
    sx, sy, sz = image.shape[2:]
    dev = image.device
    cx = torch.arange(sx, device=dev).view(1, 1, -1, 1, 1)
    cy = torch.arange(sy, device=dev).view(1, 1, 1, -1, 1)
    cz = torch.arange(sz, device=dev).view(1, 1, 1, 1, -1)
    mask = torch.zeros((image.shape[0], 1, sx, sy, sz), dtype=torch.bool, device=dev)
    for j in range(boxes.shape[1]):
        bx = boxes[:, j].view(-1, 6, 1, 1, 1)
        inside_x = (cx >= bx[:, 0:1]) & (cx < bx[:, 3:4])
        inside_y = (cy >= bx[:, 1:2]) & (cy < bx[:, 4:5])
        inside_z = (cz >= bx[:, 2:3]) & (cz < bx[:, 5:6])
        mask |= inside_x & inside_y & inside_z
    return torch.where(mask, torch.as_tensor(fill, dtype=image.dtype, device=dev), image), mask


def sample_grid_keep(n: int, grid: tuple[int, int, int], ratio: float, gen: torch.Generator) -> Tensor:
    """(n, gx, gy, gz) bool: exactly round(ratio * cells) cells per sample are masked (True)."""
    cells = math.prod(grid)
    n_mask = round(ratio * cells)
    order = _rand((n, cells), gen).argsort(dim=1)
    masked = order < n_mask
    return masked.view(n, *grid)


def apply_grid_mask(image: Tensor, cells: Tensor, patch: int, fill: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
    """Mask patch-grid ``cells`` (B, gx, gy, gz) bool of side ``patch`` voxels in ``image``.

    Returns (masked image, mask (B, 1, X, Y, Z) bool)."""
    mask = cells[:, None]
    for d in range(3):
        mask = mask.repeat_interleave(patch, dim=2 + d)
    mask = mask[:, :, : image.shape[2], : image.shape[3], : image.shape[4]]
    return torch.where(mask, torch.as_tensor(fill, dtype=image.dtype, device=image.device), image), mask


# --- the two augmented views of a batch of regions ----------------------------------------


def two_views(
    region: Tensor,
    size: int,
    gen: torch.Generator,
    *,
    flip_prob: float = 0.5,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
    noise_std: float = 0.02,
    blur_prob: float = 0.2,
    blur_sigma: float = 1.0,
) -> Tensor:
    """Two augmented ``size``^3 views of each region (B, C, R, R, R), R >= size.

    Each view: a random crop (offset up to R - size per axis), random flips, intensity
    scale/shift, Gaussian blur with probability ``blur_prob`` and Gaussian noise. Only the
    work that changes a view is done (no blur pass over unblurred views, no flip pass over
    unflipped ones); the random draws are the same either way.
    Returns (2B, C, size, size, size): rows 0..B-1 are view 1, rows B..2B-1 view 2."""
    b = region.shape[0]
    n = 2 * b
    max_shift = region.shape[2] - size
    both = torch.cat([region, region])
    x = apply_crop(both, sample_view_offsets(n, max_shift, gen), size) if max_shift > 0 else both
    x = apply_flips(x, _rand((n, 3), gen) < flip_prob)
    scale = 1 + (2 * _rand((n,), gen) - 1) * intensity_scale
    shift = (2 * _rand((n,), gen) - 1) * intensity_shift
    if intensity_scale or intensity_shift:
        x = apply_intensity(x, scale, shift)
    if blur_prob > 0 and blur_sigma > 0:
        sigma = torch.where(_rand((n,), gen) < blur_prob, _rand((n,), gen) * blur_sigma, torch.zeros(n, device=x.device))
        x = _by_group(x, (sigma > 0).long(), 2,
                      lambda part, _: gaussian_blur(part, sigma[sigma > 0], radius=max(1, math.ceil(2 * blur_sigma))))
    if noise_std > 0:
        x = apply_noise(x, _rand((n,), gen) * noise_std, gen)
    return x
