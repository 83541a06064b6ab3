"""A PACS export's folder named after the patient (README "Patient data in paths"): with
patient data hidden, the viewer page shows it only as ``case-<hash>`` (picker, heading,
metadata, worklist, errors, download names); revealed, its real name may show."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medssl.io.path_privacy import pseudonym
from tests.conftest import assert_no_phi
from tests.unit.viewer.test_viewer_app import APP, page_text

PATIENT_DIR = "SENTINEL_DONOTLEAK_patient"
HIDDEN = f"{pseudonym(PATIENT_DIR)}/ (DICOM)"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def data(tmp_path_factory, head_ct_series) -> Path:
    """The real series copied under the patient's name, a NIfTI in a folder named after the
    patient too (no tags of its own), and one named after no one."""
    root = tmp_path_factory.mktemp("phi_paths") / "data"
    shutil.copytree(head_ct_series, root / PATIENT_DIR)
    tiny = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4))
    for rel in (f"{PATIENT_DIR}_derived/seg.nii.gz", "plain/phantom.nii.gz"):
        (root / rel).parent.mkdir(parents=True)
        nib.save(tiny, root / rel)
    return root


def start(monkeypatch, tmp_path, data: Path, results: Path | None = None) -> AppTest:
    monkeypatch.setenv("MEDSSL_VIEWER_DATA_DIR", str(data))
    if results is not None:
        monkeypatch.setenv("MEDSSL_VIEWER_RESULTS_DIR", str(results))
    (tmp_path / "apptmp").mkdir(exist_ok=True)
    monkeypatch.setenv("MEDSSL_VIEWER_TMP", str(tmp_path / "apptmp"))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def rendered(at: AppTest) -> str:
    """Every element's proto (what the browser gets) plus each element's label, value (as
    shown), options, placeholder and help as the test API reads them (tables as frames)."""
    texts = [page_text(at)]

    def walk(node) -> None:
        for attr in ("label", "value", "options", "placeholder", "help", "body"):
            try:
                value = getattr(node, attr)
            except Exception:  # noqa: BLE001 - not every element has every attribute
                continue
            if attr == "value" and value is not None and callable(getattr(node, "format_func", None)):
                value = node.format_func(value)  # a picker's value stays on the server; this is shown
            if value is not None and not callable(value):
                texts.append(value.to_string() if hasattr(value, "to_string") else str(value))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(texts)


def test_a_patient_named_folder_shows_as_its_pseudonym_until_revealed(monkeypatch, tmp_path, data):
    at = start(monkeypatch, tmp_path, data)
    at.radio(key="source").set_value("Data folder").run()
    picker = at.selectbox(key="pick_data")
    assert picker.options == [HIDDEN, f"{pseudonym(PATIENT_DIR + '_derived')}/seg.nii.gz", "plain/phantom.nii.gz"]
    assert_no_phi(rendered(at), "the scan picker")

    picker.set_value(f"{PATIENT_DIR}/ (DICOM)").run()
    assert not at.exception and not at.sidebar.error
    loaded = at.session_state["loaded"]
    assert loaded.case_id == loaded.scan.case_id == pseudonym(PATIENT_DIR)  # exports and the DICOM SEG use it
    assert any(m.value.startswith(f"#### {HIDDEN}") for m in at.markdown)
    assert at.selectbox(key="pick_data").value == f"{PATIENT_DIR}/ (DICOM)"  # the choice is kept
    assert_no_phi(rendered(at), "the page of the open scan")

    at.toggle(key="reveal_phi").set_value(True).run()
    text = rendered(at)
    assert f"#### {PATIENT_DIR}/ (DICOM)" in text and "PHI-SENTINEL-0001" in text
    assert at.selectbox(key="pick_data").options[0] == HIDDEN  # the list of every patient stays masked
    at.toggle(key="reveal_phi").set_value(False).run()
    assert_no_phi(rendered(at), "the page hidden again")


def test_errors_and_the_worklist_mask_the_folder(monkeypatch, tmp_path, data):
    results = tmp_path / "results"
    results.mkdir()
    with (results / "results.csv").open("w", newline="") as fh:  # as a run before masking wrote it
        writer = csv.DictWriter(fh, fieldnames=["case_id", "status", "code", "reason", "source"])
        writer.writeheader()
        reason = f"{PATIENT_DIR}/IM0001.dcm: truncated"
        writer.writerow({"case_id": PATIENT_DIR, "status": "failed", "code": "corrupt", "reason": reason,
                         "source": str(data / PATIENT_DIR)})  # fmt: skip
    at = start(monkeypatch, tmp_path, data, results)
    at.radio(key="source").set_value("Results worklist").run()
    assert at.selectbox(key="pick_case").options == [f"{pseudonym(PATIENT_DIR)} [failed]"]
    assert_no_phi(rendered(at), "the worklist")

    one = data / f"{PATIENT_DIR}_one"  # one slice, named after the patient too: refused by the reader
    one.mkdir()
    shutil.copy(next((data / PATIENT_DIR).glob("*.dcm")), one / "SENTINEL_DONOTLEAK.dcm")
    try:
        at.radio(key="source").set_value("Data folder").run()
        at.selectbox(key="pick_data").set_value(f"{PATIENT_DIR}_one/ (DICOM)").run()
        assert at.sidebar.error and "single 2D image" in at.sidebar.error[0].value
        assert pseudonym("SENTINEL_DONOTLEAK.dcm") in at.sidebar.error[0].value
        assert_no_phi(rendered(at), "a refusal")
    finally:
        shutil.rmtree(one)
