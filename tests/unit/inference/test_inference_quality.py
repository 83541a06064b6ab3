"""Out-of-domain flags: a prediction outside what the model was trained on is a warning."""

from __future__ import annotations

import numpy as np

from medssl.artifacts.domain import training_domain
from medssl.data.labeled import PreparedCase
from medssl.inference.quality import assess

DOMAIN = {"modality": "CT", "spacing_mm": {"min": [0.8, 0.8, 2.0], "max": [1.0, 1.0, 5.0]},
          "extent_mm": {"min": [300, 300, 150], "max": [400, 400, 300]},
          "intensity": {"p01": 0.0, "p50": 0.3, "p99": 1.0},
          "label_volume_ml": {"kidney": [72.0, 142.0]}}


def _stats(volume: float, confidence: float = 0.9, spacing=(0.9, 0.9, 3.0), shape=(400, 400, 70)) -> dict:
    return {"spacing_mm": list(spacing), "shape": list(shape),
            "labels": {"kidney": {"voxels": 10, "volume_ml": volume, "mean_confidence": confidence}}}


def test_in_domain_case_is_ok():
    assert assess(_stats(110.0), DOMAIN, "CT", np.full((1, 8, 8, 8), 0.3)) == ("ok", [])


def test_kidney_model_on_a_head_ct_is_a_warning():
    # the head CT: 288.6 mL of "kidney", a small field of view, another intensity mix
    status, reasons = assess(_stats(288.6, spacing=(0.96, 0.96, 1.5), shape=(256, 256, 108)), DOMAIN, "CT",
                             np.full((1, 8, 8, 8), 0.3))
    assert status == "warning"
    assert any("kidney 288.6 mL outside the training range 72.0-142.0 mL" in r for r in reasons)


def test_modality_spacing_intensity_and_confidence_flags():
    status, reasons = assess(_stats(100.0, confidence=0.4, spacing=(0.2, 0.2, 3.0)), DOMAIN, "MR",
                             np.full((1, 8, 8, 8), 5.0))
    text = " | ".join(reasons)
    assert status == "warning" and "modality MR, model trained on CT" in text
    assert "spacing" in text and "median intensity" in text and "low confidence" in text


def test_training_domain_ranges_from_cases():
    label = np.zeros((10, 10, 10), np.int64)
    label[:2] = 1
    cases = [PreparedCase(f"c{i}", np.full((1, 10, 10, 10), 0.1 * i, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]),
                          label, native_spacing=(1.0, 1.0, s), native_extent=(100.0, 100.0, 10 * s))
             for i, s in enumerate((2.0, 4.0))]
    dom = training_domain(cases, {"0": "bg", "1": "liver"}, "CT")
    assert dom["spacing_mm"] == {"min": [1.0, 1.0, 2.0], "max": [1.0, 1.0, 4.0]}
    assert dom["label_volume_ml"]["liver"] == [1.6, 1.6]  # 200 voxels x 8 mm^3
    assert dom["n_cases"] == 2 and dom["modality"] == "CT"
