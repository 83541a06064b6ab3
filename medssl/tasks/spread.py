"""Feature-spread regulariser: VICReg variance + covariance terms on every encoder stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medssl.losses.spread import sample_voxels, variance_covariance
from medssl.tasks.config import SpreadConfig


class SpreadTask(nn.Module):
    """Features of N views (finest first) -> {"spread": mean over stages of var + cov_weight * cov}."""

    def __init__(self, cfg: SpreadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, features: Sequence[Tensor], gen: torch.Generator | None = None) -> dict[str, Tensor]:
        terms = []
        for f in features:
            var, cov = variance_covariance(sample_voxels(f, self.cfg.voxels, gen), self.cfg.target_std)
            terms.append(var + self.cfg.covariance * cov)
        return {"spread": torch.stack(terms).mean()}
