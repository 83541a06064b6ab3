"""Reconstruction losses counted on masked voxels only (as in MAE)."""

from __future__ import annotations

from torch import Tensor


def _masked_mean(err: Tensor, mask: Tensor) -> Tensor:
    if err.shape != mask.shape:
        mask = mask.expand_as(err)
    weight = mask.float()
    return (err.float() * weight).sum() / weight.sum().clamp_min(1.0)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| over voxels where ``mask`` is true.

    pred, target: (B, C, X, Y, Z); mask: bool, broadcastable to them (usually (B, 1, X, Y, Z)).
    An all-false mask gives 0 (not NaN)."""
    return _masked_mean((pred.float() - target.float()).abs(), mask)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean (pred - target)^2 over voxels where ``mask`` is true; shapes as :func:`masked_l1`."""
    return _masked_mean((pred.float() - target.float()).square(), mask)


RECONSTRUCTION_LOSSES = {"l1": masked_l1, "mse": masked_mse}
