"""A CD's DICOMDIR as a witness to a series' length.

PACS CDs and DVDs carry a DICOMDIR that lists every image written to the disc. A file lost
on the way (a bad copy, an unreadable sector, a slice left out of an upload) leaves a
series short with nothing in the other files to show it when the series has no
ImagesInAcquisition and the lost slice is at an end (its InstanceNumbers stay contiguous).
The DICOMDIR still lists it: a listed image of the series whose file is not in the tree and
whose instance is nowhere among the files read is a missing slice.

The DICOMDIR only adds this check: one that cannot be read, or that is larger than the read
budget allows, is not used (a debug line says so) and never stops a read."""

from __future__ import annotations

import logging
import warnings

from medssl.errors import GeometryError
from medssl.io.dicom_headers import FolderScan, SeriesGroup
from medssl.io.limits import ReadLimits
from medssl.io.notes import note
from medssl.io.sources import Member

log = logging.getLogger(__name__)


def check_listed_images(members: list[Member], found: FolderScan, group: SeriesGroup, where: str,
                        limits: ReadLimits) -> None:  # fmt: skip
    """Raise ``GeometryError`` when a DICOMDIR among ``members`` lists images of ``group``'s
    series whose files are gone: the record's file is not in the tree (names compared without
    case, as CD copies change it) and its SOPInstanceUID is not among the files read (in any
    group: a listed localizer read as its own group is there). Skipped when the user chose to
    read without corrupt slices."""
    if not group.uid or (found.failed and limits.skip_corrupt_slices):
        return
    names: set[str] | None = None
    present: set[str] | None = None
    for member in members:
        if member.path is None or member.name.rpartition("/")[2].upper() != "DICOMDIR":
            continue
        listed = _listed_images(member, group.uid, where, limits)
        if not listed:
            continue
        if names is None:
            names = {m.name.lower() for m in members}
            present = {str(ds.get("SOPInstanceUID", "")) for g in found.groups for _, ds in g.items}
        folder = member.name.rpartition("/")[0]
        paths = {uid: "/".join(filter(None, (folder, file_id))).lower() for uid, file_id in listed.items()}
        missing = [uid for uid, path in paths.items() if uid not in present and path not in names]
        if missing:
            raise GeometryError(f"series {group.uid_hash}: missing slices: the DICOMDIR lists {len(listed)} images "
                                f"of this series and the files of {len(missing)} are not here; add the missing "
                                "files, or copy the files without the DICOMDIR to read what is here",
                                source=where)  # fmt: skip


def _listed_images(member: Member, series_uid: str, where: str, limits: ReadLimits) -> dict[str, str] | None:
    """{SOPInstanceUID: file ID as a relative path} of the IMAGE records under
    ``series_uid``'s SERIES records, or None. (pydicom's FileSet leaves out records whose
    file is gone, the very ones wanted here, so the records are walked through their
    offsets, as FileSet does.)"""
    import pydicom

    if member.size > limits.max_bytes:
        note(log, logging.DEBUG, "%s: %s is larger than the read budget: not used", where, member.name)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd records; the DICOMDIR is only a witness
            records = list(pydicom.dcmread(member.path).DirectoryRecordSequence)
            at = {int(r.seq_item_tell): r for r in records}
            listed: dict[str, str] = {}
            for record in records:
                if _active(record, "SERIES") and str(record.get("SeriesInstanceUID", "")) == series_uid:
                    listed.update(_images_below(record, at))
            return listed
    except Exception as err:  # noqa: BLE001 - any fault of an index file: read without it
        note(log, logging.DEBUG, "%s: %s cannot be read (%s): not used", where, member.name, type(err).__name__)
        return None


def _active(record, kind: str) -> bool:  # noqa: ANN001
    return record.get("DirectoryRecordType") == kind and record.get("RecordInUseFlag", 0xFFFF) != 0


def _images_below(series, at: dict) -> dict[str, str]:  # noqa: ANN001
    """The series record's children (first child, then each next sibling) that are images
    naming their file and instance (a record cut short by a truncated DICOMDIR lacks them).
    An offset that leads nowhere means a damaged DICOMDIR: ValueError."""
    out: dict[str, str] = {}
    seen: set[int] = set()
    offset = int(series.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0)
    while offset and offset not in seen:  # a crafted loop of offsets ends here
        if offset not in at:
            raise ValueError("a record offset leads nowhere")
        seen.add(offset)
        child = at[offset]
        file_id = child.get("ReferencedFileID")
        if _active(child, "IMAGE") and file_id and "ReferencedSOPInstanceUIDInFile" in child:
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            out[str(child.ReferencedSOPInstanceUIDInFile)] = "/".join(str(p).strip() for p in parts)
        offset = int(child.get("OffsetOfTheNextDirectoryRecord", 0) or 0)
    return out
