"""3D encoders by name. Each returns multi-scale features for a segmentation decoder.

Contract of every encoder in ``ENCODERS``:
    forward(x: (B, C_in, X, Y, Z)) -> list[Tensor], finest first; feature i has shape
        (B, out_channels[i], X / strides[i], Y / strides[i], Z / strides[i]).
    out_channels: list[int]; strides: list[int] (downsampling factor of each feature).
    Input sizes must be divisible by strides[-1].

"swin": MONAI's Swin transformer exactly as ``SwinUNETR.swinViT`` builds it, so its
state_dict keys equal ``SwinUNETR.swinViT.*`` (``patch_embed.proj.weight``,
``layers1.0.blocks.0.attn.qkv.weight``, ...) and the public SSL release maps onto it.
"cnn": a light residual 3D CNN that trains on a CPU in tests.
"vit": MONAI's plain ViT (as in MONAI's own SSL tutorial), single-scale tokens at 4 depths."""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets.swin_unetr import SwinTransformer, WindowAttention
from torch import Tensor, nn

from medssl.errors import ConfigError
from medssl.models.registry import ENCODERS
from medssl.models.window_attention import chunked_window_attention


def _sdpa_window_attention(self: WindowAttention, x: Tensor, mask: Tensor | None) -> Tensor:
    """WindowAttention.forward through ``scaled_dot_product_attention`` on CUDA, with gradients.

    Same parameters and maths as MONAI's forward (relative position bias + shift mask as an
    additive bias); lets PyTorch pick a fused kernel in training too. Its fused kernels take
    4-D inputs, so with a shift mask the per-window bias is expanded to (B, H, N, N) there.

    On the CPU there is no fused kernel that gives the bias its gradient, so there the
    windows go through ``chunked_window_attention`` a few at a time (bitwise the same
    forward values, about three times faster with its backward at Swin's first stage). Under
    CPU autocast or attention dropout they take the plain maths instead: the windows get
    their own axis, (B/nW, nW, H, N, D), and the (nW, H, N, N) bias is added in place and
    broadcast over the samples (never copied per sample)."""
    b, n, c = x.shape
    h = self.num_heads
    qkv = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, D]
    index = self.relative_position_index[:n, :n].reshape(-1)
    bias = self.relative_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)  # [H, N, N]
    drop = self.attn_drop.p if self.training else 0.0
    if q.device.type == "cpu" and not drop and not torch.is_autocast_enabled("cpu"):
        out = chunked_window_attention(q, k, v, bias, mask, self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
    nw = 1 if mask is None else mask.shape[0]
    if mask is not None:
        bias = bias.unsqueeze(0) + mask.unsqueeze(1)  # [nW, H, N, N]
    if q.device.type == "cuda":
        if mask is not None:
            bias = bias.expand(b // nw, nw, h, n, n).reshape(b, h, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=self.scale)
    else:
        q, k, v = (t.reshape(b // nw, nw, h, n, -1) for t in (q, k, v))  # [B/nW, nW, H, N, D]
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1))  # [B/nW, nW, H, N, N]
        attn = attn.add_(bias.to(attn.dtype)).softmax(-1)
        out = torch.matmul(F.dropout(attn, drop) if drop else attn, v)
    out = out.reshape(b, h, n, -1)
    return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


def use_fused_attention(network: nn.Module) -> nn.Module:
    """The one switch for fused attention: Swin window attention through
    ``_sdpa_window_attention`` and MONAI blocks that offer it (ViT's ``SABlock``,
    ``use_flash_attention``) through ``scaled_dot_product_attention``. Same weights and maths,
    with or without gradients; idempotent. Returns ``network``."""
    for module in network.modules():
        if isinstance(module, WindowAttention):
            if getattr(module.forward, "__func__", None) is not _sdpa_window_attention:
                module.forward = types.MethodType(_sdpa_window_attention, module)
        elif hasattr(module, "use_flash_attention"):
            module.use_flash_attention = True
    return network


class SwinEncoder(SwinTransformer):
    """MONAI ``SwinTransformer`` configured as in SwinUNETR (window 7, patch 2, depths 2-2-2-2).

    Features: 5 maps at strides 2, 4, 8, 16, 32 with channels f, 2f, 4f, 8f, 16f
    (f = feature_size), layer-normalised like ``SwinUNETR.swinViT(x, normalize=True)``."""

    def __init__(
        self,
        in_channels: int = 1,
        feature_size: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        use_v2: bool = False,
        sdpa: bool = True,
        normalize: bool = True,
    ) -> None:
        if feature_size % 12 != 0 or not 12 <= feature_size <= 96:
            raise ValueError(f"swin feature_size must be a multiple of 12 in 12..96, got {feature_size}")
        super().__init__(
            in_chans=in_channels,
            embed_dim=feature_size,
            window_size=(window_size,) * 3,
            patch_size=(2, 2, 2),
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            drop_path_rate=drop_path_rate,
            use_checkpoint=use_checkpoint,
            spatial_dims=3,
            downsample="merging",
            use_v2=use_v2,
        )
        self.normalize = normalize
        self.out_channels = [feature_size * 2**i for i in range(5)]
        self.strides = [2, 4, 8, 16, 32]
        if sdpa:
            use_fused_attention(self)

    def proj_out(self, x: Tensor, normalize: bool = False) -> Tensor:
        """MONAI's channel layer norm, written with permute so einops is not needed."""
        if not normalize:
            return x
        x = x.permute(0, 2, 3, 4, 1)  # [B, X, Y, Z, C]
        x = F.layer_norm(x, [x.shape[-1]])
        return x.permute(0, 4, 1, 2, 3)

    def forward(self, x: Tensor, normalize: bool | None = None) -> list[Tensor]:
        return super().forward(x, self.normalize if normalize is None else normalize)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":  # keeps per-channel means, which a pooled (contrastive) head needs
        return nn.GroupNorm(max(1, channels // 8), channels)
    raise ValueError(f"unknown norm '{kind}'; choose group, instance or batch")


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout)
        self.skip = (
            nn.Identity() if cin == cout and stride == 1 else nn.Conv3d(cin, cout, 1, stride=stride, bias=False)
        )
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.skip(x))


class CNNEncoder(nn.Module):
    """Light residual 3D CNN: one strided residual stage per width in ``channels``.

    ``norm``: "group" (default; 8 channels per group), "instance" or "batch". Instance norm
    erases each channel's spatial mean, so a globally pooled head sees almost nothing.

    Features: len(channels) maps at strides 2, 4, 8, ... with ``channels`` channels
    (default (16, 32, 64, 128): ~0.9 M parameters; (8, 16, 32, 64): ~0.2 M)."""

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128), blocks: int = 1, norm: str = "group"
    ) -> None:
        super().__init__()
        chans = list(channels)
        stages = []
        cin = in_channels
        for cout in chans:
            layers = [_ResBlock(cin, cout, 2, norm)] + [_ResBlock(cout, cout, 1, norm) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = chans
        self.strides = [2 ** (i + 1) for i in range(len(chans))]

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ViTEncoder(nn.Module):
    """MONAI ``ViT`` as in MONAI's SSL tutorial (UNETR's encoder), parameter names under ``vit.``.

    Features: the token maps after 4 evenly spaced blocks (the last one layer-normalised),
    each (B, hidden_size, X/p, Y/p, Z/p) with p = patch_size; strides all p. ``img_size``
    is fixed at construction (set it to data.crop_size)."""

    def __init__(
        self,
        in_channels: int = 1,
        img_size: int = 96,
        patch_size: int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        dropout_rate: float = 0.0,
        sdpa: bool = True,
    ) -> None:
        super().__init__()
        from monai.networks.nets import ViT

        if img_size % patch_size:
            raise ValueError(f"vit img_size {img_size} must be divisible by patch_size {patch_size}")
        self.vit = ViT(in_channels, img_size, patch_size, hidden_size, mlp_dim, num_layers, num_heads,
                       proj_type="conv", dropout_rate=dropout_rate, spatial_dims=3)
        self.grid = img_size // patch_size
        self.taps = sorted({max(0, num_layers * (i + 1) // 4 - 1) for i in range(4)})
        self.out_channels = [hidden_size] * len(self.taps)
        self.strides = [patch_size] * len(self.taps)
        if sdpa:
            use_fused_attention(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        last, hidden = self.vit(x)
        tokens = [hidden[i] for i in self.taps[:-1]] + [last]  # [B, N, D] each
        g = x.shape[2] // self.strides[0], x.shape[3] // self.strides[0], x.shape[4] // self.strides[0]
        return [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], *g) for t in tokens]


@ENCODERS.register("swin")
def build_swin(**kwargs) -> nn.Module:
    return SwinEncoder(**kwargs)


@ENCODERS.register("cnn")
def build_cnn(**kwargs) -> nn.Module:
    return CNNEncoder(**kwargs)


@ENCODERS.register("vit")
def build_vit(**kwargs) -> nn.Module:
    return ViTEncoder(**kwargs)


def build_encoder(spec: dict) -> nn.Module:
    """Build from ``{"name": ..., **kwargs}``; unknown names raise ConfigError with a suggestion,
    bad keyword arguments raise ConfigError naming the encoder."""
    spec = dict(spec)
    name = spec.pop("name")
    factory = ENCODERS.get(name)
    try:
        return factory(**spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"encoder '{name}': {err}") from err
