"""Segmentation networks for fine-tuning.

- ``swin_unetr``: MONAI's SwinUNETR as it is (its ``swinViT`` is the pretrained encoder),
  so its state dict is MONAI's and a MONAI bundle can rebuild it.
- ``cnn_unet``: a U-Net style decoder over the registered ``cnn`` encoder (``encoder``
  attribute; ``forward(x) -> list[Tensor]`` fine to coarse, ``out_channels`` per level)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets import SwinUNETR
from torch import Tensor, nn

from medssl.models.registry import ENCODERS, NETWORKS


@NETWORKS.register("swin_unetr")
def build_swin_unetr(
    in_channels: int = 1,
    out_channels: int = 2,
    feature_size: int = 48,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    drop_rate: float = 0.0,
    use_checkpoint: bool = False,
    norm_name: str = "instance",
) -> nn.Module:
    """SwinUNETR; input spatial sizes must be multiples of 32. (B, C, X, Y, Z) -> logits.

    ``norm_name="batch"`` lets 32^3 crops train (instance norm needs > 1 voxel at 1/32)."""
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        drop_rate=drop_rate,
        use_checkpoint=use_checkpoint,
        norm_name=norm_name,
        spatial_dims=3,
    )


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        Convolution(3, c_in, c_out, kernel_size=3, norm="instance", act="leakyrelu"),
        Convolution(3, c_out, c_out, kernel_size=3, norm="instance", act="leakyrelu"),
    )


class CNNUNet(nn.Module):
    """U-Net decoder over an encoder's multi-scale features.

    (B, C, X, Y, Z) -> logits (B, out_channels, X, Y, Z). Each decoder step resizes the
    coarser map to the skip's size (trilinear), concatenates and convolves, so it works
    with any encoder stride pattern. (A full-resolution block fed the raw input as a skip
    was tried: on 32^3 phantoms it learned intensity shortcuts and lost the liver.)"""

    def __init__(self, encoder: nn.Module, out_channels: int, decoder_channels: Sequence[int] | None = None):
        super().__init__()
        self.encoder = encoder
        enc_ch = list(encoder.out_channels)
        dec_ch = list(decoder_channels) if decoder_channels else enc_ch[:-1]
        if len(dec_ch) != len(enc_ch) - 1:
            raise ValueError(f"decoder_channels needs {len(enc_ch) - 1} entries, got {len(dec_ch)}")
        self.blocks = nn.ModuleList()
        coarse = enc_ch[-1]
        for skip, ch in zip(reversed(enc_ch[:-1]), reversed(dec_ch)):
            self.blocks.append(_conv_block(coarse + skip, ch))
            coarse = ch
        self.head = nn.Conv3d(coarse, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder(x)  # fine -> coarse, each (B, C_i, X_i, Y_i, Z_i)
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        if y.shape[2:] != x.shape[2:]:
            y = F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)
        return self.head(y)


@NETWORKS.register("cnn_unet")
def build_cnn_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    encoder: str = "cnn",
    encoder_kwargs: dict[str, Any] | None = None,
    decoder_channels: Sequence[int] | None = None,
) -> nn.Module:
    enc = ENCODERS.build(encoder, in_channels=in_channels, **(encoder_kwargs or {}))
    return CNNUNet(enc, out_channels, decoder_channels)
