"""Variance-covariance regularisation of dense features (VICReg's two anti-collapse terms,
applied per voxel): keeps every channel's spread up and the channels decorrelated, so a
reconstruction objective cannot squeeze a stage onto a few directions."""

from __future__ import annotations

import torch
from torch import Tensor


def variance_covariance(features: Tensor, target_std: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """features (N, C): N samples (voxels) of C channels -> (variance term, covariance term).

    variance: mean over channels of relu(target_std - std_c); covariance: sum of squared
    off-diagonal covariances / C. Both 0 for decorrelated channels of std >= target_std."""
    x = features.float()
    n, c = x.shape
    x = x - x.mean(dim=0, keepdim=True)
    std = torch.sqrt(x.var(dim=0) + eps)
    var_term = torch.relu(target_std - std).mean()
    cov = x.T @ x / max(1, n - 1)  # [C, C]
    off = cov - torch.diag(torch.diagonal(cov))
    return var_term, off.square().sum() / c


def sample_voxels(feature: Tensor, n: int, gen: torch.Generator | None = None, where: Tensor | None = None) -> Tensor:
    """(B, C, X, Y, Z) -> (min(n, M), C): M voxels (those where ``where`` (B, 1, X, Y, Z) bool
    is true, else all) drawn without replacement."""
    c = feature.shape[1]
    flat = feature.transpose(0, 1).reshape(c, -1)  # [C, B*X*Y*Z]
    if where is not None:
        flat = flat[:, where.transpose(0, 1).reshape(-1)]
    m = flat.shape[1]
    if m <= n:
        return flat.T
    idx = torch.randperm(m, generator=gen, device=gen.device if gen is not None else feature.device)[:n]
    return flat[:, idx.to(feature.device)].T
