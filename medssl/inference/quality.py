"""Out-of-domain and quality flags for one predicted case: ``ok`` or ``warning`` with
reasons, from the artifact's ``meta.training_domain`` (see ``medssl.artifacts.domain``)
and the prediction's own statistics. A prediction the model was not trained for is
flagged, never reported as plainly ok.

A warning is raised when the scan's modality differs from the training modality; its
spacing or field of view lies outside the training range by more than ``MARGIN`` (x0.5 to
x2); its median preprocessed intensity lies outside the training 1-99 % range (another body
region or contrast); a predicted structure's volume lies outside ``MARGIN`` x the training
range; or a predicted structure's mean confidence is below ``MIN_CONFIDENCE``."""

from __future__ import annotations

from typing import Any

import numpy as np

MARGIN = 2.0
MIN_CONFIDENCE = 0.6


def _outside(value: float, lo: float, hi: float) -> bool:
    return value < lo / MARGIN or value > hi * MARGIN


def assess(stats: dict[str, Any], domain: dict[str, Any] | None, modality: str, image: np.ndarray | None = None,
           trained_modality: str | None = None) -> tuple[str, list[str]]:
    """``(status, reasons)`` for a case's ``label_stats`` output; ``image``: the preprocessed
    input (C, X, Y, Z), for the intensity check."""
    reasons: list[str] = []
    trained = (domain or {}).get("modality") or trained_modality
    if trained and modality and modality not in ("OT", "") and modality != trained:
        reasons.append(f"modality {modality}, model trained on {trained}")
    if domain:
        for key, what, value in (("spacing_mm", "spacing", stats.get("spacing_mm")),
                                 ("extent_mm", "field of view", _extent(stats))):
            rng = domain.get(key)
            if rng and value:
                bad = [i for i, v in enumerate(value) if _outside(float(v), rng["min"][i], rng["max"][i])]
                if bad:
                    shown = " x ".join(f"{float(v):.1f}" for v in value)
                    ranges = " x ".join(f"{a:.1f}-{b:.1f}" for a, b in zip(rng["min"], rng["max"]))
                    reasons.append(f"{what} {shown} mm outside the training range {ranges} mm")
        inten = domain.get("intensity")
        if inten and image is not None:
            median = float(np.median(image[0][:: 2, :: 2, :: 2]))
            if not inten["p01"] <= median <= inten["p99"]:
                reasons.append(f"median intensity {median:.3f} outside the training 1-99 % range "
                               f"[{inten['p01']:.3f}, {inten['p99']:.3f}] (another body region or contrast?)")
        for name, (lo, hi) in (domain.get("label_volume_ml") or {}).items():
            entry = stats.get("labels", {}).get(name)
            if entry and entry["voxels"] and _outside(entry["volume_ml"], max(lo, 1e-3), hi):
                reasons.append(f"{name} {entry['volume_ml']:.1f} mL outside the training range {lo:.1f}-{hi:.1f} mL")
    for name, entry in stats.get("labels", {}).items():
        conf = entry.get("mean_confidence")
        if entry.get("voxels") and conf is not None and conf < MIN_CONFIDENCE:
            reasons.append(f"{name} low confidence ({conf:.2f} < {MIN_CONFIDENCE})")
    return ("warning" if reasons else "ok"), reasons


def _extent(stats: dict[str, Any]) -> list[float] | None:
    shape, spacing = stats.get("shape"), stats.get("spacing_mm")
    return [float(n) * float(s) for n, s in zip(shape, spacing)] if shape and spacing else None
