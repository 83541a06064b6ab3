"""`medssl predict` on the real head CT DICOM series: bone lands on bone in world space
(checked against SimpleITK's own reading of the series) and the planted patient sentinel
reaches no output, file name, CSV, JSON, DICOM SEG or log line."""

from __future__ import annotations

import csv
import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medssl.cli import main
from tests.conftest import SENTINEL_TEXTS, assert_no_phi
from tests.dciodvfy import dciodvfy_errors
from tests.unit.inference.test_inference_fixtures import threshold_artifact

pytestmark = [pytest.mark.integration, pytest.mark.realdata]
BONE_HU = 300.0


def _sitk_bone_world_ras(folder: Path) -> np.ndarray:
    """World (RAS mm) of every voxel > BONE_HU, as SimpleITK reads the series (LPS)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    zyx = np.argwhere(sitk.GetArrayViewFromImage(image) > BONE_HU)
    xyz = zyx[:, ::-1].astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.array(image.GetOrigin()) + (xyz * np.array(image.GetSpacing())) @ direction.T
    return lps * np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def predicted(head_ct_series, tmp_path_factory):
    root = tmp_path_factory.mktemp("head")
    model = threshold_artifact(root / "model.pt", hu_threshold=BONE_HU, labels={"0": "background", "1": "bone"},
                               preprocessing={"orientation": "RAS", "spacing": [2.0, 2.0, 2.0]}, roi=(64, 64, 64))  # fmt: skip
    out = root / "out"
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    medssl_log = logging.getLogger("medssl")
    old_level = medssl_log.level
    medssl_log.setLevel(logging.DEBUG)  # every medssl log line is checked for the sentinel
    logging.getLogger().addHandler(handler)
    try:
        code = main(["predict", "--model", str(model), "--input", str(head_ct_series), "--output", str(out), "--no-progress"])
    finally:
        logging.getLogger().removeHandler(handler)
        medssl_log.setLevel(old_level)
    return code, out, "\n".join(records)


def test_bone_overlays_bone_in_world_space(predicted, head_ct_series):
    code, out, _ = predicted
    assert code == 0
    with open(out / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    label_img = nib.load(out / f"{row['case_id']}.nii.gz")
    label = np.asarray(label_img.dataobj)
    assert label.shape == (256, 256, 108)
    bone = _sitk_bone_world_ras(head_ct_series)
    pred_world = np.argwhere(label > 0) @ label_img.affine[:3, :3].T + label_img.affine[:3, 3]
    # thin facial bone is partly lost on the model's 2 mm grid, pulling the centroid back ~1.6 mm
    assert np.linalg.norm(pred_world.mean(0) - bone.mean(0)) < 2.5  # mm
    ijk = np.rint((bone - label_img.affine[:3, 3]) @ np.linalg.inv(label_img.affine[:3, :3]).T).astype(int)
    assert label[ijk[:, 0], ijk[:, 1], ijk[:, 2]].mean() > 0.85  # SimpleITK's bone voxels are labelled bone
    volume = float(row["volume_ml_bone"])
    voxel_ml = abs(np.linalg.det(label_img.affine[:3, :3])) / 1000
    assert abs(volume - len(bone) * voxel_ml) / volume < 0.1


def test_head_outline_centroid_within_half_a_millimetre(head_ct_series, tmp_path):
    """A thick structure (everything denser than -300 HU) is not biased by the 2 mm grid."""
    from medssl.inference import Predictor
    from medssl.io import read_scan

    model = threshold_artifact(tmp_path / "m.pt", hu_threshold=-300.0,
                               preprocessing={"orientation": "RAS", "spacing": [2.0, 2.0, 2.0]}, roi=(64, 64, 64))  # fmt: skip
    scan = read_scan(head_ct_series)
    label = Predictor.from_artifact(model, device="cpu").predict(scan).label
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(head_ct_series)))
    image = reader.Execute()
    zyx = np.argwhere(sitk.GetArrayViewFromImage(image) > -300.0)
    lps = np.array(image.GetOrigin()) + (zyx[:, ::-1] * np.array(image.GetSpacing())) @ np.array(image.GetDirection()).reshape(3, 3).T
    expected = lps.mean(0) * np.array([-1.0, -1.0, 1.0])
    got = np.argwhere(label > 0).mean(0) @ scan.affine[:3, :3].T + scan.affine[:3, 3]
    assert np.linalg.norm(got - expected) < 0.5


def test_dicom_seg_is_written_and_deidentified(predicted, head_ct_series):
    _, out, _ = predicted
    (seg_path,) = out.glob("*_seg.dcm")
    seg = pydicom.dcmread(seg_path)
    source = pydicom.dcmread(next(p for p in sorted(head_ct_series.iterdir()) if p.is_file()), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert int(seg.NumberOfFrames) == 108
    assert seg.PatientName.family_name == "ANON" and seg.PatientID.startswith("ANON-")
    assert seg_path.name[: -len("_seg.dcm")].encode() not in seg_path.read_bytes()  # nothing from the path
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "272673000"  # Bone
    assert dciodvfy_errors(seg_path) == []


def test_sentinel_reaches_no_output(predicted, capsys):
    _, out, log_text = predicted
    assert "head_ct_series" in log_text  # the log was captured
    for path in sorted(out.rglob("*")):
        assert_no_phi(path.relative_to(out).as_posix(), "output file name")
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        for text in SENTINEL_TEXTS:
            assert text.encode().lower() not in data.lower(), f"sentinel in {path.name}"
    assert_no_phi(log_text, "log")
    captured = capsys.readouterr()
    assert_no_phi(captured.out + captured.err, "console")
