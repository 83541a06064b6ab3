"""A plain MONAI U-Net: the from-scratch baseline and the smallest network for tests."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn

from medssl.models.registry import NETWORKS


@NETWORKS.register("unet")
def build_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    channels: tuple[int, ...] = (8, 16, 32),
    strides: tuple[int, ...] = (2, 2),
    num_res_units: int = 1,
) -> nn.Module:
    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
    )
