"""A DICOM series (folder, zip or single file) -> ``Scan``; the sorted datasets of a series
(for DICOM SEG writers); and a PHI-masked tag list for the viewer's tag browser."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medssl.errors import CorruptFileError, GeometryError, InputError, LimitExceededError, NotAScanError
from medssl.io.dicom_geometry import TILT_TOL_DEG, StackGeometry, stack_geometry
from medssl.io.dicom_headers import (DICOM_SUFFIXES, READ_ELEMENTS, FolderScan, SeriesGroup, group_series, optional_float,
                                     read_dataset, required_int, select_series)  # fmt: skip
from medssl.io.dicom_pixels import check_decoder, check_pixel_length, expected_pixel_bytes, slice_pixels
from medssl.io.dicom_resample import regular_offsets, resample_along_normal, undo_tilt
from medssl.io.dicomdir import check_listed_images
from medssl.io.limits import SKIP_CORRUPT_ENV, ReadLimits, all_finite, allocate_volume, check_budget, check_extent
from medssl.io.notes import held_notes, note
from medssl.io.phi import HIDDEN, is_phi_element, phi_from_dataset, uid_hash
from medssl.io.scan import Scan
from medssl.io.sources import Member, read_zip, walk_folder

log = logging.getLogger(__name__)
MAX_LISTED_FAILURES = 20
ONE_PASS_SHARE = 0.25  # files up to this share of ReadLimits.max_bytes are read whole, once


def dicom_members(path: Path, limits: ReadLimits) -> list[Member]:
    if path.is_dir():
        return walk_folder(path, limits)
    if path.suffix.lower() == ".zip":
        return read_zip(path, limits)
    return [Member(name=path.name, size=path.stat().st_size, path=path)]


def _chosen_series(path: Path, series_uid: str | None, limits: ReadLimits, members: list[Member] | None = None,
                   with_pixels: bool = False, decode: frozenset[str] | None = None,
                   ) -> tuple[FolderScan, SeriesGroup]:  # fmt: skip
    members = dicom_members(path, limits) if members is None else members
    found = group_series(members, limits, with_pixels=with_pixels, decode=decode)
    # Files that fail to read and may be slices (DICOM-like ones, and "not DICOM" ones that look
    # like their neighbours: a damaged preamble reads as "not DICOM"); other stray files are skipped.
    sizes = {m.name: m.size for m in members}
    broken = [f for f in found.failed if f[1] != NotAScanError.code or _slice_like(f[0], sizes, found.groups)]
    if broken and found.groups and not limits.skip_corrupt_slices:
        name, _, reason = broken[0]
        raise CorruptFileError(f"{len(broken)} file(s) here cannot be read (first: {name}: {reason}); a corrupt "
                               "slice would leave the volume short, so nothing was read: fix or remove the "
                               f"file(s), or read without them with ${SKIP_CORRUPT_ENV}=1 "
                               "(ReadLimits.skip_corrupt_slices)", source=path.name)  # fmt: skip
    if found.failed and found.groups:
        note(log, logging.WARNING, "%s: %d file(s) could not be read as DICOM and were skipped (first: %s: %s)",
             path.name, len(found.failed), found.failed[0][0], found.failed[0][2])  # fmt: skip
    group = select_series(found, series_uid, path.name)
    check_listed_images(members, found, group, path.name, limits)
    return found, group


def _slice_like(name: str, sizes: dict[str, int], groups: list[SeriesGroup]) -> bool:
    """Whether a file that reads as not DICOM is more likely a damaged slice than a stray file:
    named as DICOM, or named as the slices of PACS exports are (no extension, or a number: UIDs
    and counters) in a folder holding a series' slices and at least half their usual size.
    AUTORUN.INF, a viewer's DLLs, DICOMDIR or a 2 kB LOCKFILE are not."""
    base = name.rpartition("/")[2]
    if base.lower().endswith(DICOM_SUFFIXES):
        return True
    suffix = base.rpartition(".")[2] if "." in base else ""
    if suffix and not suffix.isdigit():
        return False
    folder = name.rpartition("/")[0]
    neighbours = [m.size for g in groups for m, _ in g.items if m.name.rpartition("/")[0] == folder]
    return bool(neighbours) and sizes.get(name, 0) >= 0.5 * float(np.median(neighbours))


def _sorted_series(group: SeriesGroup, limits: ReadLimits, where: str,
                   volume_copies: int) -> tuple[list[Member], list[Dataset], StackGeometry]:  # fmt: skip
    """The series' files and headers in slice order, once the headers alone have passed the
    size limits, the geometry checks, a pixel-length check against each file's size and the
    memory budget (``volume_copies`` float32 volumes, one more when a resample will be needed,
    plus one file; or every file's bytes when ``volume_copies`` is 0)."""
    names = [m.name for m, _ in group.items]
    head = group.items[0][1]
    dims = (required_int(head, "Columns", names[0]), required_int(head, "Rows", names[0]), len(group.items))
    if max(dims) > limits.max_dim or int(np.prod(dims, dtype=np.int64)) > limits.max_voxels:
        raise LimitExceededError(f"series {group.uid_hash}: {dims} voxels exceed the read limits "
                                 f"(max_dim {limits.max_dim}, max_voxels {limits.max_voxels})",
                                 source=where)  # fmt: skip
    if len(group.items) == 1:  # report a broken or undecodable file before "2D only"
        slice_pixels(read_dataset(group.items[0][0], limits, headers_only=False), names[0])
    geo = stack_geometry([ds for _, ds in group.items], names, group.uid_hash, where, limits)
    for member, ds in group.items:  # Rows x Columns must fit the file before anything is allocated
        check_decoder(ds, member.name)
        expected = expected_pixel_bytes(ds, member.name)
        deflated = ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian \
            if hasattr(ds, "file_meta") else False  # fmt: skip
        if expected is not None and not deflated and expected > member.size:
            raise CorruptFileError(f"pixel data is truncated: the file holds {member.size} bytes, Rows x Columns "
                                   f"x BitsAllocated call for {expected}", source=member.name)  # fmt: skip
    # after the pixel-length checks: Rows 4000 over 256 x 256 pixels is a truncated file first
    check_extent(dims, (*geo.pixel_spacing, geo.step), f"series {group.uid_hash}", where, limits)
    sizes = [m.size for m, _ in group.items]
    copies = volume_copies + (volume_copies and (geo.uneven or geo.tilt_deg > TILT_TOL_DEG))
    needed = copies * 4 * int(np.prod(dims, dtype=np.int64)) + (max(sizes) if volume_copies else sum(sizes))
    check_budget(needed, f"series {group.uid_hash} ({dims[0]}x{dims[1]}x{dims[2]})", where, limits)
    items = [group.items[i] for i in geo.order]
    return [m for m, _ in items], [ds for _, ds in items], geo


def read_dicom_datasets(path: str | Path, series_uid: str | None = None,
                        limits: ReadLimits | None = None) -> list[Dataset]:  # fmt: skip
    """The chosen series' full datasets, sorted along the slice normal (the k axis of
    ``read_scan``'s array), e.g. as ``source_images`` for highdicom's Segmentation."""
    limits = limits or ReadLimits()
    with held_notes():
        _, group = _chosen_series(Path(path), series_uid, limits)
        members, _, _ = _sorted_series(group, limits, Path(path).name, volume_copies=0)
        datasets = [read_dataset(m, limits, headers_only=False) for m in members]
        for ds, m in zip(datasets, members):
            check_pixel_length(ds, m.name)
    return datasets


def read_dicom(path: Path, *, series_uid: str | None, allow_resample: bool, reveal_phi: bool,
               limits: ReadLimits, case_id: str, members: list[Member] | None = None) -> Scan:  # fmt: skip
    """The chosen series as a ``Scan`` (see ``read_dicom_series``)."""
    return read_dicom_series(path, series_uid=series_uid, allow_resample=allow_resample, reveal_phi=reveal_phi,
                             limits=limits, case_id=case_id, members=members)[0]  # fmt: skip


def read_dicom_series(path: Path, *, series_uid: str | None, allow_resample: bool, reveal_phi: bool,
                      limits: ReadLimits, case_id: str, members: list[Member] | None = None,
                      full_headers: bool = False) -> tuple[Scan, list[Dataset]]:  # fmt: skip
    """The chosen series as a ``Scan``, and its datasets in slice order without pixel data
    (what a DICOM SEG writer needs, as ``read_dicom_datasets`` gives them, from this same
    read). ``members``: the folder's files when the caller has walked it already.
    ``full_headers``: every element of those datasets decoded (``decode_all``), as a SEG
    writer needs; otherwise only ``READ_ELEMENTS`` are, which is what the volume needs.

    Each file is read once, pixels and all, when the files together take at most
    ``ONE_PASS_SHARE`` of the read budget; its pixel data is dropped once in the volume.
    Otherwise the headers are read first and the slices one file at a time, so the read
    holds the volume and one file."""
    members = dicom_members(path, limits) if members is None else members
    one_pass = sum(m.size for m in members) <= ONE_PASS_SHARE * limits.max_bytes
    decode = None if full_headers or reveal_phi else READ_ELEMENTS
    found, group = _chosen_series(path, series_uid, limits, members, with_pixels=one_pass, decode=decode)
    files, headers, geo = _sorted_series(group, limits, path.name, volume_copies=1 + allow_resample)
    head = headers[0]
    cols, rows = required_int(head, "Columns", files[0].name), required_int(head, "Rows", files[0].name)
    volume = allocate_volume((cols, rows, len(files)), path.name, order="F")  # a slice is one block
    for k, (member, ds) in enumerate(zip(files, headers)):
        if member.name not in found.with_pixels:
            ds = read_dataset(member, limits, headers_only=False, decode=READ_ELEMENTS)
        volume[:, :, k] = slice_pixels(ds, member.name).T
        if member.name in found.with_pixels:
            _drop_pixels(ds)
    volume, affine, resampled = _regularise(volume, geo, group.uid_hash, path.name, allow_resample)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError(f"series {group.uid_hash}: affine is singular or not finite", source=path.name)
    if not all_finite(volume):
        raise InputError(f"series {group.uid_hash}: volume holds NaN or infinite values", source=path.name,
                         code="non_finite")  # fmt: skip
    meta = _meta(head, headers, geo, group, found, path, resampled)
    scan = Scan(array=volume, affine=affine, modality=group.modality, source=path.name, case_id=case_id,
                meta=meta, series=[g.info(reveal_phi) for g in found.groups],
                phi=phi_from_dataset(head) if reveal_phi else {})  # fmt: skip
    return scan, headers


def _drop_pixels(ds: Dataset) -> None:
    """Free a kept dataset's pixel data once it is in the volume (deleting it also drops
    pydicom's cached array)."""
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            delattr(ds, keyword)


def _regularise(volume: np.ndarray, geo: StackGeometry, series: str, where: str,
                allow_resample: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:  # fmt: skip
    done: list[str] = []
    if geo.tilt_deg > TILT_TOL_DEG:
        if not allow_resample:
            raise GeometryError(f"series {series}: gantry tilt of {geo.tilt_deg:.2f} degrees; pass "
                                "--allow-resample (allow_resample=True) to resample onto a regular grid",
                                source=where)  # fmt: skip
        volume = undo_tilt(volume, geo)
        done.append(f"gantry tilt {geo.tilt_deg:.2f} deg removed")
    step = geo.step
    if geo.uneven:
        gaps = np.diff(geo.offsets)
        if not allow_resample:
            raise GeometryError(f"series {series}: slice spacing varies ({gaps.min():.3g} to {gaps.max():.3g} mm); "
                                "pass --allow-resample to resample", source=where)  # fmt: skip
        volume = resample_along_normal(volume, geo.offsets, regular_offsets(geo.offsets, step))
        done.append(f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm) resampled to {step:.3g} mm")
    for what in done:
        note(log, logging.WARNING, "series %s: %s", series, what)
    return volume, geo.affine(step=step), done


def _meta(head: Dataset, datasets: list[Dataset], geo: StackGeometry, group: SeriesGroup,
          found: FolderScan, path: Path, resampled: list[str]) -> dict[str, Any]:  # fmt: skip
    slopes = {optional_float(ds, "RescaleSlope") or 1.0 for ds in datasets}
    intercepts = {optional_float(ds, "RescaleIntercept") or 0.0 for ds in datasets}
    syntax = head.file_meta.get("TransferSyntaxUID") if hasattr(head, "file_meta") else None
    meta: dict[str, Any] = {
        "format": "dicom-zip" if path.suffix.lower() == ".zip" else "dicom",
        "series_uid_hash": group.uid_hash,
        "study_uid_hash": uid_hash(head.get("StudyInstanceUID", "")),
        "frame_of_reference_hash": uid_hash(head.get("FrameOfReferenceUID", "")),
        "n_files": len(datasets),
        "slice_step_mm": round(float(geo.step), 6),
        "slice_thickness_mm": optional_float(head, "SliceThickness", path.name) or None,
        "transfer_syntax": syntax.name if syntax else None,
        "rescale_slope": sorted(slopes),
        "rescale_intercept": sorted(intercepts),
        "window_center": optional_float(head, "WindowCenter", path.name),
        "window_width": optional_float(head, "WindowWidth", path.name),
        "resampled": resampled,
        "unreadable_files": [{"file": n, "code": c, "reason": r} for n, c, r in found.failed[:MAX_LISTED_FAILURES]],
        "n_unreadable_files": len(found.failed),
    }
    for keyword in ("Manufacturer", "BodyPartExamined", "PhotometricInterpretation"):
        if head.get(keyword):
            meta[keyword[0].lower() + keyword[1:]] = str(head.get(keyword))
    return meta


def dicom_tags(path: str | Path, series_uid: str | None = None, reveal_phi: bool = False,
               limits: ReadLimits | None = None) -> list[dict[str, str]]:  # fmt: skip
    """Tags of the chosen series' middle slice as rows {tag, keyword, vr, value}; values of
    PHI elements (names, IDs, dates, all UIDs, private tags) read '<hidden>' (UIDs as their
    short hash) unless ``reveal_phi``."""
    limits = limits or ReadLimits()
    _, group = _chosen_series(Path(path), series_uid, limits)
    ds = group.items[len(group.items) // 2][1]
    rows: list[dict[str, str]] = []
    _flatten(ds, "", reveal_phi, rows)
    return rows


def _flatten(ds: Dataset, prefix: str, reveal: bool, rows: list[dict[str, str]], depth: int = 0) -> None:
    for elem in ds:
        keyword = elem.keyword or ("(private)" if elem.tag.is_private else "(unknown)")
        name = f"{prefix}{keyword}"
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            rows.append({"tag": tag, "keyword": name, "vr": "SQ", "value": f"<{len(elem.value)} item(s)>"})
            if depth < 3 and (reveal or not is_phi_element(elem.keyword, "SQ", elem.tag.is_private)):
                for n, item in enumerate(elem.value[:20]):
                    _flatten(item, f"{name}[{n}].", reveal, rows, depth + 1)
            continue
        if elem.tag == 0x7FE00010 or elem.VR in ("OB", "OW", "OF", "OD", "UN"):
            binary = elem.tag == 0x7FE00010 or not reveal
            value = f"<{len(elem.value or b'')} bytes>" if binary else str(elem.value)[:200]
        elif reveal or not is_phi_element(elem.keyword, str(elem.VR), elem.tag.is_private):
            value = str(elem.value)[:200]
        elif elem.VR == "UI":
            value = f"hash:{uid_hash(elem.value)}"
        else:
            value = HIDDEN
        rows.append({"tag": tag, "keyword": name, "vr": str(elem.VR), "value": value})
