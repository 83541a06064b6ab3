"""Representation-collapse diagnostics for encoders: per-stage effective rank and feature
spread on a fixed probe batch (as DINOv2-3D-Med logs during pretraining).

Effective rank here is the participation ratio of the channel covariance over voxels,
``(sum l)^2 / sum l^2`` for its eigenvalues ``l``: about C for white-noise features with C
channels, 1 when every voxel's feature vector lies on one line."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def effective_rank(features: Tensor, max_samples: int = 65536) -> float:
    """features (B, C, ...) -> participation ratio of the C x C covariance over all voxels.

    Voxels are subsampled evenly to ``max_samples``. Constant features give 0."""
    c = features.shape[1]
    x = features.detach().float().transpose(0, 1).reshape(c, -1)  # [C, N]
    if x.shape[1] > max_samples:
        x = x[:, :: -(-x.shape[1] // max_samples)]
    x = x - x.mean(dim=1, keepdim=True)
    cov = x @ x.T / max(1, x.shape[1] - 1)  # [C, C]
    trace = torch.diagonal(cov).sum()
    frob2 = (cov * cov).sum()  # = sum of squared eigenvalues (cov is symmetric)
    if frob2 <= 0:
        return 0.0
    return float(trace * trace / frob2)


def feature_std(features: Tensor) -> float:
    """Mean over channels of each channel's standard deviation over voxels and samples."""
    c = features.shape[1]
    x = features.detach().float().transpose(0, 1).reshape(c, -1)
    return float(x.std(dim=1).mean())


@torch.no_grad()
def stage_stats(encoder: nn.Module, probe: Tensor) -> list[dict[str, float]]:
    """Run ``encoder`` (features finest first) on ``probe`` (B, C, X, Y, Z) in eval mode.

    Returns one ``{"rank", "std", "channels"}`` per stage; the encoder's mode is restored."""
    was_training = encoder.training
    encoder.eval()
    try:
        feats: Sequence[Tensor] = encoder(probe)
    finally:
        encoder.train(was_training)
    return [{"rank": effective_rank(f), "std": feature_std(f), "channels": int(f.shape[1])} for f in feats]


def collapsed_stages(now: Sequence[dict[str, float]], start: Sequence[dict[str, float]],
                     tolerance: float = 1.0) -> list[int]:
    """Indices of stages whose rank fell below ``tolerance`` x their value at ``start``."""
    return [i for i, (a, b) in enumerate(zip(now, start)) if a["rank"] < tolerance * b["rank"]]
