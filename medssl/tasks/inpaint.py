"""Masked volume inpainting (masked image modelling): mask views on the device, reconstruct
the masked voxels through a decoder, score only those voxels (as MAE does).

Two decoders: "unet" reconstructs through the fine-tuning U-Net itself with learned mask
tokens in its skips (the decoder can then be transferred); "light" is a small
transposed-conv decoder over the encoder's features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.data.ssl_views import (
    apply_box_mask,
    apply_grid_mask,
    apply_intensity_curves,
    sample_boxes,
    sample_grid_keep,
    sample_intensity_curves,
)
from medssl.losses import RECONSTRUCTION_LOSSES
from medssl.models.heads import ReconstructionDecoder
from medssl.models.segmentation import CNNUNet, unet_decode, unet_skips
from medssl.tasks.config import InpaintConfig


def level_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """mask (N, 1, X, Y, Z) bool -> (N, 1, *size) bool: a coarse voxel is masked when most of
    the voxels it covers are (exact when the mask's patch is a multiple of the stride)."""
    if tuple(mask.shape[2:]) == tuple(size):
        return mask
    return F.adaptive_avg_pool3d(mask.float(), tuple(size)) > 0.5


class MaskedUNetDecoder(nn.Module):
    """The decoder half of a U-Net whose skip features are replaced at masked positions by
    one learned token per level (SparK-style densifying), so masked content can only come
    through the encoder's deep features.

    ``net``: a ``cnn_unet`` / ``SwinUNETR`` with ``out_channels`` = image channels; it is
    registered here, its encoder is shared with the SSL task. ``skip_channels``: channels of
    each skip, finest first. ``tokens=False`` keeps the plain skips (for comparison)."""

    def __init__(self, net: nn.Module, skip_channels: Sequence[int], tokens: bool = True) -> None:
        super().__init__()
        self.network = net
        self.tokens = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in skip_channels]) if tokens else None

    def forward(self, features: Sequence[Tensor], masked: Tensor, mask: Tensor) -> Tensor:
        skips, bottleneck = unet_skips(self.network, masked, features)
        if self.tokens is not None:
            skips = [torch.where(level_mask(mask, s.shape[2:]), tok.view(1, -1, 1, 1, 1).to(s.dtype), s)
                     for s, tok in zip(skips, self.tokens)]
        return unet_decode(self.network, skips, bottleneck, masked.shape[2:])


class InpaintTask(nn.Module):
    """Holds the decoder; ``mask`` hides part of each view, ``forward`` scores the reconstruction.

    With ``decoder="unet"`` pass the U-Net (``unet``) whose encoder the SSL task trains."""

    def __init__(self, cfg: InpaintConfig, out_channels: Sequence[int], strides: Sequence[int],
                 in_channels: int = 1, unet: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.decoder == "unet":
            if unet is None:
                raise ValueError("decoder 'unet' needs the U-Net")
            self.decoder: nn.Module = MaskedUNetDecoder(unet, _skip_channels(unet, in_channels),
                                                        tokens=cfg.skips == "mask_token")
        else:
            self.decoder = ReconstructionDecoder(out_channels, strides, out_channels=in_channels,
                                                 width=cfg.decoder_width, skips=cfg.skips == "plain")
        self.loss_fn = RECONSTRUCTION_LOSSES[cfg.loss]

    def mask(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """x (N, C, S, S, S) -> (masked x, mask (N, 1, S, S, S) bool); with
        ``intensity_curve`` the visible voxels are the curve-mapped ones (the target stays ``x``)."""
        cfg = self.cfg
        if cfg.intensity_curve > 0:
            x = apply_intensity_curves(x, *sample_intensity_curves(x.shape[0], cfg.intensity_curve, gen,
                                                                   device=x.device))
        fill: Tensor | float = 0.0
        if cfg.fill == "noise":
            fill = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        if cfg.mask == "grid":
            grid = tuple(-(-s // cfg.patch_size) for s in x.shape[2:])
            cells = sample_grid_keep(x.shape[0], grid, cfg.ratio, gen)  # type: ignore[arg-type]
            return apply_grid_mask(x, cells, cfg.patch_size, fill)
        boxes = sample_boxes(x.shape[0], cfg.n_boxes, x.shape[2], cfg.box_min, cfg.box_max, gen)
        return apply_box_mask(x, boxes, fill)

    def forward(self, features: Sequence[Tensor], target: Tensor, mask: Tensor,
                masked: Tensor | None = None) -> dict[str, Tensor]:
        if isinstance(self.decoder, MaskedUNetDecoder):
            recon = self.decoder(features, masked if masked is not None else target, mask)
        else:
            recon = self.decoder(features)  # [N, C, S, S, S]
        loss = self.loss_fn(recon, target, mask)
        return {"inpaint": loss, "recon": recon}


def _skip_channels(unet: nn.Module, in_channels: int) -> list[int]:
    """Channels of each skip of :func:`unet_skips`, finest first."""
    if isinstance(unet, CNNUNet):
        return list(unet.encoder.out_channels[:-1])
    f = int(unet.swinViT.out_channels[0])  # SwinUNETR: encoder1..4 and hidden[3]
    return [f, f, 2 * f, 4 * f, 8 * f]
