"""What a model was trained on, stored in its artifact (``meta.training_domain``) so that
``predict`` can flag a case the model was not trained for instead of reporting it as ok.

    {"modality": "CT", "n_cases": 5,
     "spacing_mm": {"min": [x, y, z], "max": [x, y, z]},     # of the scans as read
     "extent_mm": {"min": [...], "max": [...]},               # field of view
     "intensity": {"p01": ..., "p50": ..., "p99": ...},       # preprocessed voxel values
     "label_volume_ml": {"kidney": [min, max], ...}}          # reference volumes per label"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medssl.data.labeled import PreparedCase


def training_domain(cases: Sequence[PreparedCase], labels: dict[str, str], modality: str) -> dict[str, Any]:
    """Ranges over the training cases (see module docstring)."""
    spacing = np.array([c.native_spacing for c in cases if c.native_spacing], dtype=float)
    extent = np.array([c.native_extent for c in cases if c.native_extent], dtype=float)
    sample = np.concatenate([c.image[0].ravel()[:: max(1, c.image[0].size // 20000)] for c in cases])
    out: dict[str, Any] = {"modality": modality, "n_cases": len(cases)}
    if len(spacing):
        out["spacing_mm"] = {"min": np.round(spacing.min(0), 3).tolist(), "max": np.round(spacing.max(0), 3).tolist()}
        out["extent_mm"] = {"min": np.round(extent.min(0), 1).tolist(), "max": np.round(extent.max(0), 1).tolist()}
    out["intensity"] = {k: round(float(np.percentile(sample, q)), 4) for k, q in (("p01", 1), ("p50", 50), ("p99", 99))}
    volumes: dict[str, list[float]] = {}
    for c in cases:
        if c.label is None:
            continue
        vml = float(abs(np.linalg.det(c.affine[:3, :3]))) / 1000.0
        counts = np.bincount(c.label.ravel(), minlength=len(labels))
        for k, name in labels.items():
            if int(k) > 0:
                volumes.setdefault(name, []).append(float(counts[int(k)]) * vml)
    if volumes:
        out["label_volume_ml"] = {n: [round(min(v), 3), round(max(v), 3)] for n, v in volumes.items()}
    return out
