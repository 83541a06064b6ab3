"""How a network runs over a whole volume: the sliding-window settings every reader shares
(training validation, the predictor, evaluation, the MONAI bundle writer, the viewer) and the
model artifact stores. Defaults live here and nowhere else; fine-tuning configs use the same
model for their ``inference`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medssl.config import CropSize, StrictModel


class InferenceSettings(StrictModel):
    """Sliding-window inference: window size, overlap, windows per forward pass, blending."""

    roi_size: CropSize = (96, 96, 96)
    overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(4, ge=1)
    mode: Literal["gaussian", "constant"] = "gaussian"  # how overlapping windows are blended
