"""Rotation prediction (Tang et al. 2022): which of 4 X-Y rotations a view received."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from medssl.models.heads import RotationHead


class RotationTask(nn.Module):
    """Features of N views + their rotation labels (N,) in 0..3 -> {"rotation": CE scalar}."""

    def __init__(self, out_channels: Sequence[int]):
        super().__init__()
        self.head = RotationHead(out_channels[-1], 4)

    def forward(self, features: Sequence[Tensor], labels: Tensor) -> dict[str, Tensor]:
        return {"rotation": F.cross_entropy(self.head(features).float(), labels)}
