"""Masked volume inpainting: mask views on the device, reconstruct them with a light decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medssl.data.ssl_views import apply_box_mask, apply_grid_mask, sample_boxes, sample_grid_keep
from medssl.losses import RECONSTRUCTION_LOSSES
from medssl.models.heads import ReconstructionDecoder
from medssl.tasks.config import InpaintConfig


class InpaintTask(nn.Module):
    """Holds the decoder; ``mask`` hides part of each view, ``forward`` scores the reconstruction."""

    def __init__(self, cfg: InpaintConfig, out_channels: Sequence[int], strides: Sequence[int], in_channels: int = 1):
        super().__init__()
        self.cfg = cfg
        self.decoder = ReconstructionDecoder(
            out_channels, strides, out_channels=in_channels, width=cfg.decoder_width, skips=cfg.decoder_skips
        )
        self.loss_fn = RECONSTRUCTION_LOSSES[cfg.loss]

    def mask(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """x (N, C, S, S, S) -> (masked x, mask (N, 1, S, S, S) bool)."""
        cfg = self.cfg
        fill: Tensor | float = 0.0
        if cfg.fill == "noise":
            fill = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        if cfg.mask == "grid":
            grid = tuple(-(-s // cfg.patch_size) for s in x.shape[2:])
            cells = sample_grid_keep(x.shape[0], grid, cfg.ratio, gen)  # type: ignore[arg-type]
            return apply_grid_mask(x, cells, cfg.patch_size, fill)
        boxes = sample_boxes(x.shape[0], cfg.n_boxes, x.shape[2], cfg.box_min, cfg.box_max, gen)
        return apply_box_mask(x, boxes, fill)

    def forward(self, features: Sequence[Tensor], target: Tensor, mask: Tensor) -> dict[str, Tensor]:
        recon = self.decoder(features)  # [N, C, S, S, S]
        loss = self.loss_fn(recon, target, mask)
        return {"inpaint": loss, "recon": recon}
