"""DICOM SEG: references the source series, one frame per source slice and segment, and its
mask sits at the same world coordinates as the NIfTI label map."""

from __future__ import annotations

import random

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from medssl.data.phantom_io import write_dicom_series
from medssl.inference import Predictor
from medssl.inference.dicom_seg import write_dicom_seg
from medssl.inference.outputs import write_nifti
from medssl.io import read_dicom_datasets, read_scan
from tests.dciodvfy import dciodvfy_errors
from tests.unit.inference.test_inference_fixtures import (
    grid_affine,
    sphere_scan,
    threshold_artifact,
)

SHAPE = (30, 26, 12)
LABELS = {"0": "background", "1": "sphere", "2": "box"}


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory):
    """An oblique LPS series (rotated 15 degrees about z, 2.5 mm slices) with a bright sphere."""
    folder = tmp_path_factory.mktemp("dcm")
    affine = grid_affine((0.9, 1.1, 2.5), "LPS", rotate_deg=15.0, origin=(30.0, -12.0, 40.0))
    centre = affine[:3, :3] @ np.array([11.0, 15.0, 6.0]) + affine[:3, 3]
    scan = sphere_scan(affine, SHAPE, centre, 6.0)
    write_dicom_series(scan.array, affine, folder / "series", seed=3)
    return folder / "series", affine


def _world_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    pts = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    return pts[np.lexsort(np.round(pts, 2).T[::-1])]


def _seg_world_points(seg: hd.seg.Segmentation, segment: int) -> np.ndarray:
    vol = seg.get_volume(segment_numbers=[segment], combine_segments=True)  # affine in LPS
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine
    return _world_points(vol.array > 0, ras)


def test_seg_matches_nifti_in_world_space(dicom_phantom, tmp_path):
    folder, affine = dicom_phantom
    scan = read_scan(folder)
    assert np.allclose(scan.affine, affine, atol=1e-3)
    model = threshold_artifact(tmp_path / "m.pt", preprocessing={"orientation": "RAS", "spacing": [1.2, 1.2, 1.2]})
    label = Predictor.from_artifact(model, device="cpu").predict(scan).label
    assert label.sum() > 100
    write_nifti(tmp_path / "case.nii.gz", label, scan.affine)
    datasets = read_dicom_datasets(folder)
    random.Random(0).shuffle(datasets)  # the writer must not depend on slice order
    write_dicom_seg(tmp_path / "case_seg.dcm", label, scan.affine, datasets, {"0": "background", "1": "sphere"},
                    "case", uid_seed="t")  # fmt: skip

    nifti = nib.load(tmp_path / "case.nii.gz")
    nifti_pts = _world_points(np.asarray(nifti.dataobj) > 0, nifti.affine)
    seg = hd.seg.segread(tmp_path / "case_seg.dcm")
    seg_pts = _seg_world_points(seg, 1)
    assert seg_pts.shape == nifti_pts.shape
    assert np.abs(seg_pts - nifti_pts).max() < 0.01  # mm


def test_seg_references_series_frames_and_hides_patient(dicom_phantom, tmp_path):
    folder, _ = dicom_phantom
    scan = read_scan(folder)
    datasets = read_dicom_datasets(folder)
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 5:10, 2:4] = 1
    label[20:24, 3:6, 8:11] = 2
    name_before = str(datasets[0].PatientName)
    write_dicom_seg(tmp_path / "s.dcm", label, scan.affine, datasets, LABELS, "case_007", uid_seed="u")
    raw = (tmp_path / "s.dcm").read_bytes()
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    assert ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert ds.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert int(ds.NumberOfFrames) == len(datasets) * 2  # one per source slice and segment
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["sphere", "box"]
    assert ds.PatientName.family_name == "ANON" and ds.PatientID.startswith("ANON-") and ds.PatientIdentityRemoved == "YES"
    assert b"case_007" not in raw  # the case id may be a file name: never written
    assert str(datasets[0].PatientName) == name_before  # the sources are left alone
    assert name_before.encode() not in raw and datasets[0].PatientID.encode() not in raw
    seg = hd.seg.Segmentation.from_dataset(ds)
    for segment in (1, 2):
        expected = _world_points(label == segment, scan.affine)
        assert np.abs(_seg_world_points(seg, segment) - expected).max() < 0.01


def test_seg_drops_study_and_series_free_text_but_keeps_uids(dicom_phantom, tmp_path):
    folder, _ = dicom_phantom
    scan = read_scan(folder)
    datasets = read_dicom_datasets(folder)
    planted = {"StudyDescription": "SENTINEL-STUDYDESC", "SeriesDescription": "SENTINEL-SERIESDESC",
               "ProtocolName": "SENTINEL-PROTOCOL", "PatientComments": "SENTINEL-COMMENTS",
               "RequestedProcedureDescription": "SENTINEL-REQUEST", "StudyComments": "SENTINEL-STUDYCOMMENTS",
               "PhysiciansOfRecord": "SENTINEL^DOCTOR"}  # fmt: skip
    for ds in datasets:
        for keyword, value in planted.items():
            setattr(ds, keyword, value)
        ds.ProcedureCodeSequence = [pydicom.Dataset()]
        ds.ProcedureCodeSequence[0].CodeMeaning = "SENTINEL-PROCEDURE"
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 5:10, 2:4] = 1
    write_dicom_seg(tmp_path / "s.dcm", label, scan.affine, datasets, LABELS, "case_9", uid_seed="v")
    raw = (tmp_path / "s.dcm").read_bytes()
    assert b"SENTINEL" not in raw
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    assert ds.StudyInstanceUID == datasets[0].StudyInstanceUID  # links the SEG to its source study
    assert ds.StudyDescription == "" and ds.SeriesDescription == "medssl segmentation"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113110"]
    assert datasets[0].StudyDescription == "SENTINEL-STUDYDESC"  # the sources are left alone


def test_seg_passes_dciodvfy_with_coded_segments(dicom_phantom, tmp_path):
    folder, _ = dicom_phantom
    scan = read_scan(folder)
    datasets = read_dicom_datasets(folder)
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 5:10, 2:4] = 1
    label[20:24, 3:6, 8:11] = 2
    label[12:16, 12:16, 5:7] = 3
    labels = {"0": "background", "1": "kidney", "2": "lesion", "3": "left_lung"}
    path = write_dicom_seg(tmp_path / "s.dcm", label, scan.affine, datasets, labels, "c", uid_seed="w",
                           model_name="swin_unetr", version="1.2.3")  # fmt: skip
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert len(ds.DeidentificationMethod) <= 64
    segs = ds.SegmentSequence
    kidney, lesion, lung = (s.SegmentedPropertyTypeCodeSequence[0] for s in segs)
    assert segs[0].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert (kidney.CodeValue, kidney.CodingSchemeDesignator, kidney.CodeMeaning) == ("64033007", "SCT", "Kidney")
    assert segs[1].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert lesion.CodeValue == "52988006"
    assert lung.CodeValue == "39607008" and lung.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    assert all(len(s.RecommendedDisplayCIELabValue) == 3 for s in segs)
    algo = segs[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("medssl", "1.2.3")
    assert "swin_unetr" in algo.AlgorithmParameters


def test_seg_codes_from_a_user_vocabulary(dicom_phantom, tmp_path):
    from medssl.data.labels import LabelVocabulary

    folder, _ = dicom_phantom
    datasets = read_dicom_datasets(folder)
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 5:10, 2:4] = 1
    vocab = LabelVocabulary.from_dict({"1": {"category": "SCT:49755003:Morphologically Abnormal Structure",
                                             "type": ["4147007", "SCT", "Mass"], "color": [255, 0, 0]}})  # fmt: skip
    path = write_dicom_seg(tmp_path / "s.dcm", label, read_scan(folder).affine, datasets, {"0": "bg", "1": "blob"},
                           uid_seed="x", vocabulary=vocab)  # fmt: skip
    seg = pydicom.dcmread(path).SegmentSequence[0]
    assert seg.SegmentedPropertyTypeCodeSequence[0].CodeValue == "4147007"
    assert hd.color.CIELabColor.from_dicom_value(seg.RecommendedDisplayCIELabValue).to_rgb() == (255, 0, 0)
    assert dciodvfy_errors(path) == []


def test_seg_keeps_patient_identity_only_when_asked(dicom_phantom, tmp_path):
    folder, _ = dicom_phantom
    datasets = read_dicom_datasets(folder)
    for ds in datasets:
        ds.PatientName, ds.PatientID, ds.StudyDescription = "SENTINEL^PHI", "PHI-0001", "SENTINEL-STUDY"
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 5:10, 2:4] = 1
    path = write_dicom_seg(tmp_path / "s.dcm", label, read_scan(folder).affine, datasets, LABELS, "c", uid_seed="y",
                           keep_patient_identity=True)  # fmt: skip
    ds = pydicom.dcmread(path)
    assert (str(ds.PatientName), ds.PatientID, ds.StudyDescription) == ("SENTINEL^PHI", "PHI-0001", "SENTINEL-STUDY")
    assert ds.SeriesDescription == "medssl segmentation" and "PatientIdentityRemoved" not in ds
    assert dciodvfy_errors(path) == []


def test_seg_with_column_cosine_towards_anterior_is_not_mirrored(tmp_path):
    """IOP column cosine [0, -1, 0] (rows run posterior -> anterior): the case TotalSegmentator
    once wrote mirrored front-to-back."""
    affine = grid_affine((1.0, 1.2, 2.0), "LAS", origin=(20.0, -30.0, 10.0))
    label = np.zeros(SHAPE, np.uint8)
    label[4:9, 2:6, 3:5] = 1  # near the posterior edge only: a mirror would move it to the front
    scan = sphere_scan(affine, SHAPE, affine[:3, 3], 3.0)
    write_dicom_series(scan.array, affine, tmp_path / "series", seed=4)
    datasets = read_dicom_datasets(tmp_path / "series")
    assert [round(float(v)) for v in datasets[0].ImageOrientationPatient[3:]] == [0, -1, 0]
    path = write_dicom_seg(tmp_path / "s.dcm", label, affine, datasets, {"0": "bg", "1": "blob"}, uid_seed="z")
    seg = hd.seg.segread(path)
    expected = _world_points(label == 1, affine)
    assert np.abs(_seg_world_points(seg, 1) - expected).max() < 0.01
    assert dciodvfy_errors(path) == []


def test_label_resampling_keeps_half_voxel_edges():
    from medssl.data.label_resample import resample_label

    label = np.arange(1, 5, dtype=np.uint8)[:, None, None]
    shifted = np.eye(4)
    shifted[0, 3] = -0.4  # target voxel 0 sits 0.4 voxel before the source's first centre: still inside it
    assert resample_label(label, np.eye(4), (4, 1, 1), shifted).ravel().tolist() == [1, 2, 3, 4]
    shifted[0, 3] = 0.6
    assert resample_label(label, np.eye(4), (4, 1, 1), shifted).ravel().tolist() == [2, 3, 4, 0]


def _slice_datasets(affine_lps: np.ndarray, shape: tuple[int, int, int]) -> list[pydicom.Dataset]:
    """Header-only datasets of a series on ``affine_lps`` (voxel (i=column, j=row, k) -> LPS)."""
    out = []
    for k in range(shape[2]):
        ds = pydicom.Dataset()
        spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
        ds.Rows, ds.Columns = shape[1], shape[0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.ImageOrientationPatient = [*(affine_lps[:3, 0] / spacing[0]), *(affine_lps[:3, 1] / spacing[1])]
        ds.ImagePositionPatient = list(affine_lps[:3, :3] @ [0, 0, k] + affine_lps[:3, 3])
        out.append(ds)
    return out


def _frame_grid(lps: np.ndarray, k: int) -> np.ndarray:
    """Frame (row, column, 0) of slice k -> RAS: rows run along voxel j, columns along i."""
    grid = np.eye(4)
    grid[:3, 0], grid[:3, 1], grid[:3, 2] = lps[:3, 1], lps[:3, 0], lps[:3, 2]
    grid[:3, 3] = lps[:3, :3] @ [0, 0, k] + lps[:3, 3]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid


def _interpolated(label: np.ndarray, src: np.ndarray, shape: tuple[int, ...], dst: np.ndarray) -> np.ndarray:
    """The general nearest-neighbour resample through world space (scipy), no shortcut."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(src) @ dst
    return affine_transform(label, m[:3, :3], m[:3, 3], output_shape=shape, order=0, mode="grid-constant", cval=0)


@pytest.mark.parametrize("case", ["same_grid", "flipped_ras", "permuted", "half_voxel", "partly_outside"])
def test_seg_frames_cut_from_the_label_equal_the_general_resample(case, monkeypatch):
    from medssl.inference.dicom_seg import frames_from_label

    shape = (20, 16, 7)
    lps = np.diag([0.8, 0.8, 2.5, 1.0])
    lps[:3, 3] = (-5.0, 3.0, 40.0)
    ras_of_series = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    label = np.random.default_rng(1).integers(0, 3, shape).astype(np.uint8)
    label_affine = ras_of_series
    if case == "flipped_ras":  # the label reoriented to RAS: two axes flipped
        ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(ras_of_series),
                                               nib.orientations.axcodes2ornt("RAS"))  # fmt: skip
        label_affine = ras_of_series @ nib.orientations.inv_ornt_aff(ornt, shape)
        label = nib.orientations.apply_orientation(label, ornt).astype(np.uint8)
    elif case == "permuted":
        label, label_affine = label.transpose(2, 0, 1).copy(), ras_of_series[:, [2, 0, 1, 3]]
    elif case == "half_voxel":
        label_affine = label_affine.copy()
        label_affine[:3, 3] += label_affine[:3, 0] * 0.5
    elif case == "partly_outside":
        label, label_affine = label[2:], label_affine @ np.array([[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    datasets = _slice_datasets(lps, shape)
    frames = frames_from_label(label, label_affine, datasets)
    expected = np.stack([_interpolated(label, label_affine, (shape[1], shape[0], 1), _frame_grid(lps, k))[..., 0]
                         for k in range(shape[2])])  # fmt: skip
    assert frames.shape == (shape[2], shape[1], shape[0])
    assert np.array_equal(frames, expected)
    if case in ("same_grid", "flipped_ras", "permuted"):  # cut out, never resampled
        import scipy.ndimage

        monkeypatch.setattr(scipy.ndimage, "affine_transform", lambda *a, **k: pytest.fail("resampled"))
        assert np.array_equal(frames_from_label(label, label_affine, datasets), expected) and frames.any()
