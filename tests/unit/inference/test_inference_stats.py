"""label_stats: volumes in mL from the affine, HU statistics, bounding boxes in voxels and world."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medssl.data.phantom import make_sphere_phantom
from medssl.inference import Predictor
from medssl.inference.stats import label_stats, voxel_volume_ml
from medssl.io.scan import Scan
from tests.unit.inference.test_inference_fixtures import grid_affine, threshold_artifact

RADIUS = 10.0
SPACING = (0.8, 0.9, 1.5)


def _sphere_scan() -> tuple[Scan, np.ndarray]:
    image, label, affine = make_sphere_phantom(RADIUS, spacing=SPACING, shape=(36, 32, 20))
    return Scan(image, affine, "CT", "sphere.nii.gz", "sphere"), label


def _voxelisation_tolerance_ml() -> float:
    """Only voxels cut by the surface can be wrong, each by at most one voxel and half of one
    on average, with independent signs: 3 sigma of that random walk (about 1.3 % here)."""
    voxel_mm3 = float(np.prod(SPACING))
    n_surface = 4 * math.pi * RADIUS**2 / voxel_mm3 ** (2 / 3)
    return 3 * 0.5 * math.sqrt(n_surface) * voxel_mm3 / 1000.0


@pytest.mark.parametrize("spacing", [None, [1.5, 1.5, 1.5]])
def test_sphere_volume_in_ml(tmp_path, spacing):
    scan, truth = _sphere_scan()
    path = threshold_artifact(tmp_path / "m.pt", hu_threshold=-20.0,
                              preprocessing={"orientation": "RAS", "spacing": spacing, "intensity": "ct_window"})  # fmt: skip
    pred = Predictor.from_artifact(path, device="cpu").predict(scan)
    stats = label_stats(pred.label, scan, {"0": "background", "1": "sphere"}, pred.confidence)
    entry = stats["labels"]["sphere"]
    exact_ml = 4 / 3 * math.pi * RADIUS**3 / 1000.0
    assert abs(entry["volume_ml"] - exact_ml) < _voxelisation_tolerance_ml()
    assert entry["volume_ml"] == pytest.approx(entry["voxels"] * np.prod(SPACING) / 1000.0, rel=1e-6)
    if spacing is None:  # no resampling: exactly the phantom's own voxelisation
        assert entry["voxels"] == int(truth.sum())
        assert entry["mean_intensity"] == 60.0 and entry["std_intensity"] == 0.0
    assert 0.5 < entry["mean_confidence"] <= 1.0
    assert np.allclose(entry["centroid_world_mm"], 0.0, atol=0.3)  # the sphere sits at the world origin


def test_bounding_boxes_voxel_and_world():
    affine = grid_affine((2.0, 1.0, 3.0), "LPS", origin=(10.0, 20.0, 30.0))
    label = np.zeros((10, 8, 6), np.uint8)
    label[2:5, 1:3, 4] = 1
    label[7, 7, 0] = 2
    scan = Scan(np.full(label.shape, 40.0, np.float32), affine, "CT", "x", "x")
    stats = label_stats(label, scan, {"0": "background", "1": "a", "2": "b", "3": "absent"})
    a = stats["labels"]["a"]
    assert a["voxels"] == 6 and a["bbox_voxel"] == [[2, 1, 4], [4, 2, 4]]
    # LPS axes: x = 10 - 2 i, y = 20 - j, z = 30 + 3 k
    assert a["bbox_world_mm"] == [[2.0, 18.0, 42.0], [6.0, 19.0, 42.0]]
    assert a["volume_ml"] == pytest.approx(6 * 6.0 / 1000.0)
    assert stats["labels"]["b"]["voxels"] == 1
    assert stats["labels"]["absent"] == {"index": 3, "voxels": 0, "volume_ml": 0.0}
    assert stats["intensity_unit"] == "HU" and stats["voxel_volume_ml"] == pytest.approx(0.006)


def test_voxel_volume_uses_the_determinant_for_oblique_grids():
    affine = grid_affine((0.5, 0.7, 2.0), "RAS", rotate_deg=33.0)
    assert voxel_volume_ml(affine) == pytest.approx(0.5 * 0.7 * 2.0 / 1000.0)


@pytest.mark.parametrize("image_order", ["C", "F"])
def test_stats_equal_scipy_on_random_labels(image_order):
    """Moments, boxes and centroids against scipy.ndimage on a random 5-label map, whatever
    the memory order of the image (scans are often Fortran-ordered) and confidence."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    shape = (23, 17, 11)
    label = (rng.random(shape) * 5).astype(np.uint8)
    label[label == 3] = 0  # an absent label
    image = np.asarray(rng.normal(40, 300, shape).astype(np.float32), order=image_order)
    confidence = rng.random(shape).astype(np.float32)
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-10, 5, 20]
    scan = Scan(image, affine, "CT", "random.nii.gz", "c")
    names = {str(i): f"l{i}" for i in range(5)}
    stats = label_stats(label, scan, names, confidence)["labels"]
    assert stats["l3"]["voxels"] == 0 and "bbox_voxel" not in stats["l3"]
    for i in (1, 2, 4):
        entry, mask = stats[f"l{i}"], label == i
        assert entry["voxels"] == mask.sum()
        assert entry["mean_intensity"] == pytest.approx(float(image[mask].astype(np.float64).mean()), abs=1e-3)
        assert entry["std_intensity"] == pytest.approx(float(image[mask].astype(np.float64).std()), abs=1e-3)
        assert entry["mean_confidence"] == pytest.approx(float(confidence[mask].mean()), abs=1e-4)
        box = ndimage.find_objects(mask.astype(np.int32))[0]
        assert entry["bbox_voxel"] == [[s.start for s in box], [s.stop - 1 for s in box]]
        centre = np.array(ndimage.center_of_mass(mask))
        assert entry["centroid_world_mm"] == pytest.approx((affine[:3, :3] @ centre + affine[:3, 3]).tolist(), abs=0.01)
