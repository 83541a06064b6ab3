"""Config of the pretext tasks (a section of the pretraining config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    """Masked volume inpainting: L1/MSE on masked voxels only."""

    weight: float = Field(1.0, ge=0)  # 0 disables the task
    mask: Literal["grid", "boxes"] = "grid"
    ratio: float = Field(0.5, gt=0, lt=1)  # grid: fraction of cells masked
    patch_size: int = Field(8, ge=1)  # grid: cell side, voxels
    n_boxes: int = Field(4, ge=1)  # boxes: how many per view
    box_min: int = Field(8, ge=1)  # boxes: side range, voxels
    box_max: int = Field(24, ge=1)
    fill: Literal["zero", "noise"] = "zero"  # what masked voxels hold
    loss: Literal["l1", "mse"] = "l1"
    decoder_width: int = Field(64, ge=8)
    decoder_skips: bool = False


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


class TasksConfig(StrictModel):
    views: ViewsConfig = ViewsConfig()
    inpaint: InpaintConfig = InpaintConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()
    rotation: RotationConfig = RotationConfig()
