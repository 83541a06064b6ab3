"""Pure display logic of the viewer: orientation, aspect, window/level, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from apps.viewer.render import (
    LETTERS,
    PLANES,
    apply_window,
    blend_labels,
    crosshair_pixel,
    display_size,
    extract_slice,
    pixel_spacing,
    render_view,
    snapshot,
)
from apps.viewer.windowing import (
    CT_PRESETS,
    default_window,
    header_window,
    percentile_window,
    preset_key,
)


def _marked(shape=(10, 12, 14)) -> np.ndarray:
    """Volume (canonical RAS) with value 1 in the patient's Right, Anterior, Superior corner
    region (high i, high j, high k)."""
    vol = np.zeros(shape, dtype=np.float32)
    vol[-2:, -2:, -2:] = 1.0
    return vol


def test_axial_shows_patient_right_on_screen_left_and_anterior_on_top():
    img = extract_slice(_marked(), "axial", 13)
    assert img.shape == (12, 10)  # rows = y (A..P), cols = x (R..L)
    assert img[0, 0] == 1.0 and img[-1, -1] == 0.0
    assert LETTERS["axial"] == ("A", "P", "R", "L")


def test_coronal_shows_superior_on_top_and_right_on_left():
    img = extract_slice(_marked(), "coronal", 11)
    assert img.shape == (14, 10)
    assert img[0, 0] == 1.0 and img[-1, -1] == 0.0
    assert LETTERS["coronal"] == ("S", "I", "R", "L")


def test_sagittal_shows_superior_on_top_and_anterior_on_left():
    img = extract_slice(_marked(), "sagittal", 9)
    assert img.shape == (14, 12)
    assert img[0, 0] == 1.0 and img[-1, -1] == 0.0
    assert LETTERS["sagittal"] == ("S", "I", "A", "P")


@pytest.mark.parametrize("plane", PLANES)
def test_crosshair_pixel_points_at_the_voxel(plane):
    vol = np.zeros((7, 8, 9), dtype=np.float32)
    ijk = (5, 2, 6)
    vol[ijk] = 1.0
    index = {"axial": ijk[2], "coronal": ijk[1], "sagittal": ijk[0]}[plane]
    r, c = crosshair_pixel(plane, ijk, vol.shape)
    assert extract_slice(vol, plane, index)[r, c] == 1.0


def test_anisotropic_voxels_keep_physical_aspect():
    # 26 slices of 4 mm under 256 columns of 1.25 mm: 104 mm tall, 320 mm wide
    assert pixel_spacing((1.25, 1.25, 4.0), "coronal") == (4.0, 1.25)
    h, w = display_size(26, 256, 4.0, 1.25, target=320)
    assert (h, w) == (104, 320)
    image = render_view(np.zeros((256, 256, 26), np.float32), "coronal", (128, 128, 13), (1.25, 1.25, 4.0), (400, 40), size=320)
    assert image.size == (320, 104)


def test_apply_window_maps_level_to_mid_grey_and_clips():
    out = apply_window(np.array([-1000.0, 0.0, 40.0, 80.0, 3000.0]), width=80, level=40)
    assert out.tolist() == [0, 0, 127, 255, 255]
    assert out.dtype == np.uint8


def test_blend_labels_colours_only_visible_labels():
    rgb = np.zeros((2, 2, 3), np.uint8)
    lab = np.array([[0, 1], [2, 2]])
    out = blend_labels(rgb, lab, opacity=1.0, visible=[2], colors={1: (255, 0, 0), 2: (0, 255, 0)})
    assert out[0, 1].tolist() == [0, 0, 0]  # label 1 hidden
    assert out[1, 0].tolist() == [0, 255, 0]
    assert blend_labels(rgb, lab, opacity=0.0) is rgb


def test_render_view_draws_overlay_where_the_label_is():
    vol = np.zeros((16, 16, 16), np.float32)
    label = np.zeros((16, 16, 16), np.uint8)
    label[12:16, 0:4, 8] = 1  # patient right, posterior
    image = render_view(vol, "axial", (0, 0, 8), (1, 1, 1), (400, 40), label=label, opacity=1.0,
                        colors={1: (255, 0, 0)}, size=160, crosshair=False, letters=False)
    px = np.asarray(image)
    assert px[150, 10].tolist() == [255, 0, 0]  # bottom-left: posterior, patient right
    assert px[10, 150].tolist() == [102, 102, 102]  # 0 HU in a 400/40 window


def test_snapshot_is_a_png_of_all_views():
    vol = np.random.default_rng(0).normal(size=(8, 9, 10)).astype(np.float32)
    views = [render_view(vol, p, (4, 4, 5), (1, 1, 2), (2, 0), size=64) for p in PLANES]
    data = snapshot(views, PLANES)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_presets_follow_ohif_order_with_number_keys():
    assert CT_PRESETS["Soft tissue"] == (400, 40) and CT_PRESETS["Lung"] == (1500, -600)
    assert CT_PRESETS["Liver"] == (150, 90) and CT_PRESETS["Bone"] == (2500, 480)
    assert CT_PRESETS["Brain"] == (80, 40) and CT_PRESETS["Mediastinum"] == (350, 50)
    assert [preset_key(n) for n in CT_PRESETS] == ["1", "2", "3", "4", "5", "6"]


def test_mr_window_prefers_header_then_percentiles():
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    assert header_window({"window_center": 300.0, "window_width": 600.0}) == (600.0, 300.0)
    assert default_window(vol, "MR", {"window_center": 300.0, "window_width": 600.0}) == (600.0, 300.0)
    width, level = percentile_window(vol)
    assert width == pytest.approx(0.98 * 999, rel=0.01) and level == pytest.approx(499.5, rel=0.01)
    assert default_window(vol, "MR", {}) == (width, level)
    assert default_window(vol, "CT", {}) == CT_PRESETS["Soft tissue"]
