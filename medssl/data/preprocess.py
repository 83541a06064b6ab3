"""Preprocessing shared by pretraining, fine-tuning, prediction and the viewer.

Contract (kept stable for the layers above): ``PreprocessConfig`` describes the pipeline as
data, so a model artifact can carry it and a predictor can rebuild it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medssl.config import StrictModel


class CTWindow(StrictModel):
    a_min: float = -1000.0  # HU mapped to 0
    a_max: float = 1000.0  # HU mapped to 1
    clip: bool = True


class MRPercentiles(StrictModel):
    lower: float = Field(0.5, ge=0, lt=100)
    upper: float = Field(99.5, gt=0, le=100)


class PreprocessConfig(StrictModel):
    orientation: str = "RAS"  # axis codes the array is reoriented to
    spacing: tuple[float, float, float] | None = None  # target mm; None keeps native spacing
    intensity: Literal["auto", "ct_window", "mr_percentile", "none"] = "auto"  # auto: by modality
    ct_window: CTWindow = CTWindow()
    mr_percentiles: MRPercentiles = MRPercentiles()
    crop_foreground: bool = False
