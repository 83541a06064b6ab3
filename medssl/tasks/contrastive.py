"""Contrastive pretext task: NT-Xent between the two views of each crop."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from medssl.losses import gather_with_grad, nt_xent
from medssl.models.heads import ProjectionHead
from medssl.tasks.config import ContrastiveConfig


class ContrastiveTask(nn.Module):
    """Features of 2B views (view 1 rows first) -> {"contrastive": scalar}."""

    def __init__(self, cfg: ContrastiveConfig, out_channels: Sequence[int]):
        super().__init__()
        self.cfg = cfg
        self.head = ProjectionHead(out_channels[-1], cfg.hidden_dim, cfg.proj_dim)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        z = self.head(features)  # [2B, P]
        z1, z2 = z.chunk(2)
        if self.cfg.gather:
            bank1, offset = gather_with_grad(z1)
            bank2, _ = gather_with_grad(z2)
            loss = nt_xent(z1, z2, self.cfg.temperature, bank1=bank1, bank2=bank2, offset=offset)
        else:
            loss = nt_xent(z1, z2, self.cfg.temperature)
        return {"contrastive": loss}
