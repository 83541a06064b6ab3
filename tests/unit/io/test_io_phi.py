"""Patient data never leaves read_scan unless asked; UIDs become salted hashes."""

from __future__ import annotations

import json
import logging
import stat

import pydicom
import pytest

from medssl.errors import GeometryError, InputError
from medssl.io import case_id_for, dicom_tags, probe, read_scan, uid_hash
from medssl.io import phi as phi_module
from tests.conftest import assert_no_phi
from tests.unit.io.test_io_helpers import SENTINEL_ID, SENTINEL_NAME, make_series

UID = "1.2.826.0.1.3680043.8.498.12345"


def test_uid_hash_is_salted_short_and_stable(monkeypatch):
    monkeypatch.setenv("MEDSSL_UID_SALT", "a")
    first = uid_hash(UID)
    assert first == uid_hash(UID) and len(first) == 12 and UID not in first
    monkeypatch.setenv("MEDSSL_UID_SALT", "b")
    assert uid_hash(UID) != first and uid_hash("") == ""


def test_salt_file_is_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSSL_UID_SALT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    phi_module._file_salt.cache_clear()
    first = uid_hash(UID)
    salt_file = tmp_path / "medssl" / "salt"
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    phi_module._file_salt.cache_clear()
    assert uid_hash(UID) == first
    phi_module._file_salt.cache_clear()


def test_nothing_identifying_in_scan_logs_or_probe(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    make_series(tmp_path / "a", 4, series_uid=UID)
    make_series(tmp_path / "a", 3, series_uid=UID + ".2", prefix="B")
    scan = read_scan(tmp_path / "a")
    text = json.dumps({"meta": scan.meta, "series": [s.__dict__ for s in scan.series]}, default=str)
    text += repr(scan) + str(probe(tmp_path / "a")) + caplog.text
    assert_no_phi(text, "scan, probe and logs")
    assert UID not in text and "19000101" not in text
    assert scan.phi == {}
    assert read_scan(tmp_path / "a", reveal_phi=True).phi["PatientName"] == SENTINEL_NAME


def test_errors_name_the_series_not_the_patient(tmp_path):
    make_series(tmp_path, 5, offsets=[0, 2, 4, 8, 10], series_uid=UID)
    with pytest.raises(GeometryError) as info:
        read_scan(tmp_path)
    assert_no_phi(str(info.value), "error")
    assert UID not in str(info.value) and uid_hash(UID) in str(info.value)


def test_tag_browser_masks_phi_unless_revealed(tmp_path):
    make_series(tmp_path, 3, series_uid=UID)
    rows = {r["keyword"]: r for r in dicom_tags(tmp_path)}
    assert rows["PatientName"]["value"] == "<hidden>" and rows["PatientID"]["value"] == "<hidden>"
    assert rows["PatientBirthDate"]["value"] == "<hidden>"
    assert rows["SeriesInstanceUID"]["value"] == f"hash:{uid_hash(UID)}"
    assert rows["Modality"]["value"] == "CT" and rows["PatientName"]["tag"] == "(0010,0010)"
    assert_no_phi(json.dumps(list(rows.values())), "tag browser")
    shown = {r["keyword"]: r["value"] for r in dicom_tags(tmp_path, reveal_phi=True)}
    assert shown["PatientName"] == SENTINEL_NAME and shown["PatientID"] == SENTINEL_ID
    assert shown["SeriesInstanceUID"] == UID


@pytest.mark.parametrize("path, expected", [("/d/lung_001_0000.nii.gz", "lung_001"), ("/d/case 7.nii", "case_7"),
                                            ("/d/series.zip", "series"), ("/d/head_ct_series", "head_ct_series"),
                                            ("/d/ä?.dcm", "case")])  # fmt: skip
def test_case_id_from_names_only(path, expected):
    assert case_id_for(path) == expected


FREE_TEXT = {"StudyDescription": "CT HEAD SENTINEL", "SeriesDescription": "AX SENTINEL 5mm",
             "ProtocolName": "SENTINEL protocol", "ImageComments": "SENTINEL said hello",
             "RequestedProcedureDescription": "SENTINEL req", "PerformedProcedureStepDescription": "SENTINEL pps",
             "AdditionalPatientHistory": "SENTINEL history"}  # fmt: skip


def _free_text_series(folder):
    make_series(folder, 3, series_uid=UID)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        for keyword, value in FREE_TEXT.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


def test_free_text_descriptions_are_phi(tmp_path, capsys):
    from medssl.cli import main

    _free_text_series(tmp_path)
    rows = {r["keyword"]: r["value"] for r in dicom_tags(tmp_path)}
    assert all(rows[k] == "<hidden>" for k in FREE_TEXT)
    scan = read_scan(tmp_path)
    text = json.dumps({"meta": scan.meta, "series": [s.__dict__ for s in scan.series]}, default=str)
    assert "SENTINEL" not in text + str(probe(tmp_path)) and scan.series[0].description == ""
    revealed = read_scan(tmp_path, reveal_phi=True)
    assert revealed.series[0].description == FREE_TEXT["SeriesDescription"]
    assert revealed.phi["SeriesDescription"] == FREE_TEXT["SeriesDescription"]
    assert {r["keyword"]: r["value"] for r in dicom_tags(tmp_path, reveal_phi=True)}["ProtocolName"] == \
        FREE_TEXT["ProtocolName"]  # fmt: skip
    assert main(["inspect", str(tmp_path)]) == 0
    assert "SENTINEL" not in capsys.readouterr().out
    assert main(["inspect", str(tmp_path), "--show-phi"]) == 0
    assert FREE_TEXT["SeriesDescription"] in capsys.readouterr().out


def test_unwritable_cache_gives_a_stable_salt_not_a_random_one(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MEDSSL_UID_SALT", raising=False)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a_file" / "cache"))  # cannot be created
    hashes = []
    for _ in range(2):  # as two runs would: nothing cached in between
        phi_module._file_salt.cache_clear()
        phi_module._fallback_salt.cache_clear()
        hashes.append(uid_hash(UID))
    phi_module._file_salt.cache_clear()
    phi_module._fallback_salt.cache_clear()
    assert hashes[0] == hashes[1] and phi_module.uid_salt() == phi_module.machine_salt()
    assert "derived from this machine's id" in caplog.text


def test_series_hash_lookup_names_the_hash_and_the_salt(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSSL_UID_SALT", "one")
    make_series(tmp_path, 3, series_uid=UID)
    wanted = uid_hash(UID)
    assert read_scan(tmp_path, series_uid=wanted).shape[2] == 3
    monkeypatch.setenv("MEDSSL_UID_SALT", "two")  # e.g. a manifest made on another machine
    with pytest.raises(InputError, match=f"no series matches '{wanted}'.*another MEDSSL_UID_SALT") as info:
        read_scan(tmp_path, series_uid=wanted)
    assert info.value.code == "series_not_found"
    with pytest.raises(InputError) as info:
        read_scan(tmp_path, series_uid="1.2.3.999")
    assert "1.2.3.999" not in str(info.value) and uid_hash("1.2.3.999") in str(info.value)
