"""Per-label statistics of a label map on its scan's grid: volume in mL, voxel count, mean/std
intensity (HU for CT), bounding box (voxel and RAS+ world mm), centroid, mean confidence."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from medssl.io.scan import Scan


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL (cm^3): |det| of the 3x3 part, in mm^3, / 1000."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _centroids(label: np.ndarray, n_labels: int, counts: np.ndarray) -> np.ndarray:
    """(n_labels, 3) voxel centroid of every label: per axis, a histogram of labels over each
    plane (one pass over the volume per axis for all labels, where ``center_of_mass`` takes
    three per label); NaN for absent labels."""
    centres = np.empty((n_labels, 3))
    for axis, size in enumerate(label.shape):
        lead = (slice(None),) * axis
        hist = np.stack([np.bincount(label[lead + (j,)].ravel(), minlength=n_labels)[:n_labels]
                         for j in range(size)])  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            centres[:, axis] = np.arange(size, dtype=np.float64) @ hist / counts
    return centres


def label_stats(
    label: np.ndarray,
    scan: Scan,
    labels: dict[str, str],
    confidence: np.ndarray | None = None,
) -> dict[str, Any]:
    """``label`` (X, Y, Z) integer map on ``scan``'s grid; ``labels`` {"0": "background", ...}.

    Returns {"case_id", "modality", "intensity_unit", "spacing_mm", "voxel_volume_ml",
    "labels": {name: {...}}} with one entry per non-background label (zeros when absent)."""
    if label.shape != scan.shape:
        raise ValueError(f"label shape {label.shape} does not match scan shape {scan.shape}")
    affine = np.asarray(scan.affine, dtype=np.float64)
    n_labels = max([int(k) for k in labels] + [int(label.max(initial=0))]) + 1
    flat = label.ravel().astype(np.int64)
    counts = np.bincount(flat, minlength=n_labels)
    image = np.asarray(scan.array, dtype=np.float64).ravel()
    sums = np.bincount(flat, weights=image, minlength=n_labels)
    squares = np.bincount(flat, weights=image * image, minlength=n_labels)
    conf = np.bincount(flat, weights=confidence.ravel().astype(np.float64), minlength=n_labels) if confidence is not None else None
    boxes = ndimage.find_objects(label.astype(np.int32), max_label=n_labels - 1)
    vml = voxel_volume_ml(affine)
    centres = _centroids(label, n_labels, counts)
    out: dict[str, Any] = {}
    for index in range(1, n_labels):
        name = labels.get(str(index), f"label_{index}")
        n = int(counts[index])
        entry: dict[str, Any] = {"index": index, "voxels": n, "volume_ml": round(n * vml, 6)}
        if n:
            mean = sums[index] / n
            entry["mean_intensity"] = round(float(mean), 3)
            entry["std_intensity"] = round(float(np.sqrt(max(squares[index] / n - mean * mean, 0.0))), 3)
            box = boxes[index - 1]
            lo = np.array([s.start for s in box], dtype=float)
            hi = np.array([s.stop - 1 for s in box], dtype=float)
            corners = np.array([[c[0], c[1], c[2]] for c in np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T])
            world = _world(affine, corners)
            entry["bbox_voxel"] = [lo.astype(int).tolist(), hi.astype(int).tolist()]
            entry["bbox_world_mm"] = [np.round(world.min(0), 2).tolist(), np.round(world.max(0), 2).tolist()]
            entry["centroid_world_mm"] = np.round(_world(affine, centres[index]), 2).tolist()
            if conf is not None:
                entry["mean_confidence"] = round(float(conf[index] / n), 4)
        out[name] = entry
    return {
        "case_id": scan.case_id,
        "modality": scan.modality,
        "intensity_unit": "HU" if scan.modality == "CT" else "stored value",
        "shape": list(scan.shape),
        "spacing_mm": [round(s, 4) for s in scan.spacing],
        "voxel_volume_ml": round(vml, 8),
        "labels": out,
    }
