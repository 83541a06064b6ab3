"""Manifest of a tree of scans: one JSON line per image series or volume, headers only.

Inputs found under ROOT (hidden entries skipped):
- each ``.nii`` / ``.nii.gz`` file and each ``.zip`` file is one input;
- each folder that directly holds other files (DICOM files often have no extension) is one
  input, except files with a sidecar suffix (``.json``, ``.csv``, ``.txt``, ...).

``medssl.io.probe`` reads each input's headers: a folder gives one ``ok`` row per image
series plus one ``failed`` row per unreadable file; an input that cannot be read at all
gives one ``failed`` row with the error's code and reason (code ``internal`` and only the
exception's class for an unexpected error). A DICOM row's ``series`` is a salted hash
(``medssl.io.uid_hash``): ``salt_id`` fingerprints the salt it was made with, and
``series_files`` (the series' first file, relative to ROOT) locates the series whatever the
salt. Re-running with the previous manifest reuses the rows of inputs whose size and mtime
(and salt) are unchanged, probes new or changed ones and drops removed ones.

Paths as patient data (``medssl.io.path_privacy``): a path component holding the scan's
own PatientName or PatientID tokens (every component with ``pseudonymize``) is written as
its pseudonym, and the row says ``"private": true``. The real paths go to a separate file
beside the manifest, ``NAME.private.json`` (owner-only permissions), which ``read_manifest``
reads back: the manifest can be shared; the private file stays with the data."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medssl.atomic import atomic_write_text
from medssl.errors import ConfigError, CorruptFileError, MedsslError
from medssl.io import probe as probe_scan
from medssl.io.discovery import has_label_suffix, is_nifti
from medssl.io.path_privacy import mask_component, mask_label, mask_text, read_patient_tokens
from medssl.io.phi import salt_id

log = logging.getLogger(__name__)

SIDECAR_SUFFIXES = frozenset(  # as medssl.io's folder walk, plus a few
    ".json .jsonl .csv .tsv .txt .md .rst .yaml .yml .log .html .htm .pdf .png .jpg .jpeg .gif "
    ".py .sh .npy .npz .pt .pth .ckpt .tmp .lock .xml .ini .cfg .toml .gz .bz2 .xz .tar".split()
)
SIDECAR_NAMES = frozenset({"readme", "license", "thumbs.db"})


@dataclass(frozen=True)
class ScanInput:
    rel: str  # posix path relative to ROOT
    kind: str  # "nifti" | "zip" | "dicom"
    size: int  # bytes (summed over a folder's files)
    mtime_ns: int  # newest mtime in a folder
    fingerprint: str  # changes when any file is added, removed, resized or touched


@dataclass
class IndexResult:
    rows: list[dict[str, Any]]
    probed: int = 0  # inputs read this run
    reused: int = 0  # inputs whose rows were kept from the previous manifest
    removed: int = 0  # inputs of the previous manifest no longer found
    counts: dict[str, int] = field(default_factory=dict)  # rows by status

    def summary(self) -> str:
        inputs = len({r["input"] for r in self.rows})
        return (
            f"{inputs} inputs, {len(self.rows)} rows: {self.counts.get('ok', 0)} ok, "
            f"{self.counts.get('failed', 0)} failed; probed {self.probed}, "
            f"unchanged {self.reused}, removed {self.removed}"
        )


def _dicom_candidate(name: str) -> bool:
    """A file that may be DICOM: not NIfTI, zip, hidden or a known sidecar."""
    low = name.lower()
    return not (low.startswith(".") or is_nifti(low) or low.endswith(".zip") or low in SIDECAR_NAMES
                or any(low.endswith(s) for s in SIDECAR_SUFFIXES))


def find_inputs(root: Path, skip: frozenset[Path] = frozenset()) -> Iterator[ScanInput]:
    """Walks ``root`` with ``os.scandir`` (stat only, no file is opened), in sorted order."""
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            log.warning("cannot list %s: %s", os.path.relpath(folder, root), err.strerror)
            continue
        loose: list[os.DirEntry] = []
        subdirs: list[Path] = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(Path(entry.path))
            elif entry.is_file() and not (skip and Path(entry.path).resolve() in skip):
                loose.append(entry)
        for entry in loose:
            name = entry.name.lower()
            if is_nifti(name) or name.endswith(".zip"):
                st = entry.stat()
                yield ScanInput(Path(entry.path).relative_to(root).as_posix(),
                                "zip" if name.endswith(".zip") else "nifti",
                                st.st_size, st.st_mtime_ns, f"{st.st_size}:{st.st_mtime_ns}")
        dicom = [e for e in loose if _dicom_candidate(e.name)]
        if dicom:
            stats = [(e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in dicom]
            digest = hashlib.sha1(json.dumps(stats).encode()).hexdigest()[:16]
            yield ScanInput(folder.relative_to(root).as_posix(), "dicom",
                            sum(s[1] for s in stats), max(s[2] for s in stats), f"{len(stats)}:{digest}")
        stack.extend(reversed(subdirs))


def _row_id(input_rel: str, key: str) -> str:
    return hashlib.sha1(f"{input_rel}|{key}".encode()).hexdigest()[:16]


def _base_row(inp: ScanInput, path: str, key: str) -> dict[str, Any]:
    return {
        "id": _row_id(inp.rel, key),
        "path": path,
        "input": inp.rel,
        "kind": inp.kind,
        "role": "label" if has_label_suffix(Path(path).name) else "image",
        "series": None,
        "modality": None,
        "shape": None,
        "spacing": None,
        "n_files": None,
        "series_files": None,
        "salt_id": None,
        "status": "ok",
        "code": None,
        "reason": None,
        "size": inp.size,
        "mtime_ns": inp.mtime_ns,
        "fingerprint": inp.fingerprint,
    }


def _failed_row(inp: ScanInput, path: str, code: str, reason: str) -> dict[str, Any]:
    row = _base_row(inp, path, f"failed:{path}")
    row.update(status="failed", code=code, reason=reason)
    return row


def _series_rows(inp: ScanInput, result: Any) -> list[dict[str, Any]]:
    rows = []
    for header in result.series:
        kind = getattr(header, "kind", "image")
        if kind != "image":
            continue  # localizers and non-image objects (RTSTRUCT, SR, SEG, ...) are not volumes
        key = getattr(header, "uid_hash", "") or getattr(header, "series_key", "")
        row = _base_row(inp, inp.rel, f"series:{key}")
        row.update(
            series=getattr(header, "uid_hash", "") or None,
            modality=header.modality,
            shape=[int(v) for v in header.shape] if header.shape is not None else None,
            spacing=[round(float(v), 6) for v in header.spacing] if header.spacing is not None else None,
            n_files=getattr(header, "n_files", None),
        )
        if row["series"]:
            row.update(series_files=_first_file(inp, getattr(header, "first_file", "")), salt_id=salt_id())
        skipped = getattr(header, "skipped_reason", None)
        if skipped:  # an image series whose geometry cannot be used ("code: reason")
            code, _, reason = skipped.partition(": ")
            row.update(status="failed", code=code if reason else "geometry", reason=reason or skipped)
        rows.append(row)
    return rows


def _first_file(inp: ScanInput, name: str) -> str | None:
    """The series' first file relative to ROOT (``dir/x.zip:member`` inside a zip)."""
    if not name:
        return None
    folder = inp.rel if inp.kind == "dicom" else posixpath.dirname(inp.rel)
    return posixpath.normpath(posixpath.join(folder, name))


PRIVATE_SUFFIX = ".private.json"
_PATH_FIELDS = ("path", "input", "series_files")


def private_paths_file(manifest: Path) -> Path:
    """Where the real paths of a manifest's private rows are kept."""
    return Path(manifest).with_name(Path(manifest).name + PRIVATE_SUFFIX)


def _mask_rows(rows: list[dict[str, Any]], tokens: frozenset[str], pseudonymize: bool) -> None:
    """Puts the masked form of each path field under ``row["masked"]`` where it differs."""
    for row in rows:
        row["pseudonymized"] = pseudonymize
        masked = {f: mask_label(row[f], tokens, pseudonymize) for f in _PATH_FIELDS if row.get(f)}
        masked = {f: v for f, v in masked.items() if v != row[f]}
        if row.get("reason") and tokens:
            row["reason"] = mask_text(row["reason"], tokens)
        if masked:
            row["masked"] = masked
        if tokens:
            row["_tokens"] = tokens  # in memory only, for the indexed root's own name


def probe_rows(root: Path, inp: ScanInput, probe: Callable[[Path], Any],
               pseudonymize: bool = False) -> list[dict[str, Any]]:
    """Rows for one input; never raises for a bad input."""
    path = Path(root) / inp.rel
    tokens = read_patient_tokens(path) if inp.kind in ("dicom", "zip") else frozenset()
    rows = _probe_rows(path, inp, probe, mask_label(inp.rel, tokens, pseudonymize))
    _mask_rows(rows, tokens, pseudonymize)
    return rows


def _probe_rows(path: Path, inp: ScanInput, probe: Callable[[Path], Any], shown: str) -> list[dict[str, Any]]:
    try:
        if inp.kind == "dicom":  # subfolders and the folder's NIfTI files are inputs of their own
            result = probe(path, recursive=False, include_nifti=False)
        else:
            result = probe(path)
    except MedsslError as err:  # InputError subclasses; a limit or config problem alike
        return [_failed_row(inp, inp.rel, err.code, err.reason)]
    except OSError as err:
        return [_failed_row(inp, inp.rel, "unreadable", err.strerror or err.__class__.__name__)]
    except Exception as err:  # noqa: BLE001 - one bad input must not end the run; its message may quote values
        log.warning("%s: unexpected %s while reading headers; row marked failed", shown, err.__class__.__name__)
        return [_failed_row(inp, inp.rel, "internal", f"unexpected {err.__class__.__name__} while reading headers")]
    rows = _series_rows(inp, result)
    for rel, code, reason in result.failed:
        where = inp.rel if inp.kind == "nifti" or rel == Path(inp.rel).name else posixpath.join(inp.rel, rel)
        where = posixpath.normpath(where)  # "./x.dcm" for a file at the root -> "x.dcm"
        rows.append(_failed_row(inp, where, code, reason))
    if not rows:
        kinds = sorted({getattr(h, "kind", "?") for h in result.series})
        reason = "no image series found" + (f" (only: {', '.join(kinds)})" if kinds else "")
        rows.append(_failed_row(inp, inp.rel, "no_image_series", reason))
    return rows


def index_tree(root: Path, previous: list[dict[str, Any]] | None = None, *,
               probe: Callable[[Path], Any] | None = None,
               skip: frozenset[Path] = frozenset(), workers: int = 1, pseudonymize: bool = False) -> IndexResult:
    """Indexes ``root``; rows of ``previous`` whose input is unchanged (and were written with
    the same ``pseudonymize``) are reused. ``workers`` > 1 probes in that many processes
    (``probe`` must then be picklable)."""
    probe = probe or probe_scan
    current_salt = salt_id()
    root = Path(root)
    old: dict[str, list[dict[str, Any]]] = {}
    for row in previous or []:
        old.setdefault(row.get("input", row.get("path")), []).append(row)
    result = IndexResult(rows=[])
    slots: list[list[dict[str, Any]] | ScanInput] = []  # kept rows, or an input to probe
    for inp in find_inputs(root, skip):
        kept = old.pop(inp.rel, None)
        unchanged = kept and all(r.get("fingerprint") == inp.fingerprint and
                                 bool(r.get("pseudonymized")) == pseudonymize and
                                 (not r.get("series") or r.get("salt_id") == current_salt) for r in kept)  # fmt: skip
        slots.append(kept if unchanged else inp)  # type: ignore[arg-type]
    result.removed = len(old)
    todo = [s for s in slots if isinstance(s, ScanInput)]
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            probed = iter(pool.map(probe_rows, [root] * len(todo), todo, [probe] * len(todo),
                                   [pseudonymize] * len(todo), chunksize=max(1, len(todo) // (8 * workers))))
    else:
        probed = (probe_rows(root, inp, probe, pseudonymize) for inp in todo)
    for slot in slots:
        result.rows.extend(next(probed) if isinstance(slot, ScanInput) else slot)
    result.probed, result.reused = len(todo), len(slots) - len(todo)
    for row in result.rows:
        result.counts[row["status"]] = result.counts.get(row["status"], 0) + 1
    return result


def write_manifest(rows: list[dict[str, Any]], path: Path) -> None:
    """Atomic: a temporary file in the same folder, fsync, then ``os.replace``. Rows with a
    ``masked`` entry are written with the masked paths, their real ones go to the private
    file (removed when no row needs it)."""
    public, private = [], {}
    for row in rows:
        out = {k: v for k, v in row.items() if k not in ("masked", "_tokens")}
        if row.get("masked"):
            private[row["id"]] = {f: row[f] for f in row["masked"]}
            out.update(row["masked"], private=True)
        public.append(out)
    side = private_paths_file(path)
    if private:
        atomic_write_text(side, json.dumps(private, indent=1))
        os.chmod(side, 0o600)
    elif side.is_file():
        side.unlink()
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=False) + "\n" for row in public))


def read_manifest(path: Path, *, check_salt: bool = True) -> list[dict[str, Any]]:
    """Rows of a manifest written by ``medssl data index``. ``check_salt`` warns when its
    series hashes were made with another UID salt (they will not be found by ``read_scan``)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorruptFileError(f"line {n} is not JSON ({err.msg})", source=Path(path).name) from err
            if not isinstance(row, dict) or "path" not in row:
                raise CorruptFileError(f"line {n} is not a manifest row", source=Path(path).name)
            rows.append(row)
    restore_private(rows, Path(path))
    if check_salt:
        _warn_other_salt(rows, Path(path).name)
    return rows


def restore_private(rows: list[dict[str, Any]], path: Path) -> None:
    """Real paths back into the private rows of the manifest at ``path`` (their masked form
    kept under ``masked``), from ``NAME.private.json`` beside it."""
    if not any(r.get("private") for r in rows):
        return
    side = private_paths_file(path)
    try:
        real = json.loads(side.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: its rows with patient-named paths keep their real paths in {side.name}, "
                          "which is not beside it; copy it from where the manifest was written, or re-run "
                          "`medssl data index`") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"unreadable ({err.__class__.__name__})", source=side.name) from err
    for row in rows:
        if row.pop("private", False):
            found = real.get(row.get("id")) if isinstance(real, dict) else None
            if not isinstance(found, dict):
                raise CorruptFileError(f"no real path for row {row.get('id')} of {path.name}", source=side.name)
            row["masked"] = {f: row[f] for f in found}
            row.update(found)


def _warn_other_salt(rows: list[dict[str, Any]], name: str) -> None:
    current = salt_id()
    others = sorted({r["salt_id"] for r in rows if r.get("series") and r.get("salt_id") not in (None, current)})
    if others:
        log.warning("%s: series hashes were made with another MEDSSL_UID_SALT (salt id %s, now %s); set the "
                    "same MEDSSL_UID_SALT or re-run `medssl data index`", name, ", ".join(others), current)  # fmt: skip


def update_manifest(root: Path, out: Path, *, probe: Callable[[Path], Any] | None = None,
                    workers: int = 1, pseudonymize: bool = False) -> IndexResult:
    """Indexes ``root`` into ``out``, reusing ``out``'s rows of unchanged inputs."""
    previous = None
    if Path(out).is_file():
        try:
            previous = read_manifest(out, check_salt=False)
        except CorruptFileError as err:
            log.warning("previous manifest unreadable (%s); indexing from scratch", err)
    skip = frozenset({Path(out).resolve(), private_paths_file(Path(out)).resolve()})
    result = index_tree(root, previous, probe=probe, skip=skip, workers=workers, pseudonymize=pseudonymize)
    # Relative, so a tree moved together with its manifest still resolves.
    rel_root = Path(os.path.relpath(Path(root).resolve(), Path(out).resolve().parent)).as_posix()
    masked_root = _masked_root(rel_root, result.rows, pseudonymize)
    for row in result.rows:
        row["root"] = rel_root
        row.pop("_tokens", None)
        if masked_root != rel_root:
            row["masked"] = {**(row.get("masked") or {}), "root": masked_root}
        elif row.get("masked"):
            row["masked"].pop("root", None)
    write_manifest(result.rows, out)
    return result


def _masked_root(rel_root: str, rows: list[dict[str, Any]], pseudonymize: bool) -> str:
    """The indexed root as the manifest shows it: a folder named after any indexed patient
    masked (every named folder with ``pseudonymize``; ``..`` and ``.`` stay)."""
    tokens = frozenset().union(*(r.get("_tokens") or () for r in rows))
    kept = {r["masked"]["root"] for r in rows if r.get("root") == rel_root and "root" in (r.get("masked") or {})}
    if kept and not pseudonymize:  # rows reused from the last run knew the root's patients
        return kept.pop()
    if not tokens and not pseudonymize:
        return rel_root
    parts = [p if p in (".", "..") else mask_component(p, tokens, pseudonymize) for p in rel_root.split("/")]
    return "/".join(parts)


def row_path(manifest: Path, row: dict[str, Any]) -> Path:
    """Where a manifest row's ``path`` lies on disk: relative to the indexed root, which is
    recorded relative to the manifest file."""
    return Path(manifest).parent / row.get("root", ".") / row["path"]
