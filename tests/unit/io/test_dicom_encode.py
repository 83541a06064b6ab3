"""``medssl.io.dicom_encode.to_bytes`` writes exactly the bytes pydicom's ``save_as`` writes:
on SEGs of the real series and of an oblique phantom, and on a dataset built to hit every
branch (shared items, undefined lengths, empty, multi-valued, non-ASCII, numpy and
ambiguous-VR values, elements after the per-frame sequence)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from medssl.inference.dicom_seg import build_dicom_seg
from medssl.io import read_dicom_datasets, read_scan
from medssl.io.dicom_encode import to_bytes


def _pydicom(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _labels(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * n).astype(np.uint8)


@pytest.mark.realdata
@pytest.mark.parametrize("keep_identity", [False, True])
def test_real_series_seg_bytes_equal_pydicom(head_ct_series, keep_identity):
    scan = read_scan(head_ct_series)
    datasets = read_dicom_datasets(head_ct_series)
    label = _labels(scan.shape, 4, seed=1)
    label[..., :40] = 0  # empty slices and segments absent from some slices
    seg = build_dicom_seg(label, scan.affine, datasets, {str(i): f"s{i}" for i in range(4)}, uid_seed="t",
                          keep_patient_identity=keep_identity)  # fmt: skip
    assert to_bytes(seg) == _pydicom(seg)


def test_phantom_seg_bytes_equal_pydicom(tmp_path):
    from medssl.data.phantom_io import write_dicom_series
    from tests.unit.inference.test_inference_fixtures import grid_affine, sphere_scan

    affine = grid_affine((0.9, 1.1, 2.5), "LPS", rotate_deg=15.0, origin=(30.0, -12.0, 40.0))
    scan = sphere_scan(affine, (20, 18, 7), affine[:3, 3] + 5.0, 4.0)
    write_dicom_series(scan.array, affine, tmp_path / "series", seed=3)
    datasets = read_dicom_datasets(tmp_path / "series")
    scan = read_scan(tmp_path / "series")
    for label in (_labels(scan.shape, 3, seed=2), np.zeros(scan.shape, np.uint8)):
        seg = build_dicom_seg(label, scan.affine, datasets, {"0": "bg", "1": "a", "2": "b"}, uid_seed="p")
        assert to_bytes(seg) == _pydicom(seg)


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", "Meaning of " + value
    return item


def _frame_item(n: int, shared: Dataset) -> Dataset:
    item = Dataset()
    content = Dataset()
    content.DimensionIndexValues = [1, n + 1]
    content.FrameLabel = "éà" if n == 2 else f"frame {n}"  # non-ASCII text goes through pydicom
    content.FrameAcquisitionNumber = np.uint16(n) if n == 1 else n  # a numpy value too
    item.FrameContentSequence = [content]
    position = Dataset()
    position.ImagePositionPatient = [0.5 * n, -1.25, 1e-7 * n]
    item.PlanePositionSequence = [position]
    item.DerivationImageSequence = [shared]  # the same item in every frame
    item.add(DataElement(0x00209071, "SQ", []))  # an empty sequence
    if n == 3:
        item.is_undefined_length_sequence_item = True
        item.FrameContentSequence[0].add(DataElement(0x00209156, "US", None))  # empty value
    return item


def _dataset(*, after_pixels: bool = False, syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.SegmentationStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["enc"])
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PatientName = "Test^Person"
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = 2, 3, 5, 8
    shared = Dataset()
    shared.DerivationCodeSequence = [_code("113076")]
    shared.SourceImageSequence = [Dataset()]
    shared.SourceImageSequence[0].ReferencedSOPInstanceUID = generate_uid(entropy_srcs=["src"])
    shared.SourceImageSequence[0].ReferencedFrameNumber = 7
    frames = [_frame_item(n, shared) for n in range(5)]
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    undefined = DataElement(0x00081250, "SQ", [_code("1")])  # undefined length, inside an item
    undefined.is_undefined_length = True
    frames[4].add(undefined)
    ds.PixelData = b"\x01\x02\x03"  # odd length: pydicom pads it
    if after_pixels:
        ds.add(DataElement(0xFFFCFFFC, "OB", b"\0\0"))  # DataSetTrailingPadding
    return ds


def test_built_dataset_bytes_equal_pydicom():
    ds = _dataset()
    assert to_bytes(ds) == _pydicom(ds)
    assert to_bytes(ds) == _pydicom(ds)  # the shared-item memo is per call


@pytest.mark.parametrize("case", ["after_pixels", "implicit", "ambiguous", "no_sequence"])
def test_other_datasets_go_to_pydicom(case):
    ds = _dataset(after_pixels=case == "after_pixels",
                  syntax=ImplicitVRLittleEndian if case == "implicit" else ExplicitVRLittleEndian)  # fmt: skip
    if case == "ambiguous":  # pydicom resolves the VR from PixelRepresentation, item by item
        ds.PerFrameFunctionalGroupsSequence[0].add(DataElement(0x00280106, "US or SS", 3))
    if case == "no_sequence":
        del ds.PerFrameFunctionalGroupsSequence
    assert to_bytes(ds) == _pydicom(ds)


def test_read_back_by_pydicom():
    ds = _dataset()
    back = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    frames = back.PerFrameFunctionalGroupsSequence
    assert len(frames) == 5 and list(frames[3].FrameContentSequence[0].DimensionIndexValues) == [1, 4]
    assert frames[2].FrameContentSequence[0].FrameLabel == "éà"
    assert frames[0].DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber == 7
