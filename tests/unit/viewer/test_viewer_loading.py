"""Viewer data plumbing: reorientation identical to medssl.io, data folder and worklist
listing, statistics table, exports, the CLI's hardened command line."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from apps.viewer import export
from apps.viewer.loaded import (
    Overlay,
    canonical,
    open_path,
    to_view_grid,
    upload_suffix,
    world_position,
)
from apps.viewer.results import batch_overlay, label_table
from apps.viewer.sources import list_data_dir, list_models, read_worklist, split_source
from medssl.errors import UnsupportedInputError
from medssl.io import Scan, to_canonical
from tests.e2e.viewer_data import make_phantom, write_phantom, write_results


@pytest.mark.parametrize(
    "affine",
    [np.diag([-1.0, -1.0, 2.5, 1.0]), np.array([[0, 0, -2.0, 5], [1.5, 0, 0, -3], [0, -1.0, 0, 7], [0, 0, 0, 1]])],
)
def test_canonical_view_matches_medssl_io(affine):
    array = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    scan = Scan(array=array, affine=affine, modality="CT", source="t", case_id="t")
    ours, theirs = canonical(scan), to_canonical(scan)
    np.testing.assert_array_equal(ours.array, theirs.array)
    np.testing.assert_allclose(ours.affine, theirs.affine)
    assert ours.orientation == "RAS"
    np.testing.assert_array_equal(to_view_grid(scan, array), theirs.array)


def test_phantom_liver_is_on_the_patients_right_after_reorientation(tmp_path):
    image, _ = write_phantom(tmp_path)
    loaded = open_path(image, origin="data")
    view = loaded.view
    assert view.orientation == "RAS" and view.shape == (48, 40, 20)
    bright = np.argwhere(np.asarray(view.array) == 90.0)
    x_world = [world_position(view, tuple(v))[0] for v in bright[:50]]
    assert min(x_world) > world_position(view, (24, 20, 10))[0]  # +x = patient right
    assert world_position(view, (0, 0, 0)) == pytest.approx(tuple(view.affine[:3, 3]))


@pytest.mark.realdata
def test_data_dir_lists_nifti_zip_and_dicom_folders(tmp_path, head_ct_series):
    write_phantom(tmp_path / "nifti")
    (tmp_path / "batch.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    (tmp_path / "dicom").symlink_to(head_ct_series)
    (tmp_path / "notes.txt").write_text("x")
    labels = {e.label: e.kind for e in list_data_dir(tmp_path)}
    assert labels == {"batch.zip": "zip", "nifti/phantom_000.nii.gz": "nifti"}  # links are not followed, the
    # label file opens as the overlay of its scan
    (tmp_path / "dicom").unlink()
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "IM0001.dcm").write_bytes((head_ct_series / "IM0001.dcm").read_bytes())
    assert {e.label: e.kind for e in list_data_dir(tmp_path)}["dicom/ (DICOM)"] == "dicom"


def test_worklist_resolves_sources_masks_and_status(tmp_path):
    image, label = write_phantom(tmp_path / "data")
    results = write_results(tmp_path / "results", image, label)
    ok, failed = read_worklist(results)
    assert (ok.case_id, ok.status, ok.source, ok.mask.name) == ("phantom_000", "ok", image, "phantom_000.nii.gz")
    assert (failed.status, failed.row["code"], failed.source, failed.mask) == ("failed", "corrupt_file", None, None)
    assert read_worklist(tmp_path) == [] and list_models(None) == []
    assert split_source("case1#series=ab12") == ("case1", "ab12") and split_source("x.nii") == ("x.nii", None)


def test_batch_overlay_table_volumes_and_exports(tmp_path):
    image, label_path = write_phantom(tmp_path / "data")
    results = write_results(tmp_path / "results", image, label_path)
    loaded = open_path(image, origin="results")
    loaded.overlay = batch_overlay(loaded, read_worklist(results)[0])
    _, label = make_phantom()
    np.testing.assert_array_equal(loaded.overlay.native, label)
    rows = {r["name"]: r for r in label_table(loaded.scan, loaded.overlay)}
    assert rows["liver"]["volume_ml"] == pytest.approx((label == 1).sum() * 2.5 / 1000, abs=1e-3)
    assert rows["lesion"]["mean_intensity"] == pytest.approx(40.0)
    assert (rows["liver"]["mean_confidence"], rows["liver"]["low_confidence"]) == (0.9, False)  # from CASE.json
    assert (rows["lesion"]["mean_confidence"], rows["lesion"]["low_confidence"]) == (0.5, True)
    out = tmp_path / "label.nii.gz"
    out.write_bytes(export.label_nifti(loaded))
    img = nib.load(out)
    np.testing.assert_array_equal(np.asarray(img.dataobj), label)
    np.testing.assert_allclose(img.affine, loaded.scan.affine)
    assert export.stats_csv(list(rows.values())).decode().startswith("label,name,voxels,volume_ml")
    assert json.loads(export.stats_json(list(rows.values()), loaded))["labels"][0]["name"] == "liver"


def test_low_confidence_is_flagged():
    scan = Scan(array=np.zeros((4, 4, 4), np.float32), affine=np.eye(4), modality="CT", source="t", case_id="t")
    label = np.zeros((4, 4, 4), np.uint8)
    label[:2] = 1
    label[2:] = 2
    conf = np.where(label == 1, 0.95, 0.5).astype(np.float32)
    overlay = Overlay(label=label, native=label, names={1: "a", 2: "b"}, origin="model", confidence=conf)
    rows = {r["name"]: r for r in label_table(scan, overlay)}
    assert rows["a"]["low_confidence"] is False and rows["b"]["low_confidence"] is True
    assert rows["b"]["mean_confidence"] == pytest.approx(0.5)


def test_upload_names_pick_the_reader_only():
    assert upload_suffix("Scan.NII.GZ") == ".nii.gz" and upload_suffix("x.zip") == ".zip"
    with pytest.raises(UnsupportedInputError):
        upload_suffix("evil.exe")


def test_cli_builds_a_hardened_streamlit_command(tmp_path):
    from medssl.cli import build_parser
    from medssl.cli.viewer_cmds import build_command

    args = build_parser().parse_args(["viewer", "--data-dir", str(tmp_path), "--port", "8999"])
    assert isinstance(args, argparse.Namespace)
    cmd, env = build_command(args)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("apps/viewer/server.py")
    flags = set(cmd[5:])
    for flag in ("--server.address=127.0.0.1", "--server.port=8999", "--server.headless=true",
                 "--server.maxUploadSize=512", "--server.enableXsrfProtection=true",
                 "--client.showErrorDetails=none", "--browser.gatherUsageStats=false"):
        assert flag in flags
    assert env["MEDSSL_VIEWER_DATA_DIR"] == str(tmp_path.resolve())


@pytest.mark.realdata
def test_dicom_seg_export_from_a_zipped_upload(head_ct_series, tmp_path, monkeypatch):
    import pydicom

    from apps.viewer.loaded import open_upload
    from tests.conftest import assert_no_phi
    from tests.e2e.viewer_data import zip_bytes

    monkeypatch.setenv("MEDSSL_VIEWER_TMP", str(tmp_path))
    data = zip_bytes({f"series/{p.name}": p.read_bytes() for p in sorted(head_ct_series.iterdir())})
    loaded = open_upload("study.zip", data)
    assert loaded.is_dicom and loaded.phi and loaded.scan.phi == {}
    assert_no_phi(repr(loaded.scan) + repr(loaded.view.meta) + repr(loaded.tags[False]), "scan read for the viewer")
    native = (np.asarray(loaded.scan.array) > 300).astype(np.uint8)
    loaded.overlay = Overlay(label=to_view_grid(loaded.scan, native), native=native, names={1: "bone"}, origin="model")
    seg_bytes = export.dicom_seg(loaded)
    assert_no_phi(seg_bytes.decode("latin-1"), "DICOM SEG export")
    seg = pydicom.dcmread(__import__("io").BytesIO(seg_bytes))
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "bone"
    assert list(tmp_path.iterdir()) == []


def test_classification_result_shows_class_probabilities_and_no_overlay():
    from apps.viewer.loaded import Loaded, canonical
    from apps.viewer.results import model_overlay

    scan = Scan(array=np.zeros((4, 5, 6), np.float32), affine=np.diag([-1.0, 1, 1, 1]), modality="CT",
                source="t", case_id="t")  # fmt: skip

    from medssl.inference.predictor import Prediction

    class Stub:
        def predict(self, scan):
            return Prediction(task="classification", labels={"0": "normal", "1": "abnormal"}, affine=scan.affine,
                              class_probs={"normal": 0.8, "abnormal": 0.2})

    loaded = Loaded(scan=scan, view=canonical(scan), origin="data")
    overlay = model_overlay(loaded, Stub())
    assert overlay.class_probs == {"normal": 0.8, "abnormal": 0.2}
    assert not overlay.label.any() and overlay.label.shape == (4, 5, 6)
    assert label_table(scan, overlay) == [
        {"label": 1, "name": "abnormal", "voxels": 0, "volume_ml": 0.0, "mean_intensity": None,
         "mean_confidence": None, "low_confidence": False}
    ]  # fmt: skip


def test_list_models_offers_artifacts_not_training_state(tmp_path):
    run = tmp_path / "runs" / "ft"
    (run / "checkpoints").mkdir(parents=True)
    for p in (run / "model.pt", run / "best.pt", run / "checkpoints" / "ckpt_10.pt", tmp_path / "other.pt"):
        p.write_bytes(b"x")
    assert list_models(tmp_path) == sorted([run, tmp_path / "other.pt"])


def test_run_record_names_the_inputs_root_absolute_and_relative(tmp_path):
    from medssl.inference.inputs import collect_inputs
    from medssl.inference.records import inputs_roots

    write_phantom(tmp_path / "in" / "a")
    write_phantom(tmp_path / "in" / "b", name="other")
    cases = collect_inputs([tmp_path / "in" / "a" / "phantom_000.nii.gz", tmp_path / "in" / "b"])
    assert inputs_roots(cases, tmp_path / "runs" / "out") == {
        "inputs_root": [str(tmp_path / "in")], "inputs_root_rel": ["../../in"]}


def test_worklist_finds_inputs_outside_every_old_root(tmp_path):
    """predict's ``source`` is relative to the inputs' parent, which may be anywhere: run.json's
    roots find it with the results folder moved along with the inputs, or moved alone."""
    from medssl.inference.records import inputs_roots

    image, label = write_phantom(tmp_path / "far" / "away" / "inputs")
    results = write_results(tmp_path / "runs" / "results", image, label)
    case = SimpleNamespace(source="inputs/phantom_000.nii.gz", path=image, patient=frozenset(), hidden=())
    (results / "run.json").write_text(json.dumps({"counts": {}, **inputs_roots([case], results)}))
    assert read_worklist(results)[0].source == image
    moved = tmp_path / "copy"
    (moved / "far").mkdir(parents=True)
    (tmp_path / "far" / "away").rename(moved / "far" / "away")
    (tmp_path / "runs").rename(moved / "runs")
    assert read_worklist(moved / "runs" / "results")[0].source == moved / "far" / "away" / "inputs" / image.name
    image2, label2 = write_phantom(tmp_path / "stay" / "inputs")
    alone = write_results(tmp_path / "alone", image2, label2)
    case = SimpleNamespace(source="inputs/phantom_000.nii.gz", path=image2, patient=frozenset(), hidden=())
    (alone / "run.json").write_text(json.dumps(inputs_roots([case], alone)))
    (tmp_path / "deep").mkdir()
    alone.rename(tmp_path / "deep" / "moved_alone")
    assert read_worklist(tmp_path / "deep" / "moved_alone")[0].source == image2  # the absolute root


def test_data_folder_never_leads_out_through_symlinks(tmp_path):
    from apps.viewer.sources import escapes

    outside = tmp_path / "outside"
    image, _ = write_phantom(outside)
    data = tmp_path / "data"
    (data / "series").mkdir(parents=True)
    (data / "linked.nii.gz").symlink_to(image)
    (data / "series" / "IM1.dcm").symlink_to(image)
    inner, _ = write_phantom(data / "own")
    (data / "alias.nii.gz").symlink_to(inner)  # a link that stays inside is fine
    labels = {e.label for e in list_data_dir(data)}
    assert "linked.nii.gz" not in labels and "series/ (DICOM)" not in labels
    assert "alias.nii.gz" in labels and "own/phantom_000.nii.gz" in labels
    assert escapes(data, data / "series") and escapes(data, data / "linked.nii.gz")
    assert not escapes(data, data / "own") and not escapes(data, data / "alias.nii.gz")


def test_deep_trees_and_link_loops_neither_hang_nor_crash_the_listing(tmp_path):
    """A series folder with a link back up to itself, and a folder 1,000 levels deep (Python's
    recursive os.walk and rglob stop at about 1,000): the escape check and the models list
    walk them without recursion; too deep is refused, not a RecursionError."""
    from apps.viewer.sources import escapes, list_models
    from tests.unit.io.test_io_hostile_trees import _deep, _remove_deep

    data = tmp_path / "data"
    (data / "series").mkdir(parents=True)
    (data / "series" / "loop").symlink_to(".")
    assert not escapes(data, data / "series")
    deep = _deep(data / "deep", 1000)
    try:
        assert escapes(data, deep)  # deeper than any read goes: not opened
        assert list_models(data) == []
    finally:
        _remove_deep(deep)
