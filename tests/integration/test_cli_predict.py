"""`medssl predict` end to end on phantom cohorts (NIfTI + DICOM twins) with broken inputs."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import medssl.io
from medssl.cli import main
from medssl.errors import EXIT_ALL_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from medssl.inference.predictor import Predictor
from medssl.io.path_privacy import pseudonym
from tests.unit.inference.test_inference_fixtures import threshold_artifact

pytestmark = pytest.mark.integration
N_SUBJECTS = 10


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """10 phantoms as NIfTI and DICOM, a random-bytes .nii.gz and a folder with one random .dcm."""
    root = tmp_path_factory.mktemp("cohort")
    syn = root / "synth"
    assert main(["-q", "data", "synth", "--out", str(syn), "--n", str(N_SUBJECTS), "--format", "both",
                 "--shape", "32", "32", "12"]) == 0  # fmt: skip
    studies = root / "studies"
    (studies / "nifti").mkdir(parents=True)
    for image in sorted((syn / "nifti").glob("phantom_???.nii.gz")):
        shutil.copy(image, studies / "nifti" / image.name)
    shutil.copytree(syn / "dicom", studies / "dicom")
    rng = np.random.default_rng(0)
    (studies / "broken.nii.gz").write_bytes(rng.bytes(4000))
    (studies / "broken_dicom").mkdir()
    (studies / "broken_dicom" / "IM0000.dcm").write_bytes(rng.bytes(4000))
    return root


@pytest.fixture(scope="module")
def bone_model(tmp_path_factory) -> Path:
    return threshold_artifact(tmp_path_factory.mktemp("model") / "model.pt", hu_threshold=300.0,
                              labels={"0": "background", "1": "bone"},
                              preprocessing={"orientation": "RAS", "spacing": [4.0, 4.0, 4.0]})  # fmt: skip


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_batch_records_every_input_and_continue_does_nothing(cohort, bone_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["-q", "predict", "--model", str(bone_model), "--input", str(cohort / "studies"), "--output", str(out)]
    assert main(argv) == EXIT_PARTIAL
    rows = _rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(ok) == 2 * N_SUBJECTS and len(rows) == 2 * N_SUBJECTS + 2
    assert sorted(r["source"] for r in failed) == ["studies/broken.nii.gz", "studies/broken_dicom"]
    assert all(r["code"] and len(r["reason"]) > 10 for r in failed)
    assert len({r["case_id"] for r in rows}) == len(rows)
    for r in ok:
        cid = r["case_id"]
        assert float(r["volume_ml_bone"]) > 0
        for suffix in (".nii.gz", ".json", ".png"):
            assert (out / f"{cid}{suffix}").is_file()
        assert (out / f"{cid}_seg.dcm").is_file() == r["source"].startswith("studies/dicom/")
    # twins give the same volumes: DICOM and NIfTI of one subject are the same grid
    # (names pair through the pseudonym when a DICOM folder is masked as patient data)
    named = {pseudonym(f"phantom_{i:03d}"): f"phantom_{i:03d}" for i in range(N_SUBJECTS)}
    by_subject: dict[str, list[float]] = {}
    for r in ok:
        name = Path(r["source"]).name.split(".")[0]
        by_subject.setdefault(named.get(name, name), []).append(float(r["volume_ml_bone"]))
    assert len(by_subject) == N_SUBJECTS
    assert all(v[0] == pytest.approx(v[1], rel=1e-5) for v in by_subject.values())

    before = _snapshot(out)
    def no_work(*a, **k):
        raise AssertionError("--continue must not read or predict finished inputs")

    monkeypatch.setattr(Predictor, "predict", no_work)
    monkeypatch.setattr(medssl.io, "read_scan", no_work)
    assert main(argv + ["--continue"]) == EXIT_PARTIAL
    assert _snapshot(out) == before


def test_continue_redoes_a_case_whose_output_is_gone(cohort, bone_model, tmp_path):
    out = tmp_path / "out"
    one = cohort / "studies" / "nifti"
    argv = ["-q", "predict", "--model", str(bone_model), "--input", str(one), "--output", str(out), "--workers", "0"]
    assert main(argv) == EXIT_OK
    first = _snapshot(out)
    (out / "phantom_003.nii.gz").unlink()
    assert main(argv + ["--continue"]) == EXIT_OK
    after = _snapshot(out)
    assert after["phantom_003.nii.gz"][0] == first["phantom_003.nii.gz"][0]
    assert after["phantom_004.json"] == first["phantom_004.json"]  # untouched
    assert after["run.json"] != first["run.json"]  # this run did work
    assert main(argv + ["--continue", "--tta"]) == EXIT_OK  # other settings: every case is redone
    assert len(list(out.glob("*_uncertainty.nii.gz"))) == N_SUBJECTS


def test_labels_land_on_the_input_grid(cohort, tmp_path):
    """A native-grid threshold model must reproduce image > 300 HU voxel for voxel (LPS input)."""
    model = threshold_artifact(tmp_path / "m.pt", hu_threshold=300.0, preprocessing={"orientation": "RAS"})
    src = cohort / "synth" / "nifti" / "phantom_001.nii.gz"
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", str(model), "--input", str(src), "--output", str(out),
                 "--tta", "--save-probabilities"]) == EXIT_OK  # fmt: skip
    image, label = nib.load(src), nib.load(out / "phantom_001.nii.gz")
    assert "".join(nib.aff2axcodes(image.affine)) == "LPS"
    assert label.shape == image.shape and np.allclose(label.affine, image.affine)
    assert np.asarray(label.dataobj).dtype == np.uint8
    assert np.array_equal(np.asarray(label.dataobj) > 0, np.asarray(image.dataobj) > 300)
    assert nib.load(out / "phantom_001_probabilities.nii.gz").shape == (*image.shape, 2)
    assert nib.load(out / "phantom_001_uncertainty.nii.gz").shape == image.shape


def test_all_failed_exit_code_and_manifest_rows(cohort, bone_model, tmp_path):
    studies = cohort / "studies"
    out = tmp_path / "bad"
    assert main(["-q", "predict", "--model", str(bone_model), "--input", str(studies / "broken.nii.gz"),
                 str(studies / "broken_dicom"), str(tmp_path / "nope.nii.gz"), "--output", str(out)]) == EXIT_ALL_FAILED  # fmt: skip
    assert [r["code"] for r in _rows(out)] == ["corrupt", "not_a_scan", "not_found"]

    manifest = studies / "manifest.jsonl"  # rows are relative to the indexed folder
    assert main(["-q", "data", "index", str(studies), "--out", str(manifest)]) == 0
    out = tmp_path / "from_manifest"
    assert main(["-q", "predict", "--model", str(bone_model), "--input", str(manifest), "--output", str(out)]) == EXIT_PARTIAL
    rows = _rows(out)
    assert sum(r["status"] == "ok" for r in rows) == 2 * N_SUBJECTS
    assert sum(r["status"] == "failed" for r in rows) == 2


def test_parts_share_one_output_folder(cohort, bone_model, tmp_path):
    out = tmp_path / "out"
    base = ["-q", "predict", "--model", str(bone_model), "--input", str(cohort / "studies" / "nifti"), "--output", str(out)]
    assert main(base + ["--part", "1", "--of", "3"]) == EXIT_OK
    assert len(_rows(out)) == 4  # cases 1, 4, 7, 10
    assert main(base + ["--part", "2", "--of", "3"]) == EXIT_OK
    assert main(base + ["--part", "3", "--of", "3"]) == EXIT_OK
    rows = _rows(out)
    assert [r["case_id"] for r in rows] == [f"phantom_{i:03d}" for i in range(N_SUBJECTS)]
    assert {p.name for p in out.glob("run_part*.json")} == {"run_part1of3.json", "run_part2of3.json", "run_part3of3.json"}
    for bad in (["--part", "4", "--of", "3"], ["--part", "0"], ["--of", "0"], ["--part", "x"]):
        with pytest.raises(SystemExit) as exc:  # usage errors, caught by argparse
            main(base + bad)
        assert exc.value.code == EXIT_USAGE


def test_inputs_with_the_same_name_keep_their_own_outputs(cohort, bone_model, tmp_path):
    for n, folder in enumerate(("p1", "p2")):
        (tmp_path / folder).mkdir()
        shutil.copy(cohort / "studies" / "nifti" / f"phantom_00{n}.nii.gz", tmp_path / folder / "ct.nii.gz")
    shutil.copytree(cohort / "studies" / "dicom" / "phantom_000", tmp_path / "studyA" / "CT")
    shutil.copytree(cohort / "studies" / "dicom" / "phantom_001", tmp_path / "studyB" / "CT")
    out = tmp_path / "out"
    inputs = [str(tmp_path / p) for p in ("p1/ct.nii.gz", "p2/ct.nii.gz", "studyA/CT", "studyB/CT")]
    argv = ["-q", "predict", "--model", str(bone_model), "--input", *inputs, "--output", str(out), "--no-preview"]
    assert main(argv) == EXIT_OK
    rows = _rows(out)
    assert [r["source"] for r in rows] == ["p1/ct.nii.gz", "p2/ct.nii.gz", "studyA/CT", "studyB/CT"]
    assert len({r["case_id"] for r in rows}) == 4
    assert rows[0]["volume_ml_bone"] != rows[1]["volume_ml_bone"]  # two subjects, two results
    assert all((out / f"{r['case_id']}.nii.gz").is_file() for r in rows)
    assert len(list(out.glob("*_seg.dcm"))) == 2
    assert str(tmp_path) not in (out / "results.csv").read_text()
    before = _snapshot(out)
    assert main(argv + ["--continue"]) == EXIT_OK
    assert _snapshot(out) == before


def test_seg_is_deidentified_unless_asked(cohort, bone_model, tmp_path):
    series = cohort / "studies" / "dicom" / "phantom_004"
    for flags, name in (([], "ANON"), (["--keep-patient-identity"], "SYNTHETIC")):
        out = tmp_path / f"out{len(flags)}"
        argv = ["-q", "predict", "--model", str(bone_model), "--input", str(series), "--output", str(out),
                "--no-preview", *flags]  # fmt: skip
        assert main(argv) == EXIT_OK
        (seg_path,) = out.glob("*_seg.dcm")
        seg = pydicom.dcmread(seg_path)
        assert seg.PatientName.family_name == name and seg.SeriesDescription == "medssl segmentation"
        assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "medssl"


def test_internal_errors_keep_their_message_out_of_the_results(cohort, bone_model, tmp_path, monkeypatch, caplog):
    def leaky(*a, **k):
        raise ValueError("bad tag value 'SENTINEL^PHI^DONOTLEAK'")

    monkeypatch.setattr(Predictor, "predict", leaky)
    out = tmp_path / "out"
    src = cohort / "studies" / "nifti" / "phantom_002.nii.gz"
    assert main(["predict", "--model", str(bone_model), "--input", str(src), "--output", str(out)]) == EXIT_ALL_FAILED
    (row,) = _rows(out)
    assert (row["code"], row["reason"]) == ("internal", "ValueError: internal error; rerun with --debug for details")
    for f in out.rglob("*"):
        assert not f.is_file() or b"SENTINEL" not in f.read_bytes(), f.name
    assert "SENTINEL" not in caplog.text
    caplog.clear()
    assert main(["--debug", "predict", "--model", str(bone_model), "--input", str(src), "--output", str(out)]) == EXIT_ALL_FAILED
    assert "SENTINEL" in caplog.text  # --debug logs the message, still not in results.csv
    assert "SENTINEL" not in (out / "results.csv").read_text()


def test_allow_resample_reads_unevenly_spaced_series(cohort, bone_model, tmp_path):
    series = tmp_path / "gap"
    shutil.copytree(cohort / "studies" / "dicom" / "phantom_003", series)
    for f in sorted(series.glob("IM*.dcm"))[6:]:  # slices 6 on moved 1.5 mm further: spacing varies
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        normal = np.cross(*np.reshape([float(v) for v in ds.ImageOrientationPatient], (2, 3)))
        ds.ImagePositionPatient = [round(v, 4) for v in np.add(ipp, 1.5 * normal)]
        ds.save_as(f)
    out = tmp_path / "out"
    argv = ["-q", "predict", "--model", str(bone_model), "--input", str(series), "--output", str(out)]
    assert main(argv) == EXIT_ALL_FAILED
    assert _rows(out)[0]["code"] == "geometry" and "--allow-resample" in _rows(out)[0]["reason"]
    assert main(argv + ["--continue", "--allow-resample"]) == EXIT_OK  # another setting: redone
    assert _rows(out)[0]["status"] == "ok" and (out / "gap_seg.dcm").is_file()


def test_a_failing_seg_fails_its_case_and_the_batch_goes_on(cohort, bone_model, tmp_path, monkeypatch):
    """The SEG is written beside the NIfTI and the statistics: its error still decides the row."""
    import medssl.inference.case_outputs as case_outputs

    real = case_outputs.write_dicom_seg

    def failing(path, *a, **k):
        if "phantom_001" in str(path):
            raise RuntimeError("frame encoding failed")
        return real(path, *a, **k)

    monkeypatch.setattr(case_outputs, "write_dicom_seg", failing)
    out = tmp_path / "out"
    dicom = cohort / "studies" / "dicom"
    argv = ["-q", "predict", "--model", str(bone_model), "--output", str(out), "--no-preview",
            "--input", str(dicom / "phantom_001"), str(dicom / "phantom_002")]  # fmt: skip
    assert main(argv) == EXIT_PARTIAL
    rows = {r["case_id"]: r for r in _rows(out)}
    assert (rows["phantom_001"]["status"], rows["phantom_001"]["code"]) == ("failed", "internal")
    assert "RuntimeError" in rows["phantom_001"]["reason"]
    assert rows["phantom_002"]["status"] == "ok" and (out / "phantom_002_seg.dcm").is_file()


def test_predict_keeps_freed_memory_for_reuse(cohort, bone_model, tmp_path, monkeypatch):
    import medssl.devices

    calls = []
    monkeypatch.setattr(medssl.devices, "keep_freed_memory", lambda default=False: calls.append(default) or True)
    src = cohort / "studies" / "nifti" / "phantom_002.nii.gz"
    assert main(["-q", "predict", "--model", str(bone_model), "--input", str(src), "--output", str(tmp_path / "o"),
                 "--no-preview"]) == EXIT_OK  # fmt: skip
    assert calls == [True]
