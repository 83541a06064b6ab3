"""DICOM SEG export of a label map predicted for a DICOM series (highdicom).

Frames: one per source slice and segment (``omit_empty_frames=False``). Each source slice's
frame is sampled from the label map through world space: pixel (row r, column c) of a slice
sits at ``IPP + c * column_spacing * row_cosine + r * row_spacing * column_cosine`` (LPS),
which is mapped to the label map's voxel index with the scan's RAS+ affine. This holds
whatever order the slices came in and however the scan array is stored.

Segments are coded from a :class:`~medssl.data.labels.LabelVocabulary` (SNOMED CT
category and type, laterality modifier, RecommendedDisplayCIELabValue); the algorithm is
``medssl`` at the package version, the network name its parameter.

Patient data: highdicom copies the Patient and Study modules from the first source image.
By default it is handed a header-only stand-in for each source, de-identified along the
PS3.15 Annex E basic profile: every free-text, person-name, date and time value
(StudyDescription, SeriesDescription, ProtocolName, comments, ...) is emptied, sequences
(procedure codes, referenced studies, physician identification, ...) and private tags are
dropped. UIDs are kept on purpose: the SEG carries the source's StudyInstanceUID (and
references its Series/SOP/Frame of Reference UIDs) so that it links to its source series.
Patient name becomes ``ANON`` and patient ID ``ANON-`` + a hash of the (retained) study UID,
never anything taken from the case id or file name; PatientIdentityRemoved is YES. With
``keep_patient_identity=True`` the source's Patient and Study modules are copied as they
are (for a SEG that goes back into the PACS it came from)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medssl import __version__
from medssl.atomic import atomic_write_bytes
from medssl.data.label_resample import resample_label
from medssl.data.labels import Code, LabelVocabulary
from medssl.io.dicom_encode import to_bytes
from medssl.io.phi import PHI_KEYWORDS

logging.getLogger("highdicom").setLevel(logging.WARNING)  # its INFO lines name source UIDs


def frames_from_label(label: np.ndarray, affine: np.ndarray, datasets: Sequence[Dataset]) -> np.ndarray:
    """(n_slices, rows, cols) uint8: the label map sampled at each source slice's pixels
    (``medssl.data.label_resample``, with each slice's pixel grid as the target grid; on the
    scan's own grid that is a cut, not an interpolation)."""
    label = np.asarray(label).astype(np.uint8, copy=False)
    frames = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)), dtype=np.uint8)
    for n, ds in enumerate(datasets):
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        grid = np.eye(4)  # frame voxel (row r, column c, 0) -> LPS mm, then RAS
        grid[:3, 0], grid[:3, 1] = dr * iop[3:], dc * iop[:3]
        grid[:3, 2] = np.cross(iop[:3], iop[3:])
        grid[:3, 3] = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid
        frames[n] = resample_label(label, affine, (int(ds.Rows), int(ds.Columns), 1), ras)[..., 0]
    return frames


def build_dicom_seg(
    label: np.ndarray,
    affine: np.ndarray,
    datasets: Sequence[Dataset],
    labels: dict[str, str],
    case_id: str = "",
    *,
    uid_seed: str,
    model_name: str = "medssl",
    version: str | None = None,
    vocabulary: LabelVocabulary | None = None,
    keep_patient_identity: bool = False,
) -> Dataset:
    """A highdicom Segmentation of ``label`` (X, Y, Z on ``affine``) over the source ``datasets``.

    ``labels`` maps label values to names; ``vocabulary`` codes them (defaults by name).
    ``case_id`` is not written into the SEG (it may hold a file name); it is kept in the
    signature for callers that pass it."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    version = version or _package_version()
    frames = frames_from_label(label, affine, datasets)
    if keep_patient_identity:
        sources = [_header(ds) for ds in datasets]
    else:
        pseudonym = _pseudonym(datasets[0])
        sources = [_deidentified_header(ds, pseudonym, PHI_KEYWORDS) for ds in datasets]
    present = [int(k) for k in sorted(labels, key=int) if int(k) > 0]
    descriptions = _segment_descriptions(labels, present, vocabulary or LabelVocabulary(), model_name, version)
    frames[frames > max(present, default=0)] = 0
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=[uid_seed, "series"]),
        series_number=900,
        sop_instance_uid=generate_uid(entropy_srcs=[uid_seed, "sop"]),
        instance_number=1,
        manufacturer="medssl",
        manufacturer_model_name=model_name[:64],
        software_versions=version[:64],
        device_serial_number="0",
        omit_empty_frames=False,
        series_description=SERIES_DESCRIPTION,
    )
    if not keep_patient_identity:
        _deidentify(seg, pseudonym, PHI_KEYWORDS)
    return seg


SERIES_DESCRIPTION = "medssl segmentation"
ANON_NAME = "ANON^"  # PN: family name only


def _package_version() -> str:
    return str(__version__)


def _pseudonym(ds: Dataset) -> str:
    """``ANON-`` + 12 hex digits of the study UID's hash: the same for every SEG of a study,
    derived only from a UID the SEG carries anyway (never from names, IDs or file names)."""
    import hashlib

    study = str(getattr(ds, "StudyInstanceUID", ""))
    return f"ANON-{hashlib.sha256(study.encode()).hexdigest()[:12].upper()}"


def _segment_descriptions(labels: dict[str, str], present: list[int], vocabulary: LabelVocabulary,
                          model_name: str, version: str) -> list:
    """One coded SegmentDescription per label value in ``present``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="medssl", family=codes.cid7162.ArtificialIntelligence,
                                                   version=version[:64], parameters={"network": model_name[:64]})  # fmt: skip
    out = []
    for i in present:
        name = labels[str(i)]
        code = vocabulary.code_for(name, i)
        desc = hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=name[:64],
            segmented_property_category=_concept(code.category),
            segmented_property_type=_concept(code.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*code.color),
        )
        if code.modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _concept(code.modifier)
            ]
        out.append(desc)
    return out


def _concept(code: Code):
    import highdicom as hd

    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _header(ds: Dataset) -> Dataset:
    """``ds`` without its pixel data (elements shared, never modified), with the type 2
    patient / study attributes highdicom copies added empty where the source lacks them."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    out = Dataset()
    out.file_meta = getattr(ds, "file_meta", Dataset())
    for elem in ds:
        if elem.keyword != "PixelData":
            out[elem.tag] = elem
    for keyword in _REQUIRED_EMPTY:
        if keyword not in out:
            tag = tag_for_keyword(keyword)
            out[tag] = DataElement(tag, dictionary_VR(tag), "")
    return out


# Patient / study attributes highdicom copies (type 2: must be present, may be empty).
_REQUIRED_EMPTY = ("PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName", "StudyID",
                   "StudyDate", "StudyTime")  # fmt: skip
# Value representations of free text, names, ages, dates and times (Annex E: emptied).
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN", "AS", "DA", "DT", "TM"})
# Sequences a (multi-frame) source needs for its geometry; any other sequence is dropped.
_GEOMETRY_SQ = frozenset({"SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
                          "DimensionOrganizationSequence", "DimensionIndexSequence"})  # fmt: skip
# Set by medssl on the SEG itself (never copied from a source): kept by the final pass.
_SEG_OWN = frozenset({"SeriesDescription", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
                      "DeviceSerialNumber"})  # fmt: skip
# Annex E free-text attributes emptied again on the SEG itself.
_FREE_TEXT = ("StudyDescription", "ProtocolName", "PerformedProcedureStepDescription",
              "RequestedProcedureDescription", "ReasonForStudy", "StudyComments", "DerivationDescription",
              "MedicalAlerts", "Allergies", "ClinicalTrialSponsorName", "ClinicalTrialProtocolName",
              "ClinicalTrialSiteName", "ClinicalTrialTimePointDescription")  # fmt: skip


def _deidentified_header(ds: Dataset, pseudonym: str, phi_keywords: frozenset[str]) -> Dataset:
    """A header-only stand-in for a source image, de-identified (module docstring), so patient
    data never enters the SEG. Elements are shared with ``ds`` but never modified."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    out = Dataset()
    out.file_meta = getattr(ds, "file_meta", Dataset())
    for elem in ds:
        if elem.tag.is_private or elem.keyword == "PixelData" or (elem.VR == "SQ" and elem.keyword not in _GEOMETRY_SQ):
            continue
        out[elem.tag] = DataElement(elem.tag, elem.VR, "") if elem.VR in _TEXT_VRS else elem
    for keyword in (*_REQUIRED_EMPTY, *(k for k in phi_keywords if k in ds), "PatientName", "PatientID"):
        tag = tag_for_keyword(keyword)
        vr = dictionary_VR(tag)
        if vr == "SQ":
            continue
        value = {"PatientName": ANON_NAME, "PatientID": pseudonym, "PatientSex": "O"}.get(keyword, "")
        out[tag] = DataElement(tag, vr, value)
    return out


def _deidentify(seg: Dataset, pseudonym: str, phi_keywords: frozenset[str]) -> None:
    """Replace identifying root attributes with new elements (highdicom shares the source
    images' element objects, so changing ``elem.value`` in place would alter the sources)."""
    from pydicom.dataelem import DataElement

    for elem in list(seg):
        keyword = elem.keyword
        if keyword in _SEG_OWN:
            continue
        if elem.tag.is_private or (keyword in phi_keywords and elem.VR == "SQ"):
            del seg[elem.tag]
        elif keyword in ("PatientName", "PatientID"):
            seg[elem.tag] = DataElement(elem.tag, elem.VR, ANON_NAME if keyword == "PatientName" else pseudonym)
        elif keyword in phi_keywords or keyword in _FREE_TEXT or keyword in ("StudyDate", "StudyTime", "PatientSex"):
            seg[elem.tag] = DataElement(elem.tag, elem.VR, "O" if keyword == "PatientSex" else "")
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "medssl: PS3.15 basic profile, UIDs retained"  # LO: at most 64
    seg.DeidentificationMethodCodeSequence = [_dcm_code("113100", "Basic Application Confidentiality Profile"),
                                              _dcm_code("113110", "Retain UIDs Option")]  # fmt: skip


def _dcm_code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
    return code


def write_dicom_seg(path: str | Path, label: np.ndarray, affine: np.ndarray, datasets: Sequence[Dataset],
                    labels: dict[str, str], case_id: str = "", **kw: Any) -> Path:
    """Build the SEG and write it atomically to ``path`` (the bytes pydicom's ``save_as``
    writes, through ``medssl.io.dicom_encode``)."""
    seg = build_dicom_seg(label, affine, datasets, labels, case_id, **kw)
    return atomic_write_bytes(path, to_bytes(seg))
