"""Per-label statistics of a label map on its scan's grid: volume in mL, voxel count, mean/std
intensity (HU for CT), bounding box (voxel and RAS+ world mm), centroid, mean confidence."""

from __future__ import annotations

from typing import Any

import numpy as np

from medssl.io.scan import Scan


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL (cm^3): |det| of the 3x3 part, in mm^3, / 1000."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _profiles(label: np.ndarray, n_labels: int) -> list[np.ndarray]:
    """Per axis, (n_labels, size) voxel counts of every label in each plane: one bincount of
    (label, plane) keys per axis. Bounding boxes and centroids both follow from them."""
    out = []
    for axis, size in enumerate(label.shape):
        planes = np.arange(size, dtype=np.intp).reshape([-1 if a == axis else 1 for a in range(label.ndim)])
        keys = np.multiply(label, size, dtype=np.intp)
        keys += planes
        keys = keys.ravel(order="K")
        out.append(np.bincount(keys, minlength=n_labels * size)[: n_labels * size].reshape(n_labels, size))
    return out


class _FlatLabels:
    """The label map flattened as bincount's intp keys, in the memory order of each array it
    weighs (so the weights are never copied), each order converted once."""

    def __init__(self, label: np.ndarray):
        self.label, self.keys = label, {}

    def pair(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = "F" if weights.flags.f_contiguous and not weights.flags.c_contiguous else "C"
        if order not in self.keys:
            self.keys[order] = self.label.ravel(order=order).astype(np.intp)
        return self.keys[order], weights.ravel(order=order)


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
    # Each sum walks the label map in the memory order of the array it weighs: the scan's array
    # is often Fortran-ordered, and reading it in C order costs more than the sums.
    image = np.asarray(scan.array)
    flat_labels = _FlatLabels(label)
    flat, values = flat_labels.pair(image)
    counts = np.bincount(flat, minlength=n_labels)
    values = values.astype(np.float64)
    sums = np.bincount(flat, weights=values, minlength=n_labels)
    squares = np.bincount(flat, weights=np.square(values, out=values), minlength=n_labels)
    conf = None
    if confidence is not None:
        conf = np.bincount(*flat_labels.pair(np.asarray(confidence)), minlength=n_labels)
    vml = voxel_volume_ml(affine)
    profiles = _profiles(label, n_labels)
    out: dict[str, Any] = {}
    for index in range(1, n_labels):
        name = labels.get(str(index), f"label_{index}")
        n = int(counts[index])
        entry: dict[str, Any] = {"index": index, "voxels": n, "volume_ml": round(n * vml, 6)}
        if n:
            mean = sums[index] / n
            entry["mean_intensity"] = round(float(mean), 3)
            entry["std_intensity"] = round(float(np.sqrt(max(squares[index] / n - mean * mean, 0.0))), 3)
            occupied = [np.flatnonzero(p[index]) for p in profiles]
            lo = np.array([o[0] for o in occupied], dtype=float)
            hi = np.array([o[-1] for o in occupied], dtype=float)
            centre = np.array([np.arange(p.shape[1]) @ p[index] / n for p in profiles])
            corners = np.array([[c[0], c[1], c[2]] for c in np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T])
            world = _world(affine, corners)
            entry["bbox_voxel"] = [lo.astype(int).tolist(), hi.astype(int).tolist()]
            entry["bbox_world_mm"] = [np.round(world.min(0), 2).tolist(), np.round(world.max(0), 2).tolist()]
            entry["centroid_world_mm"] = np.round(_world(affine, centre), 2).tolist()
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
