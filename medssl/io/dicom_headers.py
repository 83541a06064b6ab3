"""Reading DICOM headers safely (never ``force=True``), sorting files into series and
choosing one: by SeriesInstanceUID (or its short hash), else the largest image series."""

from __future__ import annotations

import logging
import math
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medssl.errors import CorruptFileError, InputError, MedsslError, NotAScanError, UnsupportedInputError
from medssl.io.limits import ReadLimits
from medssl.io.notes import note
from medssl.io.phi import is_uid_hash, uid_hash
from medssl.io.scan import SeriesInfo
from medssl.io.sources import Member, check_member_size

log = logging.getLogger(__name__)

NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "SR", "SEG", "PR", "KO",
                                  "REG", "DOC", "RWV", "FID", "PLAN"})  # fmt: skip
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.1.3.10": "DICOMDIR",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",
    "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE",
}
LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT", "SURVEY"})
# Elements the image is built from: one that cannot be decoded makes the file corrupt. Any
# other undecodable element is dropped (medssl never uses it), so no lazy pydicom error can
# surface later, outside the read.
ESSENTIAL = frozenset({
    "SOPClassUID", "Modality", "SeriesInstanceUID", "ImageType", "InstanceNumber", "ImagesInAcquisition",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "PixelData",
    "FloatPixelData", "DoubleFloatPixelData", "SeriesNumber", "FrameOfReferenceUID",
})  # fmt: skip
MAX_SEQUENCE_DEPTH = 8
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


_QUIET_LOCK = threading.RLock()


class _RedactedPydicomLog(logging.Handler):
    """pydicom's log text may quote tag values (UIDs, names): only the fact is passed on."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("pydicom logged a %s (text hidden: it may quote DICOM values)", record.levelname.lower())


def silence_pydicom() -> None:
    """Process-wide, at ``medssl.io`` import: pydicom converts and validates values lazily, on
    first access long after ``dcmread`` returned, and its warnings and log lines quote them."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pd_log = logging.getLogger("pydicom")
    pd_log.propagate = False
    if not any(isinstance(h, _RedactedPydicomLog) for h in pd_log.handlers):
        pd_log.addHandler(_RedactedPydicomLog())
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


silence_pydicom()


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Keep pydicom's value warnings (which may quote tag values) out of logs and stderr."""
    with _QUIET_LOCK, _quiet():
        yield


@contextmanager
def _quiet() -> Iterator[None]:
    config = pydicom.config.settings
    saved = config.reading_validation_mode
    config.reading_validation_mode = pydicom.config.IGNORE
    pd_log = logging.getLogger("pydicom")
    saved_disabled = pd_log.disabled
    pd_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        config.reading_validation_mode = saved
        pd_log.disabled = saved_disabled


def tag_value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, with a value pydicom cannot decode (unknown VR, wrong length)
    read as None: files go through ``decode_all`` first, so this only guards datasets built
    in memory."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom decodes lazily and raises many types
        return None


def tag_float(ds: Dataset, keyword: str) -> float | None:
    """A numeric tag (the first value if several): None when absent or empty; ValueError
    when malformed or not finite."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)):
            value = value[0]
        number = float(value)
    except Exception:  # noqa: BLE001 - lazy decoding errors of pydicom, bad types, overflow
        number = float("nan")
    if not math.isfinite(number):
        raise ValueError(f"{keyword} is malformed or not finite")
    return number


def optional_float(ds: Dataset, keyword: str, where: str = "") -> float | None:
    """A numeric tag medssl can do without: None when absent, empty or malformed. The value
    itself is never logged (free text may hide in it)."""
    try:
        return tag_float(ds, keyword)
    except ValueError:
        log.debug("%s: %s is malformed; ignored", where, keyword)
        return None


def required_int(ds: Dataset, keyword: str, where: str) -> int:
    """A positive integer tag the image cannot do without (Rows, Columns), or CorruptFileError
    naming the tag and the file, never the value."""
    try:
        value = int(ds.get(keyword))
    except Exception:  # noqa: BLE001 - lazy decoding errors of pydicom, bad types, overflow
        value = 0
    if value <= 0:
        raise CorruptFileError(f"{keyword} is missing or malformed", source=where)
    return value


def read_dataset(member: Member, limits: ReadLimits, *, headers_only: bool) -> Dataset:
    """One DICOM file, or a typed error naming the file (never its contents)."""
    check_member_size(member, limits)
    try:
        with quiet_pydicom(), member.open() as f:
            ds = pydicom.dcmread(f, stop_before_pixels=headers_only)
            decode_all(ds, member.name)
            return ds
    except InvalidDicomError as err:
        raise NotAScanError("not a DICOM file (no DICM preamble or file meta)", source=member.name) from err
    except RecursionError as err:
        raise CorruptFileError("DICOM structure nested too deeply", source=member.name) from err
    except MemoryError as err:
        raise CorruptFileError("DICOM element lengths are implausible", source=member.name) from err
    except MedsslError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on broken files
        raise CorruptFileError(
            f"DICOM file is truncated or malformed ({err.__class__.__name__})", source=member.name
        ) from err


def decode_all(ds: Dataset, where: str, depth: int = 0) -> None:
    """Decode every element now, inside the read's error handling: an essential element that
    cannot be decoded is CorruptFileError naming its keyword; any other one is dropped."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise CorruptFileError("DICOM sequences nested too deeply", source=where)
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            if depth == 0:
                _check_vr(elem, where)
            if elem.VR == "SQ":
                for item in elem.value:
                    decode_all(item, where, depth + 1)
        except MedsslError:
            raise
        except Exception as err:  # noqa: BLE001 - pydicom raises many types on broken elements
            keyword = pydicom.datadict.keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if depth == 0 and keyword in ESSENTIAL:
                raise CorruptFileError(f"{keyword} cannot be decoded ({err.__class__.__name__})",
                                       source=where) from err  # fmt: skip
            del ds[tag]
            log.debug("%s: dropped undecodable element %s", where, keyword)
    meta = getattr(ds, "file_meta", None)
    if depth == 0 and meta is not None:
        for tag in list(meta.keys()):
            try:
                meta[tag]
            except Exception as err:  # noqa: BLE001
                raise CorruptFileError(f"file meta element ({tag >> 16:04X},{tag & 0xFFFF:04X}) cannot be "
                                       f"decoded ({err.__class__.__name__})", source=where) from err  # fmt: skip


def _check_vr(elem: pydicom.DataElement, where: str) -> None:
    """An essential element stored under another VR than the dictionary's (explicit VR files)
    decodes to a wrong value without any error: text '1.0' read as US is 11825."""
    if elem.keyword not in ESSENTIAL or elem.VR == "UN":
        return
    expected = pydicom.datadict.dictionary_VR(elem.tag).split(" or ")
    if elem.VR not in expected:
        raise CorruptFileError(f"{elem.keyword} is stored as VR {elem.VR}, not {' or '.join(expected)}",
                               source=where)  # fmt: skip


def classify(ds: Dataset) -> tuple[str, str | None]:
    """('image' | 'localizer' | non-image kind, reason it is skipped or None)."""
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).upper()
    kind = NON_IMAGE_SOP_CLASSES.get(sop) or (modality if modality in NON_IMAGE_MODALITIES else None)
    if kind:
        return kind, f"{kind} is not an image series"
    if "Rows" not in ds or "Columns" not in ds:
        return "non-image", "object holds no image"
    image_type = ds.get("ImageType") or []
    image_type = {str(v).upper() for v in ([image_type] if isinstance(image_type, str) else image_type)}
    if image_type & LOCALIZER_TYPES:
        return "localizer", "localizer / scout image"
    return "image", None


def _image_sop_class(ds: Dataset) -> bool:
    """Whether the file says it holds an image (e.g. 'CT Image Storage'), in its file meta or dataset."""
    meta = getattr(ds, "file_meta", None)
    for value in (ds.get("SOPClassUID"), meta.get("MediaStorageSOPClassUID") if meta is not None else None):
        if isinstance(value, str) and value and pydicom.uid.UID(value).name.endswith("Image Storage"):
            return True
    return False


@dataclass
class SeriesGroup:
    uid: str
    uid_hash: str
    kind: str
    skipped_reason: str | None
    items: list[tuple[Member, Dataset]] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return str(self.items[0][1].get("Modality", "OT") or "OT")

    def description(self, reveal_phi: bool = False) -> str:
        """SeriesDescription is free text (PS3.15 Annex E removes it): '' unless revealed."""
        return str(self.items[0][1].get("SeriesDescription", "") or "") if reveal_phi else ""

    def info(self, reveal_phi: bool = False) -> SeriesInfo:
        ds = self.items[0][1]
        cols, rows = optional_float(ds, "Columns"), optional_float(ds, "Rows")
        shape = (int(cols), int(rows), len(self.items)) if cols and rows else None
        return SeriesInfo(self.uid_hash, self.modality, len(self.items), self.description(reveal_phi), self.kind,
                          shape if self.kind == "image" else None, self.skipped_reason)  # fmt: skip


@dataclass
class FolderScan:
    groups: list[SeriesGroup]
    failed: list[tuple[str, str, str]]  # (relative name, error code, reason)


def group_series(members: list[Member], limits: ReadLimits) -> FolderScan:
    """Read every header; group by SeriesInstanceUID. Unreadable files go to ``failed``."""
    by_uid: dict[str, SeriesGroup] = {}
    failed: list[tuple[str, str, str]] = []
    for member in members:
        try:
            ds = read_dataset(member, limits, headers_only=True)
        except InputError as err:
            failed.append((member.name, err.code, err.reason))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        kind, reason = classify(ds)
        if kind == "non-image" and _image_sop_class(ds):
            failed.append((member.name, CorruptFileError.code, "image file without Rows/Columns (truncated?)"))
            continue
        key = f"{uid}|{kind if kind != 'image' else ''}"
        group = by_uid.get(key)
        if group is None:
            group = by_uid[key] = SeriesGroup(uid, uid_hash(uid) or "no-uid", kind, reason)
        group.items.append((member, ds))
    image_uids = {g.uid for g in by_uid.values() if g.kind == "image"}
    for key, group in list(by_uid.items()):
        if group.kind == "non-image" and group.uid in image_uids:  # a slice of an image series, cut short
            failed.extend((m.name, CorruptFileError.code, "image header without Rows/Columns (truncated?)")
                          for m, _ in group.items)  # fmt: skip
            del by_uid[key]
    groups = sorted(by_uid.values(), key=lambda g: (g.kind != "image", -len(g.items), g.uid_hash))
    return FolderScan(groups, failed)


def select_series(scan: FolderScan, series_uid: str | None, source: str) -> SeriesGroup:
    """The requested series, or the largest image series (logged by hash)."""
    if series_uid:
        wanted = series_uid.strip()
        hits = [g for g in scan.groups if wanted in (g.uid, g.uid_hash) or
                (len(wanted) >= 6 and g.uid_hash.startswith(wanted))]  # fmt: skip
        if not hits:
            known = ", ".join(g.uid_hash for g in scan.groups) or "none"
            given_hash = is_uid_hash(wanted)
            hint = ("; hashes depend on MEDSSL_UID_SALT: if this one comes from a manifest, the manifest may "
                    "have been made with another MEDSSL_UID_SALT") if given_hash else ""  # fmt: skip
            raise InputError(f"no series matches '{wanted if given_hash else uid_hash(wanted)}' (hash); "
                             f"series here: {known}{hint}", source=source, code="series_not_found")  # fmt: skip
        group = hits[0]
        if group.kind != "image":
            raise UnsupportedInputError(f"series {group.uid_hash}: {group.skipped_reason}", source=source)
        return group
    images = [g for g in scan.groups if g.kind == "image"]
    if not images:
        skipped = "; ".join(f"{g.uid_hash}: {g.skipped_reason}" for g in scan.groups)
        if scan.failed and not scan.groups:
            name, code, reason = scan.failed[0]
            if len(scan.failed) == 1:
                raise _error_for_code(code)(reason, source=name)
            raise _error_for_code(code)(
                f"no readable DICOM image here ({len(scan.failed)} unreadable file(s); first: {name}: {reason})",
                source=source,
            )
        raise NotAScanError(f"no DICOM image series found{' (' + skipped + ')' if skipped else ''}", source=source)
    chosen = images[0]
    if len(images) > 1:
        note(log, logging.INFO, "%s: %d image series; reading the largest, %s (%s, %d files); pick another "
             "with --series", source, len(images), chosen.uid_hash, chosen.modality, len(chosen.items))  # fmt: skip
    for g in scan.groups:
        if g.kind != "image":
            note(log, logging.INFO, "%s: skipped series %s (%d files): %s", source, g.uid_hash, len(g.items),
                 g.skipped_reason)  # fmt: skip
    return chosen


def _error_for_code(code: str) -> type[InputError]:
    from medssl import errors

    for cls in (errors.CorruptFileError, errors.LimitExceededError, errors.UnsupportedInputError):
        if cls.code == code:
            return cls
    return errors.NotAScanError
