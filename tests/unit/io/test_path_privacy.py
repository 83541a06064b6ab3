"""Paths as patient data: which names hold the patient's tokens, their pseudonyms, masking of
labels, free text and log lines, and case ids from medssl.io.case_id_for / collect_inputs."""

import logging
import zipfile

import numpy as np
import pytest

from medssl.inference.inputs import collect_inputs
from medssl.io import case_id_for, write_nifti
from medssl.io.path_privacy import (
    Redactor,
    holds_patient_data,
    mask_label,
    mask_text,
    patient_tokens,
    pseudonym,
    read_patient_tokens,
    redacting_logs,
)
from tests.conftest import assert_no_phi

SENTINEL = patient_tokens({"PatientName": "SENTINEL^PHI^DONOTLEAK", "PatientID": "PHI-SENTINEL-0001"})


@pytest.mark.parametrize("name, holds", [
    ("SENTINEL_DONOTLEAK_patient", True), ("PHI-SENTINEL-0001", True), ("phi_sentinel_0001_ct.zip", True),
    ("SentinelDoNotLeak", True), ("IM0000.dcm", False), ("head_ct_series", False), ("patient_0001", False),
    ("sentinels", True),  # a name part of 4+ letters anywhere: conservative on purpose
])  # fmt: skip
def test_holds_patient_data(name, holds):
    assert holds_patient_data(name, SENTINEL) is holds


def test_tokens_need_a_name_or_id():
    assert patient_tokens({}) == frozenset() and patient_tokens({"PatientName": "^", "PatientID": ""}) == frozenset()
    assert not holds_patient_data("anything", frozenset())
    smith = patient_tokens({"PatientName": "Smith^John", "PatientID": "12345"})
    assert holds_patient_data("SMITH_JOHN", smith) and holds_patient_data("scan-12345", smith)
    assert not holds_patient_data("scan-1234", smith)


def test_case_ids_and_labels_are_masked():
    assert case_id_for("/x/SENTINEL_DONOTLEAK_patient", patient=SENTINEL) == pseudonym("SENTINEL_DONOTLEAK_patient")
    assert case_id_for("/x/SENTINEL_DONOTLEAK_patient", patient=SENTINEL).startswith("case-")
    assert case_id_for("/x/head_ct_series", patient=SENTINEL) == "head_ct_series"
    assert case_id_for("/x/head_ct_series", pseudonymize=True) == pseudonym("head_ct_series")
    assert case_id_for("/x/p1_0000.nii.gz") == "p1"  # unchanged without patient data
    label = mask_label("studies/PHI-SENTINEL-0001/CT#series=abcdef123456", SENTINEL)
    assert label == f"studies/{pseudonym('PHI-SENTINEL-0001')}/CT#series=abcdef123456"
    assert mask_label("a/b.zip:m/IM1.dcm", frozenset(), pseudonymize=True).count("case-") == 4
    text = mask_text("x/SENTINEL_DONOTLEAK_patient/IM0001.dcm: pixel data is truncated ('SENTINEL_a.dcm')", SENTINEL)
    assert_no_phi(text, "masked text")
    assert "pixel data is truncated" in text and "IM0001.dcm" in text


def test_redactor_filters_log_records(caplog):
    redactor = Redactor()
    redactor.add(SENTINEL, ["Doe_Jane_scan"])
    log = logging.getLogger("medssl.io.test")
    with caplog.at_level(logging.INFO), redacting_logs(redactor):
        log.info("%s: skipped series %s", "SENTINEL_DONOTLEAK_patient", "abc")
        log.info("%s: read", "Doe_Jane_scan")
        try:
            open("/nonexistent/SENTINEL_DONOTLEAK_patient/IM1.dcm")
        except OSError:
            log.debug("internal error", exc_info=True)
            log.warning("internal error", exc_info=True)
    text = caplog.text
    assert_no_phi(text, "log")
    assert "Doe_Jane" not in text and text.count("case-") >= 3 and "skipped series abc" in text
    assert "FileNotFoundError" in text


def _dicom(path, name="SENTINEL^PHI^DONOTLEAK", pid="PHI-SENTINEL-0001"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName, ds.PatientID = name, pid
    ds.save_as(path, enforce_file_format=True)
    return path


def test_read_patient_tokens_from_folder_zip_and_file(tmp_path):
    folder = tmp_path / "any"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    (folder / "junk.bin").write_bytes(b"\1" * 300)
    _dicom(folder / "IM1.dcm")
    assert read_patient_tokens(folder) == SENTINEL
    assert read_patient_tokens(folder / "IM1.dcm") == SENTINEL
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.write(folder / "IM1.dcm", "deep/IM1.dcm")
    assert read_patient_tokens(tmp_path / "a.zip") == SENTINEL
    (tmp_path / "bad.zip").write_bytes(b"PK\3\4 broken")
    assert read_patient_tokens(tmp_path / "bad.zip") == frozenset()
    write_nifti(np.zeros((4, 4, 4), np.float32), np.eye(4), tmp_path / "ct.nii.gz")
    assert read_patient_tokens(tmp_path / "ct.nii.gz") == frozenset()


def test_collect_inputs_masks_patient_named_inputs(tmp_path):
    root = tmp_path / "studies"
    for name in ("SENTINEL_DONOTLEAK_patient", "PHI-SENTINEL-0001", "plain"):
        (root / name).mkdir(parents=True)
        _dicom(root / name / "IM1.dcm", *(("Other^Person", "X-9") if name == "plain" else ()))
    write_nifti(np.zeros((4, 4, 4), np.float32), np.eye(4), root / "ct_0000.nii.gz")
    redactor = Redactor()
    cases = collect_inputs([root], redactor=redactor)
    by_kind = sorted((c.case_id, c.source) for c in cases if c.kind != "skipped")  # + a no-image row per folder
    for case_id, source in by_kind:
        assert_no_phi(case_id + source, "case id / source")
    assert ("plain", "studies/plain") in by_kind and ("ct", "studies/ct_0000.nii.gz") in by_kind
    assert sum(cid.startswith("case-") for cid, _ in by_kind) == 2
    assert_no_phi(redactor("reading /data/studies/SENTINEL_DONOTLEAK_patient/IM1.dcm"), "redacted")
    assert [c.case_id for c in collect_inputs([root])] == [c.case_id for c in cases]  # stable across runs
    hashed = collect_inputs([root], pseudonymize=True)
    assert all(c.case_id.startswith("case-") for c in hashed)
    assert all(part.startswith("case-") for c in hashed for part in c.source.split("/"))


def test_many_patients_are_matched_like_one():
    many = frozenset().union(*(patient_tokens({"PatientName": f"Smith{i}^John", "PatientID": f"ID-{i:05d}"})
                               for i in range(200)), SENTINEL)  # fmt: skip
    for name, holds in [("SENTINEL_DONOTLEAK_patient", True), ("xxSmith17yy", True), ("scan_ID_00042", True),
                        ("IM0000.dcm", False), ("head_ct_series", False)]:  # fmt: skip
        assert holds_patient_data(name, many) is holds, name


def test_names_in_any_script_are_matched():
    mueller = patient_tokens({"PatientName": "Müller^Jürgen", "PatientID": "Ä-77123"})
    assert holds_patient_data("MÜLLER_Jürgen", mueller) and holds_patient_data("jürgen-müller-ct", mueller)
    assert holds_patient_data("scan_ä77123", mueller) and not holds_patient_data("Mueller", mueller)
    yamada = patient_tokens({"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"})
    assert holds_patient_data("山田太郎_CT", yamada) and holds_patient_data("YAMADA-T", yamada)
