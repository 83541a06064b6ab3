"""Subcommands: ``inspect`` (what a scan is) and ``convert`` (any supported scan -> NIfTI).
Patient data (names, IDs, birth dates, full UIDs) is shown only with ``--show-phi``; a path
component holding the scan's own patient name or ID is shown as ``case-<hash>`` in the
output, logs and errors (every component with ``--pseudonymize``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from medssl.errors import EXIT_USAGE, ConfigError, MedsslError

log = logging.getLogger("medssl")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show shape, spacing, orientation, modality and series of a scan",
                       description="Read a NIfTI file, a folder of DICOM files or a .zip of a DICOM series "
                       "and describe it. Patient data stays hidden unless --show-phi.")  # fmt: skip
    p.add_argument("path", help="NIfTI file, DICOM folder or .zip")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _common(p)
    p.add_argument("--show-phi", action="store_true", help="also show patient name/ID/birth date and UIDs")
    p.add_argument("--pseudonymize", action="store_true",
                   help="show source and case id as case-<hash> whatever they hold (default: only path names "
                   "holding the scan's own PatientName / PatientID are hashed)")
    p.set_defaults(func=run_inspect)

    c = sub.add_parser("convert", help="convert a scan (DICOM folder/zip or NIfTI) to NIfTI",
                       description="Write the scan as NIfTI with its geometry (qform and sform) kept.")  # fmt: skip
    c.add_argument("src", help="NIfTI file, DICOM folder or .zip")
    c.add_argument("dst", help="output file ending in .nii.gz or .nii")
    _common(c)
    c.add_argument("--canonical", action="store_true", help="reorient voxels to RAS before writing")
    c.set_defaults(func=run_convert)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series", metavar="UID", default=None,
                   help="SeriesInstanceUID or its short hash (default: the largest image series)")  # fmt: skip
    p.add_argument("--allow-resample", action="store_true",
                   help="resample uneven slice spacing or gantry tilt instead of failing")  # fmt: skip


def describe(scan: Any, *, show_phi: bool = False) -> dict[str, Any]:
    """PHI-free summary of a Scan (plus ``phi`` when asked)."""
    arr = scan.array
    selected = scan.meta.get("series_uid_hash")
    info: dict[str, Any] = {
        "source": scan.source,
        "case_id": scan.case_id,
        "format": scan.meta.get("format"),
        "modality": scan.modality,
        "shape": list(scan.shape),
        "spacing_mm": [round(s, 4) for s in scan.spacing],
        "orientation": scan.orientation,
        "dtype": str(arr.dtype),
        "intensity": {"min": float(arr.min()), "max": float(arr.max()), "mean": round(float(arr.mean()), 3)},
        "affine": [[round(float(v), 6) for v in row] for row in scan.affine],
        "series": [{**s.__dict__, "shape": list(s.shape) if s.shape else None, "selected": s.uid_hash == selected}
                   for s in scan.series],  # fmt: skip
        "meta": scan.meta,
    }
    if show_phi:
        info["phi"] = scan.phi
    return info


def _print_text(info: dict[str, Any]) -> None:
    lo, hi = info["intensity"]["min"], info["intensity"]["max"]
    lines = [
        f"source       {info['source']} ({info['format']})",
        f"modality     {info['modality']}" + (" (guessed)" if info["meta"].get("modality_guessed") else ""),
        f"shape        {' x '.join(map(str, info['shape']))}",
        f"spacing      {' x '.join(f'{s:.4g}' for s in info['spacing_mm'])} mm",
        f"orientation  {info['orientation']}",
        f"intensity    {lo:g} .. {hi:g}" + (" HU" if info["modality"] == "CT" else ""),
    ]
    for what in info["meta"].get("resampled") or []:
        lines.append(f"resampled    {what}")
    if info["series"]:
        lines.append("series")
        for s in info["series"]:
            mark = "*" if s["selected"] else " "
            note = f"  skipped: {s['skipped_reason']}" if s["skipped_reason"] else ""
            lines.append(f"  {mark} {s['uid_hash']}  {s['modality']:<8} {s['kind']:<9} {s['n_files']:>5} files  "
                         f"{s['description'][:40]!r}{note}")  # fmt: skip
    n_bad = info["meta"].get("n_unreadable_files") or 0
    if n_bad:
        lines.append(f"unreadable   {n_bad} file(s), e.g. {info['meta']['unreadable_files'][0]['file']}")
    for key, value in info.get("phi", {}).items():
        lines.append(f"phi          {key}: {value}")
    print("\n".join(lines))


def _read(path: str, *, pseudonymize: bool = False, **kwargs: Any) -> tuple[Any, Any]:
    """``read_scan`` with the path's patient data masked in the scan's source and case id,
    in log lines and in a raised error. Returns (scan, redactor for further text)."""
    from medssl.io import case_id_for, read_scan
    from medssl.io.path_privacy import Redactor, mask_label, read_patient_tokens, redacting_logs

    where = Path(path)
    patient = read_patient_tokens(where)
    redactor = Redactor()
    names = [part for part in where.absolute().parts if mask_label(part, patient, pseudonymize) != part]
    redactor.add(patient, names)
    with redacting_logs(redactor):
        try:
            scan = read_scan(where, **kwargs)
        except MedsslError as err:
            err.source = redactor(err.source) if err.source else err.source
            err.reason = redactor(err.reason)
            err.args = (redactor(str(err)),)
            raise
    scan.source = mask_label(scan.source, patient, pseudonymize)
    scan.case_id = case_id_for(where, patient=patient, pseudonymize=pseudonymize)
    return scan, redactor


def run_inspect(args: argparse.Namespace) -> int:
    from medssl.io.path_privacy import redacting_logs

    scan, redactor = _read(args.path, pseudonymize=args.pseudonymize, series_uid=args.series,
                           allow_resample=args.allow_resample, reveal_phi=args.show_phi)  # fmt: skip
    # Every name in the description (sources, unreadable files) masked; only --show-phi adds patient data.
    info = json.loads(redactor(json.dumps(describe(scan), default=str, ensure_ascii=False)))
    if args.show_phi:
        info["phi"] = scan.phi
    with redacting_logs(redactor):
        if args.json:
            json.dump(info, sys.stdout, indent=2, default=str)
            print()
        else:
            _print_text(info)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from medssl.io import to_canonical, write_scan

    dst = Path(args.dst)
    if not dst.name.lower().endswith((".nii.gz", ".nii")):
        print(f"medssl convert: error: output must end in .nii.gz or .nii, got '{dst.name}'", file=sys.stderr)
        return EXIT_USAGE
    scan, _ = _read(args.src, series_uid=args.series, allow_resample=args.allow_resample)
    if args.canonical:
        scan = to_canonical(scan)
    try:
        write_scan(scan, dst)
    except OSError as err:  # a folder in the way, read-only, disk full, ...
        raise ConfigError(f"cannot write the output ({err.strerror or err.__class__.__name__}); choose a "
                          "writable file path", source=str(dst), code="bad_output") from err  # fmt: skip
    log.info("wrote %s: %s voxels, %s mm, %s, %s", dst.name, "x".join(map(str, scan.shape)),
             "x".join(f"{s:.4g}" for s in scan.spacing), scan.orientation, scan.modality)  # fmt: skip
    print(dst)
    return 0
