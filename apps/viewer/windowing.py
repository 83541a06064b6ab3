"""Window/level: the CT presets clinicians know by number key, and MR auto-windowing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# name -> (width, level) in HU; OHIF's order, mediastinum appended. Keys 1-6 follow this order.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Soft tissue": (400.0, 40.0),
    "Lung": (1500.0, -600.0),
    "Liver": (150.0, 90.0),
    "Bone": (2500.0, 480.0),
    "Brain": (80.0, 40.0),
    "Mediastinum": (350.0, 50.0),
}


def preset_key(name: str) -> str:
    """The number key ("1".."6") bound to a preset."""
    return str(list(CT_PRESETS).index(name) + 1)


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def header_window(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """(width, level) from DICOM WindowWidth/WindowCenter kept in the scan's metadata."""
    width = _first_number(meta.get("window_width", meta.get("WindowWidth")))
    level = _first_number(meta.get("window_center", meta.get("WindowCenter")))
    if width is None or level is None or width <= 0:
        return None
    return width, level


def percentile_window(array: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """(width, level) spanning the ``low``-``high`` percentiles; on a strided subsample so a
    512x512x300 volume costs milliseconds."""
    step = max(1, round((array.size / 2_000_000) ** (1 / 3)))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(sample, [low, high])
    width = max(float(hi - lo), 1e-3)
    return width, float(lo) + width / 2.0


def default_window(array: np.ndarray, modality: str, meta: Mapping[str, Any]) -> tuple[float, float]:
    """CT: soft tissue; MR and others: the header's window when present, else 1-99 %."""
    if modality.upper() == "CT":
        return CT_PRESETS["Soft tissue"]
    return header_window(meta) or percentile_window(array)
