"""What ``medssl predict`` runs on: command-line paths expanded into cases.

A NIfTI file is one case; a folder of DICOM files (with its subfolders) or a zip is one case
per image series; a ``manifest.jsonl`` from ``medssl data index`` lists its own rows; a folder
is searched for all of these. Sources are paths relative to the common parent of the inputs'
folders (never absolute paths or patient data); case ids are PHI-free and unique within a run
(nnU-Net style: ``CASE_0000.nii.gz`` gives ``CASE``). A path component holding the scan's own
PatientName / PatientID tokens (``medssl.io.path_privacy``) becomes ``case-<hash>`` in the
source and the case id; ``pseudonymize`` does that for every component. Each case's ``key`` (records, collision
suffixes) is a hash of its resolved absolute path and series, so it is stable across runs and
never shows the path."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import medssl.io as scan_io
from medssl.data.manifest import restore_private, row_path
from medssl.io.discovery import has_dicm_preamble, is_label, is_nifti
from medssl.io.path_privacy import Redactor, mask_label, read_patient_tokens
from medssl.io.limits import DEFAULT_LIMITS
from medssl.io.sources import _is_ignored, walk_tree

log = logging.getLogger("medssl.inference")



@dataclass(frozen=True)
class CaseInput:
    path: Path  # file or folder to read
    source: str  # PHI-free relative label, "#series=HASH" appended for one series of several
    case_id: str
    kind: str  # "nifti" | "dicom" (folder, zip or file) | "skipped" (not a scan) | "failed" (known bad)
    series: str | None = None  # series uid hash when the input holds several image series
    reason: str = ""  # why a "skipped" / "failed" input is not run
    code: str = ""
    key: str = ""  # hash of the resolved path (+ series): record name, collision suffix
    # The patient's tokens and the raw path names masked: in memory only, for ``redact``.
    patient: frozenset = field(default=frozenset(), repr=False, compare=False)
    hidden: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def redact(self, text: str) -> str:
        """``text`` (an error reason) with this case's patient data in paths masked."""
        redactor = Redactor()
        redactor.add(self.patient, self.hidden)
        return redactor(text)


def _maybe_dicom(path: Path) -> bool:
    """Not NIfTI, zip or a sidecar medssl.io leaves out of a folder (notes, Thumbs.db, ...)."""
    return not is_nifti(path) and not path.name.lower().endswith(".zip") and not _is_ignored(path.name)


def base_case_id(path: Path, patient: frozenset = frozenset(), pseudonymize: bool = False) -> str:
    return scan_io.case_id_for(path, patient=patient, pseudonymize=pseudonymize)


def _label(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (the inputs' common parent), never absolute."""
    try:
        rel = path.relative_to(base).as_posix()
    except ValueError:  # not under base (e.g. another drive)
        return path.name
    return rel if rel != "." else path.name


def _common_parent(roots: list[Path]) -> Path:
    try:
        return Path(os.path.commonpath([r.parent for r in roots]))
    except ValueError:  # no inputs, or paths on different drives
        return roots[0].parent if roots else Path()


def _key(path: Path, detail: str | None = None) -> str:
    return hashlib.sha256(f"{path.resolve()}\0{detail or ''}".encode()).hexdigest()[:24]


def collect_inputs(paths: list[str | Path], *, pseudonymize: bool = False,
                   redactor: Redactor | None = None) -> list[CaseInput]:  # fmt: skip
    """Every case of every path, in a stable order, with unique case ids; an input named twice
    (same resolved path and series) is run once. ``pseudonymize``: every case id and source
    component hashed. ``redactor`` learns each case's patient tokens and masked names (for
    log lines of the run)."""
    roots = [Path(os.path.normpath(Path(raw).absolute())) for raw in paths]
    base = _common_parent(roots)
    cases: list[CaseInput] = []
    for root in roots:
        if not root.exists():
            cases.append(CaseInput(root, _label(root, base), "", "failed", reason="input not found", code="not_found"))
        elif root.is_file() and root.name.endswith(".jsonl"):
            cases.extend(_from_manifest(root))
        elif root.is_file():
            cases.extend(_from_file(root, base))
        else:
            cases.extend(_from_folder(root, base))
    tokens: dict[Path, frozenset] = {}
    cases = [_private(c, pseudonymize, redactor, tokens) for c in cases]
    return _unique_ids(_dedupe([c if c.key else replace(c, key=_key(c.path, c.series)) for c in cases]))


def _private(case: CaseInput, pseudonymize: bool, redactor: Redactor | None,
             memo: dict[Path, frozenset]) -> CaseInput:  # fmt: skip
    """Source and case id of ``case`` with its patient's path components masked."""
    if case.path not in memo:
        dicom = case.path.exists() and not is_nifti(case.path) and case.path.suffix != ".jsonl"
        memo[case.path] = read_patient_tokens(case.path) if dicom else frozenset()
    patient = memo[case.path]
    source = mask_label(case.source, patient, pseudonymize)
    case_id = case.case_id or base_case_id(case.path)
    masked_id = base_case_id(case.path, patient, pseudonymize)
    if masked_id != base_case_id(case.path) or not case.case_id:
        suffix = f"_{case.series[:8]}" if case.series and case_id.endswith(f"_{case.series[:8]}") else ""
        case_id = masked_id + suffix
    raw = case.source.partition("#series=")[0].replace("\\", "/").replace(":", "/").split("/")
    hidden = tuple(sorted({p for p in [*raw, case.path.name] if p and mask_label(p, patient, pseudonymize) != p}))
    if redactor is not None:
        redactor.add(patient, hidden)
    return replace(case, source=source, case_id=case_id, patient=patient, hidden=hidden)


def _dedupe(cases: list[CaseInput]) -> list[CaseInput]:
    seen: set[str] = set()
    out = []
    for c in cases:
        if c.key in seen:
            log.info("%s: given more than once, run once", c.source)
            continue
        seen.add(c.key)
        out.append(c)
    return out


def _from_file(path: Path, base: Path) -> list[CaseInput]:
    if is_nifti(path):
        return [CaseInput(path, _label(path, base), base_case_id(path), "nifti")]
    return _dicom_cases(path, _label(path, base))


def _from_folder(root: Path, base: Path) -> list[CaseInput]:
    cases: list[CaseInput] = []
    for here, dirnames, filenames in walk_tree(root, DEFAULT_LIMITS.max_depth):
        files = [here / f for f in filenames]
        for f in files:
            if is_label(f):  # label maps beside their images (MSD, phantoms)
                cases.append(CaseInput(f, _label(f, base), base_case_id(f), "skipped",
                                       reason="named as a label map, not a scan", code="not_an_image"))  # fmt: skip
            elif is_nifti(f) or f.name.lower().endswith(".zip"):
                cases.extend(_from_file(f, base))
        if _holds_dicom(files):
            cases.extend(_dicom_cases(here, _label(here, base)))
            dirnames[:] = []  # a DICOM folder is read with its subfolders
    return cases


def _holds_dicom(files: list[Path]) -> bool:
    """A folder is a DICOM case when it has a file that may be DICOM; beside NIfTI files or
    zips, only a Part 10 file ("DICM" at byte 128) counts, so stray notes add no case."""
    candidates = [f for f in files if _maybe_dicom(f)]
    if not candidates or not any(is_nifti(f) or f.name.lower().endswith(".zip") for f in files):
        return bool(candidates)
    return any(has_dicm_preamble(f) for f in candidates)


def _dicom_cases(path: Path, source: str) -> list[CaseInput]:
    """One case, or one per image series when ``path`` holds several (the reader decides errors)."""
    single = [CaseInput(path, source, base_case_id(path), "dicom")]
    try:
        probed = scan_io.probe(path)
    except Exception:  # noqa: BLE001 - the read in the worker reports the typed error
        return single
    dicom = [s for s in probed.series if s.format != "nifti"]
    images = [s for s in dicom if s.kind == "image"]
    others = [s for s in dicom if s.kind != "image"]
    cases = [] if len(images) > 1 else single
    if len(images) > 1:
        for s in images:
            cases.append(CaseInput(path, f"{source}#series={s.uid_hash}", f"{base_case_id(path)}_{s.uid_hash[:8]}", "dicom", s.uid_hash))
    for s in others:
        reason = s.skipped_reason or f"non-image series ({s.kind})"
        cases.append(CaseInput(path, f"{source}#series={s.uid_hash}", f"{base_case_id(path)}_{s.uid_hash[:8]}", "skipped", s.uid_hash, reason, "not_an_image"))
    return cases


def _from_manifest(manifest: Path) -> list[CaseInput]:
    """Rows of ``medssl data index``: path (relative to the indexed root), series hash, status.
    Rows whose paths hold patient data carry their masked paths; the real ones come from the
    manifest's private file, and the masked ones stay the rows' labels."""
    cases: list[CaseInput] = []
    rows: list[tuple[int, dict]] = []
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            str(row["path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            cases.append(CaseInput(manifest, f"{manifest.name}:{n}", f"{manifest.stem}_{n}", "failed",
                                   reason="manifest line is not a JSON row with a path", code="bad_manifest",
                                   key=_key(manifest, f"line {n}")))  # fmt: skip
            continue
        rows.append((n, row))
    restore_private([row for _, row in rows], manifest)
    for _, row in rows:
        cases.append(_manifest_case(manifest, row))
    return cases


def _manifest_case(manifest: Path, row: dict) -> CaseInput:
    rel = str(row.get("masked", {}).get("path", row["path"]))
    path = row_path(manifest, row)
    series = row.get("series") or None
    source = f"{rel}#series={series}" if series else rel
    case_id = base_case_id(Path(rel)) if "masked" in row else base_case_id(path)  # a private row stays masked
    case = CaseInput(path, source, case_id, "nifti" if is_nifti(path) else "dicom", series)
    if row.get("role", "image") != "image":
        return replace(case, kind="skipped", reason=f"{row.get('role')} in the manifest, not a scan",
                       code="not_an_image")  # fmt: skip
    if row.get("status", "ok") != "ok":
        return replace(case, kind="failed", reason=str(row.get("reason") or "failed when indexed"),
                       code=str(row.get("code") or "bad_input"))  # fmt: skip
    if not path.exists():
        return replace(case, kind="failed", reason="input not found", code="not_found")
    return case


def _unique_ids(cases: list[CaseInput]) -> list[CaseInput]:
    """Colliding case ids (e.g. a NIfTI and its DICOM twin, ``p1/ct.nii.gz`` and ``p2/ct.nii.gz``)
    get a short hash of their resolved path."""
    counts = Counter(c.case_id for c in cases)
    out = []
    for c in cases:
        if counts[c.case_id] > 1:
            c = replace(c, case_id=f"{c.case_id}_{c.key[:6]}")
        out.append(c)
    return out


def input_hash(case: CaseInput) -> str:
    """Content hash of everything the case reads (file, or folder tree), plus its series."""
    h = hashlib.sha256(f"series={case.series}".encode())
    if case.path.is_file():
        files = [case.path]
    else:
        files = sorted(d / name for d, _, names in walk_tree(case.path, DEFAULT_LIMITS.max_depth) for name in names)
    for f in files:
        h.update(f.relative_to(case.path).as_posix().encode() if f != case.path else b".")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
