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

from medssl.models.encoders import SwinEncoder
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
        return self.decode(self.encoder(x), x.shape[2:])

    def decode(self, feats: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """Encoder features (fine -> coarse, each (B, C_i, X_i, Y_i, Z_i)) -> logits at ``size``."""
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        if tuple(y.shape[2:]) != tuple(size):
            y = F.interpolate(y, size=tuple(size), mode="trilinear", align_corners=False)
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


# --- the U-Net as skips + bottleneck, for masked pretraining of the whole network -----------
# A masked-image-modelling task replaces the skip features at masked positions with learned
# tokens, so the decoder cannot copy what the encoder saw next to a masked block; the
# pretrained decoder then transfers into fine-tuning with the encoder (Models Genesis).


def unet_skips(net: nn.Module, x: Tensor, features: Sequence[Tensor] | None = None) -> tuple[list[Tensor], Tensor]:
    """(skips finest first, bottleneck) of a ``cnn_unet`` or MONAI ``SwinUNETR`` for input x.

    ``features``: the encoder's output for ``x`` when already computed (it is not rerun)."""
    if isinstance(net, CNNUNet):
        feats = list(features) if features is not None else net.encoder(x)
        return list(feats[:-1]), feats[-1]
    if isinstance(net, SwinUNETR):
        h = list(features) if features is not None else net.swinViT(x, net.normalize)
        skips = [net.encoder1(x), net.encoder2(h[0]), net.encoder3(h[1]), net.encoder4(h[2]), h[3]]
        return skips, net.encoder10(h[4])
    raise TypeError(f"no U-Net skip layout known for {type(net).__name__}")


def unet_decode(net: nn.Module, skips: Sequence[Tensor], bottleneck: Tensor, size: Sequence[int]) -> Tensor:
    """The decoder half of :func:`unet_skips`: logits (B, out_channels, *size)."""
    if isinstance(net, CNNUNet):
        return net.decode([*skips, bottleneck], size)
    if isinstance(net, SwinUNETR):
        y = net.decoder5(bottleneck, skips[4])
        for block, skip in zip((net.decoder4, net.decoder3, net.decoder2, net.decoder1), reversed(skips[:4])):
            y = block(y, skip)
        return net.out(y)
    raise TypeError(f"no U-Net decoder layout known for {type(net).__name__}")


def unet_encoder(net: nn.Module) -> nn.Module:
    """The encoder module inside a U-Net (``encoder`` or ``swinViT``)."""
    return net.encoder if isinstance(net, CNNUNet) else net.swinViT


def unet_for_encoder(encoder_spec: dict[str, Any], out_channels: int, in_channels: int = 1) -> nn.Module:
    """The fine-tuning U-Net over an encoder spec ``{"name", **kwargs}``: ``cnn`` -> ``cnn_unet``,
    ``swin`` -> ``swin_unetr`` (its ``swinViT`` replaced by medssl's SwinEncoder: same keys)."""
    spec = dict(encoder_spec)
    name = spec.pop("name")
    if name == "swin":
        keep = {k: spec[k] for k in ("feature_size", "depths", "num_heads") if k in spec}
        net = build_swin_unetr(in_channels=in_channels, out_channels=out_channels, **keep)
        net.swinViT = SwinEncoder(in_channels=in_channels, **spec)
        return net
    return build_cnn_unet(in_channels=in_channels, out_channels=out_channels, encoder=name, encoder_kwargs=spec)
