"""The viewer page driven headless with Streamlit's AppTest: open, slice, window, overlay,
model on demand, refusals of hostile uploads, patient data hidden until revealed."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO, SENTINEL_TEXTS, assert_no_phi
from tests.e2e.viewer_data import (
    make_phantom,
    write_phantom,
    write_results,
    write_tiny_model,
    zip_bytes,
)

APP = REPO / "apps" / "viewer" / "app.py"
PHANTOM = "nifti/phantom_000.nii.gz"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("viewer")
    image, label = write_phantom(root / "data" / "nifti")
    results = write_results(root / "results", image, label)
    models = root / "models"
    write_tiny_model(models)
    return SimpleNamespace(root=root, data=root / "data", results=results, models=models, image=image)


@pytest.fixture
def app(folders, tmp_path, monkeypatch):
    apptmp = tmp_path / "apptmp"
    apptmp.mkdir()
    monkeypatch.setenv("MEDSSL_VIEWER_DATA_DIR", str(folders.data))
    monkeypatch.setenv("MEDSSL_VIEWER_RESULTS_DIR", str(folders.results))
    monkeypatch.setenv("MEDSSL_VIEWER_MODELS_DIR", str(folders.models))
    monkeypatch.setenv("MEDSSL_VIEWER_TMP", str(apptmp))

    def start() -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        assert not at.exception
        return at

    start.tmp = apptmp  # type: ignore[attr-defined]
    return start


def page_text(at: AppTest) -> str:
    """Everything the page would send to the browser, as text (protos include table data)."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def open_phantom(at: AppTest) -> AppTest:
    at.radio(key="source").set_value("Data folder").run()
    at.selectbox(key="pick_data").set_value(PHANTOM).run()
    assert not at.exception and not at.sidebar.error
    return at


VIEW_CAPTION = re.compile(r"^(Axial|Coronal|Sagittal) \d+/\d+$")


def captions(at: AppTest) -> list[str]:
    """The three views' captions (each view is the slice_view component with a caption)."""
    return [c.value for c in at.caption if VIEW_CAPTION.match(c.value)]


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key=f"upload_{at.session_state['upload_generation']}").set_value(list(files)).run()
    return at


def test_pick_from_data_folder_shows_three_planes(app):
    at = open_phantom(app())
    # its label file beside it is the overlay, and the views open through the labelled liver
    # (on the patient's right, +i), not at the volume's centre (sagittal 25)
    assert captions(at) == ["Axial 11/20", "Coronal 21/40", "Sagittal 35/48"]
    assert any("Crosshair: sagittal 35, coronal 21, axial 11" in m.value for m in at.markdown)
    assert at.session_state["loaded"].overlay.origin == "label"
    assert at.slider(key="slice_axial").value == 11 and at.slider(key="slice_axial").min == 1  # 1-based
    assert any(m.value.startswith("#### nifti/phantom_000.nii.gz") for m in at.markdown)  # name above the views


def test_sliders_move_the_crosshair_in_every_view(app):
    at = open_phantom(app())
    at.slider(key="slice_axial").set_value(4).run()
    at.slider(key="slice_sagittal").set_value(41).run()
    assert captions(at) == ["Axial 4/20", "Coronal 21/40", "Sagittal 41/48"]
    assert any("Crosshair: sagittal 41, coronal 21, axial 4" in m.value for m in at.markdown)


def test_presets_and_manual_window(app):
    at = open_phantom(app())
    assert (at.session_state["ww"], at.session_state["wl"]) == (400, 40)  # CT default: soft tissue
    at.button(key="preset_2").click().run()
    assert (at.session_state["ww"], at.session_state["wl"]) == (1500, -600)
    assert at.button(key="preset_2").proto.shortcut == "2"
    at.number_input(key="ww").set_value(123.0).run()
    assert any("window 123/-600" in m.value for m in at.markdown)


def test_upload_nifti_is_read_and_nothing_stays_on_disk(app, folders):
    start = app
    at = start()
    upload(at, ("scan.nii.gz", folders.image.read_bytes(), "application/gzip"))
    assert not at.exception and not at.sidebar.error
    assert len(captions(at)) == 3
    assert list(start.tmp.iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.dcm", "/tmp/medssl_viewer_evil.dcm"])
def test_zip_with_unsafe_member_paths_is_refused(app, member, tmp_path):
    start = app
    at = start()
    upload(at, ("series.zip", zip_bytes({member: b"DICM" * 64}), "application/zip"))
    assert not at.exception
    assert at.sidebar.error and "Cannot open this scan" in at.sidebar.error[0].value
    assert not captions(at)
    assert at.session_state["upload_generation"] == 1  # the refused file is cleared from the widget
    assert list(start.tmp.iterdir()) == []
    assert not Path("/tmp/medssl_viewer_evil.dcm").exists() and not (start.tmp.parent / "evil.dcm").exists()


@pytest.mark.parametrize(
    "payload, says",
    [(lambda: zip_bytes({"a.dcm": np.random.default_rng(0).bytes(50_000)}), "cap"),  # upload too big
     (lambda: zip_bytes({"a.dcm": bytes(200_000)}), "limit")],  # small upload, unpacks too big
)
def test_upload_over_the_cap_is_refused(app, monkeypatch, payload, says):
    monkeypatch.setenv("MEDSSL_VIEWER_MAX_UPLOAD_MB", "0.02")
    start = app
    at = start()
    upload(at, ("series.zip", payload(), "application/zip"))
    assert at.sidebar.error and says in at.sidebar.error[0].value
    assert list(start.tmp.iterdir()) == []


def test_worklist_case_shows_mask_table_and_toggle(app):
    at = app()
    at.radio(key="source").set_value("Results worklist").run()
    at.selectbox(key="pick_case").set_value("phantom_000 [ok]").run()
    assert not at.exception and not at.sidebar.error
    _, label = make_phantom()
    text = page_text(at)
    assert "liver" in text and "lesion" in text
    liver_ml = float((label == 1).sum()) * 2.5 / 1000.0
    assert f"{liver_ml:.2f}" in text
    assert at.warning and "lesion" in at.warning[0].value and "liver" not in at.warning[0].value  # low confidence
    assert at.toggle(key="overlay_on").value is True
    at.toggle(key="overlay_on").set_value(False).run()
    assert not at.exception and len(captions(at)) == 3
    assert "failed" in page_text(at)  # the failed case is listed with its status


def test_model_runs_on_demand(app):
    at = open_phantom(app())
    assert at.selectbox(key="model_choice").value == "tiny_unet.pt"
    at.button(key="run_model").click().run()
    assert not at.exception and not at.error
    assert at.session_state["loaded"].overlay.origin == "model"
    assert at.session_state["loaded"].overlay.native.shape == (48, 40, 20)


@pytest.mark.realdata
def test_patient_fields_hidden_until_reveal(app, head_ct_series, monkeypatch):
    monkeypatch.setenv("MEDSSL_VIEWER_DATA_DIR", str(head_ct_series.parent))
    at = app()
    at.radio(key="source").set_value("Data folder").run()
    at.selectbox(key="pick_data").set_value("head_ct_series/ (DICOM)").run()
    assert not at.exception and not at.sidebar.error
    assert captions(at)[0] == "Axial 55/108"
    assert_no_phi(page_text(at), "viewer page before reveal")
    at.toggle(key="reveal_phi").set_value(True).run()
    text = page_text(at)
    assert SENTINEL_TEXTS[0] in text and "PHI-SENTINEL-0001" in text
    value = float(at.session_state["loaded"].view.array[128, 128, 54])
    assert np.isfinite(value)


def test_oidc_login_configured_hides_everything_until_signed_in(app):
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s",
                          "client_id": "c", "client_secret": "x",
                          "server_metadata_url": "https://idp.invalid/.well-known/openid-configuration"}  # fmt: skip
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.radio and not at.selectbox and not at.file_uploader


@pytest.mark.realdata
def test_mr_opens_with_an_auto_window_and_no_ct_presets(app, real_data, monkeypatch):
    monkeypatch.setenv("MEDSSL_VIEWER_DATA_DIR", str(real_data / "mr"))
    at = app()
    at.selectbox(key="pick_data").set_value("brain1.nii.gz").run()
    assert not at.exception and not at.sidebar.error and len(captions(at)) == 3
    view = at.session_state["loaded"].view
    lo, hi = np.percentile(np.asarray(view.array), [1, 99])
    assert at.session_state["ww"] == pytest.approx(hi - lo, rel=0.1)
    assert not [b for b in at.button if b.key and b.key.startswith("preset_")]


def test_a_label_map_uploaded_for_the_open_scan_is_its_overlay(app, folders):
    at = upload(app(), ("scan.nii.gz", folders.image.read_bytes(), "application/gzip"))
    assert at.session_state["loaded"].overlay is None
    label = folders.image.with_name("phantom_000_label.nii.gz")
    key = f"label_upload_{at.session_state['loaded_key']}"
    at.file_uploader(key=key).set_value([("phantom_000_label.nii.gz", label.read_bytes(), "application/gzip")]).run()
    assert not at.exception and not at.sidebar.error
    overlay = at.session_state["loaded"].overlay
    assert overlay.origin == "label" and overlay.native.max() == 2
    assert captions(at)[2] == "Sagittal 35/48"  # moved into the labelled liver
