"""Config of the pretext tasks (a section of the pretraining config)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from medssl.config import StrictModel


class ViewsConfig(StrictModel):
    """Two augmented views per crop, made on the training device."""

    max_shift: int = Field(8, ge=0)  # per-axis offset between views, voxels; overlap >= (crop - shift) / crop
    flip_prob: float = Field(0.5, ge=0, le=1)  # per axis
    intensity_scale: float = Field(0.1, ge=0, lt=1)  # x * U(1 - s, 1 + s)
    intensity_shift: float = Field(0.1, ge=0)  # + U(-s, s)
    noise_std: float = Field(0.02, ge=0)  # Gaussian noise, std ~ U(0, noise_std)
    blur_prob: float = Field(0.2, ge=0, le=1)
    blur_sigma: float = Field(1.0, ge=0)  # sigma ~ U(0, blur_sigma) voxels


class InpaintConfig(StrictModel):
    """Masked volume inpainting (masked image modelling): L1/MSE on masked voxels only.

    ``decoder``: "unet" reconstructs through the fine-tuning U-Net itself (so its decoder can
    transfer, Models Genesis style), "light" through a small transposed-conv decoder.
    ``skips``: what the decoder's skip connections carry at masked positions: "mask_token"
    (a learned token per level, so the decoder cannot copy around the encoder), "plain"
    (the encoder's features there; lets shallow stages shortcut), "none" (light decoder only)."""

    renamed: ClassVar[dict[str, str]] = {"decoder_skips": "skips (none | plain | mask_token)"}

    weight: float = Field(1.0, ge=0)  # 0 disables the task
    mask: Literal["grid", "boxes"] = "grid"
    ratio: float = Field(0.75, gt=0, lt=1)  # grid: fraction of cells masked
    patch_size: int = Field(8, ge=1)  # grid: cell side, voxels
    n_boxes: int = Field(4, ge=1)  # boxes: how many per view
    box_min: int = Field(8, ge=1)  # boxes: side range, voxels
    box_max: int = Field(24, ge=1)
    fill: Literal["zero", "noise"] = "zero"  # what masked voxels hold
    loss: Literal["l1", "mse"] = "l1"
    decoder: Literal["light", "unet"] = "unet"
    skips: Literal["none", "plain", "mask_token"] = "mask_token"
    decoder_width: int = Field(64, ge=8)  # light decoder only
    # probability per view that the encoder sees its intensities through a random curve
    # (Models Genesis' non-linear transformation) while the loss still asks for the original
    # intensities: tissue must be recognised by context, not by its value alone
    intensity_curve: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _skips_fit_decoder(self) -> InpaintConfig:
        if self.decoder == "unet" and self.skips == "none":
            raise ValueError("decoder 'unet' always has skips: choose skips mask_token or plain")
        if self.decoder == "light" and self.skips == "mask_token":
            raise ValueError("skips 'mask_token' needs decoder 'unet'")
        return self


class ContrastiveConfig(StrictModel):
    """NT-Xent between the two views of each crop; negatives gathered across DDP ranks."""

    weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.1, gt=0)
    proj_dim: int = Field(128, ge=2)
    hidden_dim: int = Field(512, ge=2)
    gather: bool = True  # use other ranks' crops as negatives


class RotationConfig(StrictModel):
    """Predict which of 4 rotations (0/90/180/270 degrees in the X-Y plane) each view got."""

    weight: float = Field(0.0, ge=0)


class SpreadConfig(StrictModel):
    """VICReg variance + covariance terms on every encoder stage's voxel features (anti-collapse)."""

    weight: float = Field(0.0, ge=0)  # 0 disables it
    covariance: float = Field(1.0, ge=0)  # weight of the covariance term relative to the variance term
    target_std: float = Field(1.0, gt=0)  # channels below this spread are pushed up
    voxels: int = Field(4096, ge=16)  # voxels sampled per stage and step
    visible_only: bool = True  # only voxels the encoder saw (not masked by inpainting)


class TasksConfig(StrictModel):
    views: ViewsConfig = ViewsConfig()
    inpaint: InpaintConfig = InpaintConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()
    rotation: RotationConfig = RotationConfig()
    spread: SpreadConfig = SpreadConfig()
