"""Feature-spread regulariser: VICReg variance + covariance terms on every encoder stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medssl.losses.spread import sample_voxels, variance_covariance
from medssl.tasks.config import SpreadConfig
from medssl.tasks.inpaint import level_mask


class SpreadTask(nn.Module):
    """Features of N views (finest first) -> {"spread": mean over stages of var + cov_weight * cov}.

    With ``mask`` (N, 1, X, Y, Z) bool (true = hidden from the encoder), only voxels the
    encoder saw are used: masked regions are constant input, and asking them to spread
    fights the reconstruction instead of keeping the seen content's features diverse."""

    def __init__(self, cfg: SpreadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, features: Sequence[Tensor], gen: torch.Generator | None = None,
                mask: Tensor | None = None) -> dict[str, Tensor]:
        terms = []
        for f in features:
            seen = None
            if mask is not None and self.cfg.visible_only:
                seen = ~level_mask(mask, f.shape[2:])
                if int(seen.sum()) < 16:
                    seen = None
            var, cov = variance_covariance(sample_voxels(f, self.cfg.voxels, gen, seen), self.cfg.target_std)
            terms.append(var + self.cfg.covariance * cov)
        return {"spread": torch.stack(terms).mean()}
