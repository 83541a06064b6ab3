"""Small heads on top of an encoder's multi-scale features (see medssl.models.encoders)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def _pool(feature: Tensor) -> Tensor:
    return feature.float().mean(dim=(2, 3, 4)).to(feature.dtype)  # [B, C]


class ProjectionHead(nn.Module):
    """Global-average-pooled deepest feature -> MLP -> (B, out_dim) for contrastive learning.

    The hidden layer is batch-normalised (as in SimCLR): pooled encoder features share a
    large common component at initialisation, and without centring the projections start
    (and stay) nearly identical."""

    def __init__(self, in_channels: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.mlp(_pool(features[-1]))


class RotationHead(nn.Module):
    """Pooled deepest feature -> logits over ``n_classes`` rotations, (B, n_classes)."""

    def __init__(self, in_channels: int, n_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, n_classes)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.fc(_pool(features[-1]))


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, factor: int, skip_channels: int | None, refine: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, kernel_size=factor, stride=factor)
        self.skip = nn.Conv3d(skip_channels, cout, 1) if skip_channels else None
        self.conv = nn.Sequential(
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            nn.InstanceNorm3d(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        ) if refine else nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.up(x)
        if self.skip is not None and skip is not None:
            x = x + self.skip(skip)
        return self.conv(x)


class ReconstructionDecoder(nn.Module):
    """Light decoder: deepest feature -> full-resolution image (B, out_channels, X, Y, Z).

    One transposed-conv stage per scale (widths halve from ``width``), each refined by a 3x3
    convolution except the last, at full resolution, which only upsamples before the 1x1
    output (that convolution cost as much as all the others together, in a head pretraining
    throws away; the reference's decoder has none at full resolution either). Optionally
    adds 1x1-projected encoder features as skips (``skips=True``; off by default so the
    encoder, not the skips, has to carry the context)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_channels: int = 1,
        width: int = 64,
        skips: bool = False,
    ) -> None:
        super().__init__()
        blocks = []
        cin = in_channels[-1]
        cout = width
        levels = list(range(len(strides) - 1, 0, -1))
        for lvl in levels:
            factor = strides[lvl] // strides[lvl - 1]
            blocks.append(_UpBlock(cin, cout, factor, in_channels[lvl - 1] if skips else None))
            cin, cout = cout, max(cout // 2, 8)
        blocks.append(_UpBlock(cin, cout, strides[0], None, refine=False))
        self.blocks = nn.ModuleList(blocks)
        self.levels = levels + [None]
        self.out = nn.Conv3d(cout, out_channels, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for block, lvl in zip(self.blocks, self.levels):
            x = block(x, features[lvl - 1] if lvl is not None else None)
        return self.out(x)
