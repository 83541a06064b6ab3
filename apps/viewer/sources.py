"""Where scans come from: the data folder (NIfTI files, DICOM series folders, zips), a batch
results folder (``results.csv`` as a worklist) and a models folder."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medssl.errors import MedsslError
from medssl.io.discovery import LABEL_SUFFIXES, case_stem, is_nifti, looks_dicom
from medssl.io.limits import DEFAULT_LIMITS
from medssl.io.sources import walk_tree

MAX_ENTRIES = 2000
MAX_DEPTH = 6


@dataclass(frozen=True)
class Entry:
    label: str  # relative path shown in the picker
    path: Path
    kind: str  # "nifti", "dicom" or "zip"
    label_path: Path | None = None  # CASE_label.nii.gz beside CASE.nii.gz: opened as its overlay


def label_twins(names: list[str]) -> dict[str, str]:
    """{label file: its scan} for NIfTI names like CASE_label.nii.gz beside CASE.nii.gz
    (suffixes _label, _labels, _seg, _mask, as ``medssl data index`` reads them)."""
    by_stem = {case_stem(n): n for n in names if is_nifti(n)}
    twins = {}
    for stem, name in by_stem.items():
        for suffix in LABEL_SUFFIXES:
            if stem.endswith(suffix) and stem[: -len(suffix)] in by_stem:
                twins[name] = by_stem[stem[: -len(suffix)]]
    return twins


def _dicom_folder(folder: Path, files: list[str]) -> bool:
    return any(looks_dicom(folder / name) for name in sorted(files)[:5])


def inside(root: Path, path: Path) -> bool:
    """True when ``path``, with every symlink resolved, lies in ``root`` (resolved too)."""
    try:
        Path(path).resolve(strict=True).relative_to(Path(root).resolve(strict=True))
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, or outside
        return False
    return True


def escapes(root: Path, path: Path, max_files: int = 20_000) -> bool:
    """True when ``path`` or (for a folder) any file or folder under it leads out of ``root``
    through a symlink: the data folder is the whole of what the viewer may read."""
    if not inside(root, path):
        return True
    if not Path(path).is_dir():
        return False
    seen = 0
    try:  # medssl's walk: no recursion however deep, each real folder once
        for folder, dirnames, filenames in walk_tree(Path(path), DEFAULT_LIMITS.max_depth):
            seen += len(dirnames) + len(filenames)
            if seen > max_files or any(not inside(root, folder / name) for name in dirnames + filenames):
                return True
    except MedsslError:  # deeper than any read goes, or unlistable: not opened
        return True
    return False


def list_data_dir(root: Path) -> list[Entry]:
    """NIfTI files, zips and folders holding DICOM files under ``root`` (depth and count
    bounded so a huge share cannot hang the page), sorted by relative path."""
    root = Path(root)
    entries: list[Entry] = []
    if not root.is_dir():
        return entries
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        folder = Path(dirpath)
        depth = len(folder.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < MAX_DEPTH else []
        rel = folder.relative_to(root).as_posix()
        filenames = [f for f in filenames if inside(root, folder / f)]  # no symlink escapes
        if filenames and _dicom_folder(folder, filenames):
            entries.append(Entry(label=f"{rel}/ (DICOM)", path=folder, kind="dicom"))
        twins = label_twins(filenames)
        labels = {scan: label for label, scan in twins.items()}
        for name in sorted(filenames):
            if name in twins:  # a label map is shown over its scan, not offered as a scan
                continue
            if is_nifti(name) or name.lower().endswith(".zip"):
                kind = "zip" if name.lower().endswith(".zip") else "nifti"
                label = folder / labels[name] if name in labels else None
                entries.append(Entry(label=(folder / name).relative_to(root).as_posix(), path=folder / name, kind=kind,
                                     label_path=label))  # fmt: skip
        if len(entries) >= MAX_ENTRIES:
            break
    return sorted(entries[:MAX_ENTRIES], key=lambda e: e.label)


def list_models(root: Path | None) -> list[Path]:
    """Model artifacts under ``root``: run folders holding ``model.pt``, and loose ``*.pt``
    files outside run folders (a run's ``best.pt`` and ``checkpoints/`` are training state,
    not artifacts)."""
    if root is None or not Path(root).is_dir():
        return []
    walked = walk_tree(Path(root), DEFAULT_LIMITS.max_depth, on_too_deep="stop")
    files = [folder / name for folder, _, names in walked for name in names if name.endswith(".pt")]
    runs = {p.parent for p in files if p.name == "model.pt"}
    loose = {
        p for p in files
        if p.name != "model.pt" and p.parent.name != "checkpoints" and not (runs & {p.parent, *p.parents})
    }
    return sorted(runs | loose)


@dataclass(frozen=True)
class Case:
    case_id: str
    status: str
    row: dict[str, str]
    mask: Path | None  # CASE.nii.gz when it exists
    record: Path | None  # CASE.json when it exists
    source: Path | None  # the input scan, when it can be found
    series: str | None = None  # series hash of a DICOM input holding several series


def split_source(value: str) -> tuple[str, str | None]:
    """``results.csv`` source "rel/path#series=HASH" -> ("rel/path", "HASH")."""
    path, _, series = value.partition("#series=")
    return path, series or None


def input_roots(results_dir: Path) -> list[Path]:
    """Folders the run's sources are relative to, from run.json (or each part's record of a
    sharded run): ``inputs_root_rel`` against the results folder first (results and inputs
    moved together), then the absolute ``inputs_root`` (the results folder moved alone)."""
    rel: list[Path] = []
    absolute: list[Path] = []
    for record in sorted(results_dir.glob("run*.json")):
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        rel += [results_dir / str(r) for r in doc.get("inputs_root_rel") or [] if isinstance(r, str)]
        absolute += [Path(r) for r in doc.get("inputs_root") or [] if isinstance(r, str) and Path(r).is_absolute()]
    return list(dict.fromkeys(rel + absolute))


def _resolve_source(value: str, results_dir: Path, data_dir: Path | None, roots: list[Path]) -> Path | None:
    """``source`` is relative to the inputs' common parent: try the roots run.json records,
    then (results written before it recorded them) the data folder, its parent, and the
    results folder's parent."""
    if not value:
        return None
    if Path(value).is_absolute():
        return Path(value) if Path(value).exists() else None
    bases = [*roots, data_dir, data_dir.parent if data_dir else None, results_dir.parent, results_dir]
    candidates = [Path(base) / value for base in bases if base is not None]
    found = next((c for c in candidates if c.exists()), None)
    return Path(os.path.normpath(found)) if found is not None else None


def read_worklist(results_dir: Path, data_dir: Path | None = None) -> list[Case]:
    """One row per case of ``results.csv`` with its status and the files beside it."""
    results_dir = Path(results_dir)
    table = results_dir / "results.csv"
    if not table.is_file():
        return []
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    cases = []
    roots = input_roots(results_dir)
    for row in rows:
        case_id = row.get("case_id", "")
        source, series = split_source(row.get("source", ""))
        mask = results_dir / f"{case_id}.nii.gz"
        record = results_dir / f"{case_id}.json"
        cases.append(
            Case(
                case_id=case_id,
                status=row.get("status", ""),
                row=row,
                mask=mask if case_id and mask.is_file() else None,
                record=record if case_id and record.is_file() else None,
                source=_resolve_source(source, results_dir, data_dir, roots),
                series=series,
            )
        )
    return cases
