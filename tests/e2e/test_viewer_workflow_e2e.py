"""The README's path in a real browser: phantoms synthesised, a model run over them and the
real DICOM head CT with ``medssl predict`` (inputs far from the results folder, as in the
demo), then ``medssl viewer --results-dir`` opens every result with its overlay drawn;
every export downloads and validates; click, wheel, keys, window drag, zoom and the
distance measurement work in Chromium. Screenshots go to $MEDSSL_TEST_ARTIFACTS."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from apps.viewer.interaction import distance_mm, voxel_at
from medssl.cli import main
from medssl.io import uid_hash
from tests.e2e.conftest import screenshot_on_failure, start_viewer
from tests.e2e.viewer_page import (WAIT_MS, assert_page_has_no_phi, caption_of, idle, overlay_pixels, pick, scroll_top,
                                   settle)
from tests.unit.inference.test_inference_fixtures import threshold_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.realdata]


@pytest.fixture(scope="module")
def workflow(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    inputs = root / "hospital" / "inputs"
    assert main(["-q", "data", "synth", "--out", str(inputs), "--n", "2", "--format", "both",
                 "--shape", "48", "48", "16"]) == 0  # fmt: skip
    model = threshold_artifact(root / "models" / "bone.pt", hu_threshold=300.0,
                               labels={"0": "background", "1": "bone"},
                               preprocessing={"orientation": "RAS", "spacing": [4.0, 4.0, 4.0]})  # fmt: skip
    results = root / "reports" / "predictions"
    argv = ["-q", "predict", "--model", str(model), "-i", str(inputs / "nifti"), str(inputs / "dicom"),
            str(real_data / "dicom" / "head_ct_series"), "-o", str(results), "--no-progress"]  # fmt: skip
    assert main(argv) in (0, 6)  # 6: the label files given with the scans are refused as inputs
    with (results / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    gen = start_viewer(["--results-dir", str(results), "--data-dir", str(inputs / "nifti")], root / "viewer.log")
    url, _ = next(gen)
    yield {"url": url, "rows": rows, "results": results}
    gen.close()


@pytest.fixture
def page(browser, workflow, request, artifacts_dir):
    page = browser.new_page(viewport={"width": 1600, "height": 1200}, accept_downloads=True)
    page.set_default_timeout(WAIT_MS)
    page.goto(workflow["url"])
    page.get_by_text("Open a scan", exact=True).wait_for()
    yield page
    screenshot_on_failure(request, page, artifacts_dir)
    page.close()


def _open_case(page, case_id: str) -> dict:
    page.get_by_text("Results worklist", exact=True).click()
    pick(page, "Case", f"{case_id} [ok]")
    # the synthetic DICOM phantoms' PatientName is their id, so their case id is shown hashed
    page.get_by_role("heading", name=re.compile(f"^({case_id}|case {uid_hash(case_id)} \\(name hidden)")).wait_for()
    page.get_by_text("Result from the batch run").wait_for()
    return settle(page)


def test_every_result_opens_with_its_overlay(page, workflow, artifacts_dir):
    rows = [r for r in workflow["rows"] if r["status"] == "ok"]
    assert len(rows) == 5, workflow["rows"]  # 2 NIfTI + 2 DICOM phantoms + the real head CT
    assert (workflow["results"] / "run.json").is_file()
    for row in rows:
        frames = _open_case(page, row["case_id"])
        assert "not found" not in page.inner_text('[data-testid="stSidebar"]')
        drawn = {plane: overlay_pixels(f) for plane, f in frames.items()}
        assert all(n > 0 for n in drawn.values()), (row["case_id"], drawn)  # the views cut through the result
        assert_page_has_no_phi(page, f"case {row['case_id']}")
        scroll_top(page)
        page.screenshot(path=str(artifacts_dir / f"viewer_result_{row['case_id']}.png"), full_page=True)


def _download(page, name: str, dest):
    # as a user waits: a click while the previous export's rerun is still going can be lost
    idle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name=name).click()
    path = dest / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_every_export_downloads_and_validates(page, workflow, tmp_path):
    head = next(r for r in workflow["rows"] if "head" in r["case_id"])
    _open_case(page, head["case_id"])
    png = _download(page, "PNG snapshot of the views", tmp_path)
    image = Image.open(png)
    assert image.format == "PNG" and image.width > 900
    page.get_by_text("Export", exact=True).click()
    nifti = nib.load(_download(page, "Label map (NIfTI)", tmp_path))
    assert nifti.shape == (256, 256, 108) and np.asarray(nifti.dataobj).max() == 1
    seg_path = _download(page, "DICOM SEG", tmp_path)
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 1
    assert "SENTINEL" not in seg_path.read_bytes().decode("latin-1")
    table = list(csv.DictReader(io.StringIO(_download(page, "Statistics (CSV)", tmp_path).read_text())))
    assert table[0]["name"] == "bone" and float(table[0]["volume_ml"]) > 10
    doc = json.loads(_download(page, "Statistics (JSON)", tmp_path).read_text())
    assert doc["shape"] == [256, 256, 108] and doc["labels"][0]["volume_ml"] == pytest.approx(float(table[0]["volume_ml"]))
    for f in tmp_path.iterdir():
        assert "SENTINEL" not in f.name and "DONOTLEAK" not in f.name


def _numbers(page) -> dict[str, int]:
    text = page.inner_text("body")
    m = re.search(r"Crosshair: sagittal (\d+), coronal (\d+), axial (\d+)", text)
    assert m, "crosshair read-out missing"
    return {"sagittal": int(m[1]), "coronal": int(m[2]), "axial": int(m[3])}


def _shape(frames) -> tuple[int, int, int]:
    n = {p: int(caption_of(f).split("/")[1]) for p, f in frames.items()}
    return n["sagittal"], n["coronal"], n["axial"]


def _point(page, frame, fx: float, fy: float) -> tuple[float, float]:
    box = frame.frame_element().bounding_box()
    img = frame.evaluate("(() => { const r = document.getElementById('img').getBoundingClientRect(); return [r.width, r.height]; })()")
    return box["x"] + fx * img[0], box["y"] + fy * img[1]


def _wait_numbers(page, expect: dict[str, int]) -> None:
    text = f"Crosshair: sagittal {expect['sagittal']}, coronal {expect['coronal']}, axial {expect['axial']}"
    page.get_by_text(text).wait_for()


def test_click_wheel_keys_window_zoom_and_measure(page, artifacts_dir):
    pick(page, "Scan", "phantom_000.nii.gz")
    frames = settle(page)
    shape = _shape(frames)
    start = _numbers(page)
    # click in the axial view: the crosshair moves to that voxel (sagittal and coronal follow)
    rows, cols = shape[1], shape[0]
    fx, fy = (cols // 4 + 0.5) / cols, (3 * rows // 4 + 0.5) / rows
    ijk = voxel_at("axial", fx, fy, [start[p] - 1 for p in ("sagittal", "coronal", "axial")], shape)
    page.mouse.click(*_point(page, frames["axial"], fx, fy))
    _wait_numbers(page, {"sagittal": ijk[0] + 1, "coronal": ijk[1] + 1, "axial": start["axial"]})
    # wheel over the axial view: three slices on; then PageUp in it: ten back (clamped at 1)
    page.mouse.move(*_point(page, frames["axial"], 0.5, 0.5))
    for _ in range(3):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(120)
    axial = min(start["axial"] + 3, shape[2])
    page.get_by_text(f"Axial {axial}/{shape[2]}").wait_for()
    frames = settle(page)
    frames["axial"].locator("#wrap").press("PageUp")
    page.get_by_text(f"Axial {max(1, axial - 10)}/{shape[2]}").wait_for()
    frames = settle(page)
    # right-drag in the coronal view widens the window: 125 px right = about half the width more
    x, y = _point(page, frames["coronal"], 0.3, 0.5)
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x + 125, y, steps=5)
    page.mouse.up(button="right")
    page.get_by_text(re.compile(r"window 6\d\d(\.\d)?/40$")).wait_for()  # 400 + about half
    frames = settle(page)
    # Ctrl+wheel zooms in the browser only
    page.mouse.move(*_point(page, frames["sagittal"], 0.5, 0.5))
    page.keyboard.down("Control")
    page.mouse.wheel(0, -120)
    page.keyboard.up("Control")
    assert frames["sagittal"].locator("#hud").inner_text() == "zoom 1.3x"  # 1.25x
    frames["sagittal"].locator("#wrap").dblclick()
    # distance: Measure tool, two clicks in the axial view, the length in mm on the page
    page.locator("[data-testid=stButtonGroup]").get_by_text("Measure", exact=True).click()
    frames = settle(page)
    frames["axial"].wait_for_function("document.getElementById('wrap').dataset.mode === 'measure'")
    p1 = ((2 + 0.5) / cols, (2 + 0.5) / rows)
    p2 = ((cols - 3 + 0.5) / cols, (rows - 3 + 0.5) / rows)
    page.mouse.click(*_point(page, frames["axial"], *p1))
    page.mouse.click(*_point(page, frames["axial"], *p2))
    page.get_by_text(re.compile(r"distance [\d.]+ mm")).wait_for()
    shown = float(re.search(r"distance ([\d.]+) mm", page.inner_text("body"))[1])
    spacing = [float(v) for v in re.search(r"voxels · ([\d.]+) × ([\d.]+) × ([\d.]+) mm", page.inner_text("body")).groups()]
    assert shown == pytest.approx(distance_mm("axial", p1, p2, shape, spacing), rel=0.005)  # page spacing: 3 digits
    frames = settle(page)
    assert frames["axial"].locator("#mlabel").inner_text() == f"{shown:.1f} mm"
    scroll_top(page)
    page.screenshot(path=str(artifacts_dir / "viewer_measure.png"), full_page=True)


def test_dcm_files_upload_in_the_browser(page, head_ct_series, artifacts_dir):
    """The browser's own type filter must let .dcm through (their MIME type is often
    application/octet-stream); one slice is refused by the reader with the file's name, all
    108 open as the series."""
    files = sorted(str(f) for f in head_ct_series.glob("*.dcm"))
    page.locator('[data-testid="stSidebar"] [data-testid="stRadio"] label').filter(has_text="Upload").click()
    chooser = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').first
    chooser.set_input_files(files[:1])
    page.get_by_text("single 2D image").wait_for()
    assert "not allowed" not in page.inner_text("body")
    assert Path(files[0]).name in page.inner_text('[data-testid="stSidebar"]')
    chooser = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').first
    chooser.set_input_files(files)
    page.get_by_role("heading", name="108 DICOM files").wait_for()
    page.get_by_text("Axial 55/108").wait_for()
    settle(page)
    assert_page_has_no_phi(page, "the page after uploading the series' .dcm files")
    scroll_top(page)
    page.screenshot(path=str(artifacts_dir / "viewer_dcm_upload.png"), full_page=True)
