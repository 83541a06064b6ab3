"""The composite self-supervised task: one encoder, any weighted mix of inpainting,
contrastive and rotation heads. What the trainer runs and what ``export-encoder`` unpacks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medssl.data.ssl_views import apply_rotation, two_views
from medssl.errors import ConfigError
from medssl.models.encoders import build_encoder
from medssl.models.segmentation import unet_encoder, unet_for_encoder
from medssl.tasks.config import TasksConfig
from medssl.tasks.contrastive import ContrastiveTask
from medssl.tasks.inpaint import InpaintTask
from medssl.tasks.rotation import RotationTask
from medssl.tasks.spread import SpreadTask


class SSLTask(nn.Module):
    """Pretext tasks on a shared encoder.

    Batch: {"image": (B, C, R, R, R) float crops with R = crop_size + views.max_shift,
            "seed": int (seeds the on-device generator of this step's views and masks)}.
    Returns {"loss": weighted sum, "inpaint_l1" | "inpaint_mse", "contrastive", "rotation"}
    (detached, only for enabled tasks). Views (2 per crop) are ``crop_size``^3."""

    def __init__(self, encoder_spec: dict[str, Any], tasks: TasksConfig, crop_size: int, in_channels: int = 1):
        super().__init__()
        self.encoder_spec = dict(encoder_spec)
        unet = None
        if tasks.inpaint.weight > 0 and tasks.inpaint.decoder == "unet":
            unet = unet_for_encoder(self.encoder_spec, out_channels=in_channels, in_channels=in_channels)
            self.encoder = unet_encoder(unet)
        else:
            self.encoder = build_encoder({"in_channels": in_channels, **self.encoder_spec})
        self.cfg = tasks
        self.crop_size = crop_size
        if crop_size % self.encoder.strides[-1]:
            raise ConfigError(
                f"data.crop_size {crop_size} must be divisible by {self.encoder.strides[-1]} "
                f"for encoder '{encoder_spec.get('name')}'"
            )
        ch, strides = self.encoder.out_channels, self.encoder.strides
        self.inpaint = InpaintTask(tasks.inpaint, ch, strides, in_channels, unet) if tasks.inpaint.weight > 0 else None
        self.contrastive = ContrastiveTask(tasks.contrastive, ch) if tasks.contrastive.weight > 0 else None
        self.rotation = RotationTask(ch) if tasks.rotation.weight > 0 else None
        self.spread = SpreadTask(tasks.spread) if tasks.spread.weight > 0 else None
        if not (self.inpaint or self.contrastive or self.rotation):
            raise ConfigError("every pretext task has weight 0; enable at least one of tasks.inpaint/contrastive/rotation")
        self.inpaint_key = f"inpaint_{tasks.inpaint.loss}"

    def compile_parts(self) -> None:
        """``torch.compile`` the networks in place; view sampling (generators) stays eager."""
        for part in (self.encoder, self.inpaint, self.contrastive, self.rotation):
            if part is not None:
                part.compile()

    def _views(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor | None, torch.Generator]:
        region = batch["image"]
        gen = torch.Generator(device=region.device)
        gen.manual_seed(int(batch["seed"]))
        views = self.cfg.views
        x = two_views(
            region,
            self.crop_size,
            gen,
            flip_prob=views.flip_prob,
            intensity_scale=views.intensity_scale,
            intensity_shift=views.intensity_shift,
            noise_std=views.noise_std,
            blur_prob=views.blur_prob,
            blur_sigma=views.blur_sigma,
        )  # [2B, C, S, S, S]
        labels = None
        if self.rotation is not None:
            labels = torch.randint(0, 4, (x.shape[0],), generator=gen, device=x.device)
            x = apply_rotation(x, labels)
        if self.inpaint is not None:
            masked, mask = self.inpaint.mask(x, gen)
        else:
            masked, mask = x, torch.zeros_like(x[:, :1], dtype=torch.bool)
        return x, masked, mask, labels, gen

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        out, _ = self._run(batch)
        return out

    def _run(self, batch: dict[str, Any], inpaint_only: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return self.losses(self._views(batch), inpaint_only)

    def losses(self, views: tuple[Tensor, Tensor, Tensor, Tensor | None, torch.Generator],
               inpaint_only: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:  # fmt: skip
        """The forward pass on views already made by ``_views`` (benchmarks time the two apart)."""
        target, masked, mask, labels, gen = views
        features = self.encoder(masked)
        losses: dict[str, Tensor] = {}
        total = target.new_zeros((), dtype=torch.float32)
        tensors = {"input": target, "masked": masked}
        if self.inpaint is not None:
            res = self.inpaint(features, target, mask, masked)
            tensors["recon"] = res["recon"]
            total = total + self.cfg.inpaint.weight * res["inpaint"]
            losses[self.inpaint_key] = res["inpaint"].detach()
        if inpaint_only:  # previews: no collective (all_gather) may run on one rank alone
            return {"loss": total, **losses}, tensors
        if self.contrastive is not None:
            res = self.contrastive(features)
            total = total + self.cfg.contrastive.weight * res["contrastive"]
            losses["contrastive"] = res["contrastive"].detach()
        if self.spread is not None:
            res = self.spread(features, gen, mask if self.inpaint is not None else None)
            total = total + self.cfg.spread.weight * res["spread"]
            losses["spread"] = res["spread"].detach()
        if self.rotation is not None:
            res = self.rotation(features, labels)
            total = total + self.cfg.rotation.weight * res["rotation"]
            losses["rotation"] = res["rotation"].detach()
        return {"loss": total, **losses}, tensors

    @torch.no_grad()
    def preview(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """First view of the batch: {"input", "masked", "recon"?} as (X, Y, Z) float tensors."""
        _, tensors = self._run(batch, inpaint_only=True)
        return {k: v[0, 0].float() for k, v in tensors.items()}
