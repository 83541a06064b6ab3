"""Segmentation results on the open scan: a batch mask from a results folder or the model run
on demand, turned into overlays and a per-label table (volume in mL, mean confidence)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medssl.errors import GeometryError
from medssl.io.scan import Scan

from .loaded import Loaded, Overlay, to_view_grid
from .sources import Case

if TYPE_CHECKING:  # the predictor (torch, MONAI) loads only when a model runs
    from medssl.inference.predictor import Prediction, Predictor

LOW_CONFIDENCE = 0.7  # mean probability under this flags a structure for review


def _names(raw: Any) -> dict[int, str]:
    """{"1": "liver"} -> {1: "liver"}; entries that are not index -> name are skipped."""
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key, value in raw.items():
        if isinstance(value, (str, int, float)) and str(key).isdigit():
            out[int(key)] = str(value)
    return out


def label_table(scan: Scan, overlay: Overlay, low: float = LOW_CONFIDENCE) -> list[dict[str, Any]]:
    """One row per label of the result (the batch command's statistics, so the numbers
    match): volume (mL), mean intensity, mean confidence and a ``low_confidence`` flag."""
    from medssl.inference.stats import label_stats

    names = {str(k): v for k, v in overlay.names.items()}
    stats = label_stats(overlay.native, scan, names, overlay.confidence)
    rows = []
    recorded = overlay.label_confidence or {}
    for name, entry in stats["labels"].items():
        mean_conf = entry.get("mean_confidence", recorded.get(int(entry["index"])))
        rows.append(
            {
                "label": int(entry["index"]),
                "name": name,
                "voxels": int(entry["voxels"]),
                "volume_ml": float(entry["volume_ml"]),
                "mean_intensity": entry.get("mean_intensity"),
                "mean_confidence": mean_conf,
                "low_confidence": bool(mean_conf is not None and entry["voxels"] > 0 and mean_conf < low),
            }
        )
    return rows


def _same_grid(a_shape: tuple[int, ...], a_affine: np.ndarray, b_shape: tuple[int, ...], b_affine: np.ndarray) -> bool:
    return tuple(a_shape[:3]) == tuple(b_shape[:3]) and np.allclose(a_affine, b_affine, atol=1e-3)


def batch_overlay(loaded: Loaded, case: Case) -> Overlay | None:
    """The batch run's result for ``case`` (its mask, or class probabilities for a
    classification model); refuses a mask whose grid differs from the scan's instead of
    showing it shifted."""
    from medssl.io import read_scan

    names, confidence, class_probs = read_record(case.record)
    if case.mask is None:
        if class_probs is None:
            return None
        empty = np.zeros(loaded.scan.shape, dtype=np.uint8)
        return Overlay(label=to_view_grid(loaded.scan, empty), native=empty, names=names, origin="batch",
                       class_probs=class_probs)  # fmt: skip
    mask = read_scan(case.mask)
    if not _same_grid(mask.shape, mask.affine, loaded.scan.shape, loaded.scan.affine):
        raise GeometryError(
            f"{case.mask.name}: mask grid {mask.shape} does not match the scan grid {loaded.scan.shape}",
            source=case.mask.name,
        )
    native = np.asarray(mask.array).astype(np.uint8)
    return Overlay(label=to_view_grid(loaded.scan, native), native=native, names=names, origin="batch",
                   label_confidence=confidence or None, class_probs=class_probs)  # fmt: skip


def label_overlay(loaded: Loaded, path: Path) -> Overlay:
    """A label map file (CASE_label.nii.gz) shown over its scan; refused when its grid differs.
    Names come from a ``CASE_label.json`` or ``labels.json`` beside it (or one folder up)."""
    from medssl.io import read_scan

    label = read_scan(path)
    if not _same_grid(label.shape, label.affine, loaded.scan.shape, loaded.scan.affine):
        raise GeometryError(
            f"{path.name}: label grid {label.shape} does not match the scan grid {loaded.scan.shape}",
            source=path.name,
        )
    native = np.rint(np.asarray(label.array)).clip(0, 255).astype(np.uint8)
    names: dict[int, str] = {}
    sides = (path.with_name(path.name.split(".")[0] + ".json"), path.with_name("labels.json"),
             path.parent.parent / "labels.json")  # `medssl data synth` keeps it above nifti/
    for side in sides:
        if side.is_file():
            try:  # {"1": "liver"} (medssl data synth) or a CASE.json with "labels"
                doc = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            names = _names(doc) or read_record(side)[0]
            break
    return Overlay(label=to_view_grid(loaded.scan, native), native=native, names=names, origin="label")


def read_record(path: Path | None) -> tuple[dict[int, str], dict[int, float], dict[str, float] | None]:
    """Label names, mean confidence per label and class probabilities from a batch CASE.json:
    ``labels`` is either {"1": "liver"} or label_stats' {"liver": {"index": 1, ...}}."""
    if path is None:
        return {}, {}, None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, {}, None
    raw = record.get("labels") if isinstance(record, dict) else None
    names, confidence = _names(raw), {}
    if isinstance(raw, dict):
        for name, entry in raw.items():
            if isinstance(entry, dict) and "index" in entry:
                names[int(entry["index"])] = str(name)
                if entry.get("mean_confidence") is not None:
                    confidence[int(entry["index"])] = float(entry["mean_confidence"])
    probs = record.get("class_probabilities") if isinstance(record, dict) else None
    return names, confidence, ({str(k): float(v) for k, v in probs.items()} if isinstance(probs, dict) else None)


def model_overlay(loaded: Loaded, predictor: Predictor) -> Overlay:
    """Run ``predictor`` on the open scan."""
    pred: Prediction = predictor.predict(loaded.scan)
    names = _names(pred.labels)
    class_probs, label = pred.class_probs, pred.label
    if label is None:  # a classification model: nothing to overlay
        native = np.zeros(loaded.scan.shape, dtype=np.uint8)
        probs = {names.get(int(k), str(k)) if str(k).isdigit() else str(k): float(v) for k, v in dict(class_probs or {}).items()}
        return Overlay(label=to_view_grid(loaded.scan, native), native=native, names=names, origin="model", class_probs=probs)
    native = np.asarray(label).astype(np.uint8)
    confidence = pred.confidence
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
    return Overlay(
        label=to_view_grid(loaded.scan, native),
        native=native,
        names=names,
        origin="model",
        confidence=confidence,
        class_probs=dict(class_probs) if class_probs else None,
    )


def model_key(path: Path) -> tuple[str, float]:
    """Cache key of an artifact: its path and modification time (a retrained model reloads)."""
    path = Path(path)
    target = path / "model.pt" if path.is_dir() else path
    return str(path.resolve()), target.stat().st_mtime
