"""Reading DICOM headers safely (never ``force=True``), sorting files into series and
choosing one: by SeriesInstanceUID (or its short hash), else the largest image series."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medssl.errors import (CorruptFileError, GeometryError, InputError, LimitExceededError, MedsslError,
                           NotAScanError, UnsupportedInputError)  # fmt: skip
# Re-exported: the element accessors lived here before dicom_elements split off.
from medssl.io.dicom_elements import (ESSENTIAL, decode_all, optional_float, quiet_pydicom,  # noqa: F401
                                      required_int, tag_float, tag_value)  # fmt: skip
from medssl.io.dicom_fast import fast_dataset
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
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


# What probing headers reads (classify, SeriesGroup.info, stack_geometry): with
# ``read_dataset(decode=PROBE_ELEMENTS)`` the other elements are never decoded.
PROBE_ELEMENTS = ESSENTIAL | {"SeriesDescription", "SliceThickness", "StudyInstanceUID"}
# What reading a volume reads besides (``Scan.meta``; the pixel module pydicom's decoders
# consult). A SEG writer or ``reveal_phi`` reads more: those headers go through
# ``decode_all`` first (``full_headers``).
READ_ELEMENTS = PROBE_ELEMENTS | {"WindowCenter", "WindowWidth", "PlanarConfiguration"}


def read_dataset(member: Member, limits: ReadLimits, *, headers_only: bool,
                 decode: frozenset[str] | None = None) -> Dataset:  # fmt: skip
    """One DICOM file, or a typed error naming the file (never its contents). ``decode``: the
    keywords to decode up front (and sequences); default every element (``decode_all``)."""
    check_member_size(member, limits)
    try:
        with quiet_pydicom(), member.open() as f:
            if decode is not None:
                fast = fast_dataset(f, member.size, decode, headers_only=headers_only)
                if fast is not None:
                    return fast
            ds = pydicom.dcmread(f, stop_before_pixels=headers_only)
            decode_all(ds, member.name, only=decode)
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


def classify(ds: Dataset) -> tuple[str, str | None]:
    """('image' | 'localizer' | non-image kind, reason it is skipped or None)."""
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""))
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
    with_pixels: set[str] = field(default_factory=set)  # members whose dataset holds its pixel data


def _read_for_grouping(member: Member, limits: ReadLimits, with_pixels: bool,
                       decode: frozenset[str] | None = None) -> tuple[Dataset, bool]:  # fmt: skip
    """The member's dataset, with its pixel data when asked and readable: a file whose full
    read fails is read again for its headers alone, so it is grouped (and later fails) exactly
    as in a headers-only pass."""
    if with_pixels:
        try:
            return read_dataset(member, limits, headers_only=False, decode=decode), True
        except InputError:
            pass
    return read_dataset(member, limits, headers_only=True, decode=decode), False


def group_series(members: list[Member], limits: ReadLimits, *, with_pixels: bool = False,
                 decode: frozenset[str] | None = None) -> FolderScan:  # fmt: skip
    """Read every header; group by SeriesInstanceUID. Unreadable files go to ``failed``.

    ``with_pixels``: read each file whole, once, keeping its pixel data for the volume (names
    in ``FolderScan.with_pixels``), instead of a second read per slice. ``decode``: as for
    ``read_dataset``."""
    by_uid: dict[str, SeriesGroup] = {}
    failed: list[tuple[str, str, str]] = []
    loaded: set[str] = set()
    for member in members:
        try:
            ds, full = _read_for_grouping(member, limits, with_pixels, decode)
        except InputError as err:
            failed.append((member.name, err.code, err.reason))
            continue
        if full:
            loaded.add(member.name)
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
    return FolderScan(groups, failed, loaded)


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
    _refuse_split_stack(chosen, images[1:], source)
    if len(images) > 1:
        note(log, logging.INFO, "%s: %d image series; reading the largest, %s (%s, %d files); pick another "
             "with --series", source, len(images), chosen.uid_hash, chosen.modality, len(chosen.items))  # fmt: skip
    for g in scan.groups:
        if g.kind != "image":
            note(log, logging.INFO, "%s: skipped series %s (%d files): %s", source, g.uid_hash, len(g.items),
                 g.skipped_reason)  # fmt: skip
    return chosen


def _stack_key(group: SeriesGroup) -> tuple | None:
    """What slices of one stack share: study, frame of reference, series number, orientation
    and size (None when the SeriesNumber is absent: then nothing is claimed)."""
    ds = group.items[0][1]
    number = optional_float(ds, "SeriesNumber")
    if number is None:
        return None
    iop = ds.get("ImageOrientationPatient") or []
    try:
        orientation = tuple(round(float(v), 3) for v in iop)
    except (TypeError, ValueError):
        return None
    return (str(ds.get("StudyInstanceUID", "")), str(ds.get("FrameOfReferenceUID", "")), number, orientation,
            optional_float(ds, "Rows"), optional_float(ds, "Columns"))  # fmt: skip


def _refuse_split_stack(chosen: SeriesGroup, others: list[SeriesGroup], source: str) -> None:
    """A few slices under another SeriesInstanceUID but the same SeriesNumber, frame of
    reference, orientation and size are most likely part of the chosen stack (a wrong UID in
    their headers): reading the largest part alone would silently drop them."""
    key = _stack_key(chosen)
    twins = [g for g in others if key is not None and _stack_key(g) == key]
    if twins:
        raise GeometryError(f"series {chosen.uid_hash} ({len(chosen.items)} files) and {twins[0].uid_hash} "
                            f"({len(twins[0].items)} files) share SeriesNumber, frame of reference, orientation "
                            "and size: one stack split by a wrong SeriesInstanceUID? Fix the files, or pass "
                            "--series to read one of them", source=source)  # fmt: skip


def _error_for_code(code: str) -> type[InputError]:
    for cls in (CorruptFileError, LimitExceededError, UnsupportedInputError):
        if cls.code == code:
            return cls
    return NotAScanError
