"""What clicks, wheel, drags and measurements in a view do (apps.viewer.interaction), the PNG
snapshot built outside a script run, uploads of .dcm files, label maps opened over their
scan, and the open scan's name masked when it holds patient data."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from apps.viewer.interaction import apply_event, distance_mm, dragged_window, voxel_at
from apps.viewer.loaded import Loaded, open_path, open_uploads, shown_name
from apps.viewer.render import PLANES, crosshair_pixel
from apps.viewer.sources import label_twins, list_data_dir
from medssl.errors import UnsupportedInputError
from medssl.io.path_privacy import pseudonym
from tests.conftest import assert_no_phi
from tests.e2e.viewer_data import make_phantom, write_phantom

SHAPE = (48, 40, 20)
SPACING = (1.0, 1.0, 2.5)


@pytest.mark.parametrize("plane", PLANES)
def test_click_lands_on_the_voxel_the_crosshair_is_drawn_on(plane):
    """voxel_at inverts render.crosshair_pixel: clicking the centre of a drawn pixel selects it."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        ijk = tuple(int(rng.integers(0, n)) for n in SHAPE)
        r, c = crosshair_pixel(plane, ijk, SHAPE)
        rows, cols = {"axial": (40, 48), "coronal": (20, 48), "sagittal": (20, 40)}[plane]
        start = (5, 5, 5)
        got = voxel_at(plane, (c + 0.5) / cols, (r + 0.5) / rows, start, SHAPE)
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
        expect = list(ijk)
        expect[axis] = start[axis]  # the plane's own slice does not move
        assert got == tuple(expect)


def test_click_outside_is_clamped_and_events_update_slice_numbers():
    assert voxel_at("axial", 1.5, -0.2, (0, 0, 3), SHAPE) == (0, 39, 3)
    slices = {"axial": 11, "coronal": 21, "sagittal": 25}
    click = apply_event({"plane": "axial", "type": "click", "fx": 0.0, "fy": 0.0}, slices, (400, 40), SHAPE, SPACING)
    assert click == {"slices": {"sagittal": 48, "coronal": 40, "axial": 11}}  # top left = anterior, right
    assert apply_event({"plane": "axial", "type": "scroll", "delta": 3}, slices, (400, 40), SHAPE, SPACING) == {"slices": {"axial": 14}}
    assert apply_event({"plane": "axial", "type": "scroll", "delta": 50}, slices, (400, 40), SHAPE, SPACING) == {"slices": {"axial": 20}}
    assert apply_event({"plane": "coronal", "type": "scroll", "delta": -99}, slices, (400, 40), SHAPE, SPACING) == {"slices": {"coronal": 1}}
    assert apply_event({"plane": "axial", "type": "preset", "n": 2}, slices, (400, 40), SHAPE, SPACING) == {"window": (1500.0, -600.0)}
    for bad in ({"plane": "nope", "type": "click"}, {"plane": "axial", "type": "click", "fx": "x"}, {"plane": "axial"},
                {"plane": "axial", "type": "preset", "n": 9}):  # fmt: skip
        assert apply_event(bad, slices, (400, 40), SHAPE, SPACING) == {}


def test_distance_is_in_millimetres_with_anisotropic_voxels():
    # coronal rows are z (2.5 mm, 20 of them), columns x (1 mm, 48): a vertical line over all rows
    assert distance_mm("coronal", (0.5, 0.0), (0.5, 1.0), SHAPE, SPACING) == pytest.approx(50.0)
    assert distance_mm("axial", (0.0, 0.0), (1.0, 0.0), SHAPE, SPACING) == pytest.approx(48.0)
    assert distance_mm("sagittal", (0, 0), (0.75, 0.5), SHAPE, SPACING) == pytest.approx(np.hypot(30.0, 25.0))
    out = apply_event({"plane": "coronal", "type": "measure", "p1": [0.5, 0], "p2": [0.5, 1]},
                      {"axial": 1, "coronal": 7, "sagittal": 1}, (400, 40), SHAPE, SPACING)  # fmt: skip
    assert out["measure"]["mm"] == pytest.approx(50.0) and out["measure"]["slice"] == 7


def test_window_drag_scales_with_the_width_and_never_goes_below_one():
    assert dragged_window(400, 40, 250, 0) == (800.0, 40.0)
    assert dragged_window(400, 40, 0, -125) == (400.0, -160.0)
    assert dragged_window(80, 40, -10_000, 0)[0] == 1.0


def _phantom_loaded(tmp_path) -> Loaded:
    image, _ = write_phantom(tmp_path)
    return open_path(image, origin="data")


def test_png_snapshot_is_built_outside_a_script_run(tmp_path):
    """The download's data runs when the browser asks, with no session state: it must not read it."""
    from apps.viewer.components.views import snapshot_builder

    loaded = _phantom_loaded(tmp_path)
    _, label = make_phantom()
    build = snapshot_builder(loaded, (24, 20, 10), (400.0, 40.0), label, 0.5, [1, 2], ["Axial 11/20", "Coronal 21/40", "Sagittal 25/48"])
    png = Image.open(io.BytesIO(build()))
    assert png.format == "PNG" and png.width > 3 * 300 and png.mode == "RGB"
    assert (np.asarray(png)[..., 0] > 200).any()  # the red liver label is drawn


def test_label_file_is_an_overlay_on_its_scan_not_a_scan(tmp_path):
    from apps.viewer.results import label_overlay

    image, label_path = write_phantom(tmp_path / "data")
    assert label_twins(["a.nii.gz", "a_label.nii.gz", "b_seg.nii", "c.nii.gz"]) == {"a_label.nii.gz": "a.nii.gz"}
    entries = list_data_dir(tmp_path / "data")
    assert [(e.label, e.label_path) for e in entries] == [("phantom_000.nii.gz", label_path)]
    loaded = open_path(image, origin="data")
    overlay = label_overlay(loaded, label_path)
    np.testing.assert_array_equal(overlay.native, make_phantom()[1])
    assert overlay.origin == "label"


@pytest.mark.realdata
def test_single_and_multiple_dcm_uploads_open_the_series(head_ct_series):
    files = sorted(head_ct_series.glob("*.dcm"))
    with pytest.raises(UnsupportedInputError, match=f"{files[0].name}.*single 2D image"):  # accepted, then read
        open_uploads([(files[0].name, files[0].read_bytes())])
    many = open_uploads([(f.name, f.read_bytes()) for f in files])
    assert many.scan.shape == (256, 256, 108) and many.name == "108 DICOM files"
    assert many.upload is not None and many.upload[0] == ".zip"  # kept for the DICOM SEG export
    assert many.scan.case_id == "upload" and many.is_dicom
    with pytest.raises(UnsupportedInputError, match="several files"):
        open_uploads([(files[0].name, b"x"), ("scan.nii.gz", b"y")])
    with pytest.raises(UnsupportedInputError, match="evil.exe"):
        open_uploads([("../../evil.exe", b"x")])


@pytest.mark.realdata
def test_the_open_scans_name_is_masked_when_it_holds_patient_data(tmp_path, head_ct_series):
    loaded = open_path(head_ct_series, origin="data")
    loaded.name = "exports/SENTINEL_DONOTLEAK_patient/ (DICOM)"
    shown = shown_name(loaded, reveal=False)
    assert_no_phi(shown, "the scan's name above the views")
    assert shown == f"exports/{pseudonym('SENTINEL_DONOTLEAK_patient')}/ (DICOM)"  # as the picker lists it
    assert shown_name(loaded, reveal=True) == loaded.name
    loaded.name = "dicom/head_ct_series/ (DICOM)"
    assert shown_name(loaded, reveal=False) == loaded.name
