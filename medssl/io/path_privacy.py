"""Paths as patient data. PACS exports often name folders, files or zip members after the
patient; such a name must not become a case id, an output file name, a log line or an error.

A path component "holds patient data" when it contains the scan's own PatientName or
PatientID tokens (read from the DICOM headers, never guessed): a name part of two or more
characters as a whole word of the component (``SMITH_JOHN``, ``john-smith-ct``), a name part
of four or more characters (or any non-ASCII one: ``山田``) anywhere in it (``SmithJohn``), or
the PatientID's letters and digits anywhere in it (``AB-1234_ct`` for ID ``AB1234``); letters of any
script, compared case-folded. Such a component is replaced by its pseudonym ``case-<hash>``:
a salted hash of the name (``medssl.io.phi.uid_hash``), stable across runs and machines
sharing ``MEDSSL_UID_SALT``, not reversible without the salt. ``pseudonymize=True``
replaces every component, whatever it holds. Names of NIfTI files, which carry no patient
tags, are masked only with ``pseudonymize``.

The tokens exist only in memory: they are never logged, stored or shown."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from medssl.errors import MedsslError
from medssl.io.dicom_headers import quiet_pydicom
from medssl.io.discovery import has_dicm_preamble, is_nifti
from medssl.io.limits import ReadLimits
from medssl.io.phi import uid_hash
from medssl.io.sources import _is_ignored, walk_tree

PSEUDONYM_PREFIX = "case-"
_WORD = re.compile(r"[^\W_]+")  # letters and digits, any script
_NAME_SPLIT = re.compile(r"[\^=\s,._\-/\\()'\"]+")
# A path-like chunk of free text: what an error message may quote (file, folder, member names).
_CHUNK = re.compile(r"[^\s'\"`,;:()\[\]{}<>|]+")
_MAX_TRIED = 8  # files (or zip members) opened to find the patient's tokens
_MAX_WALKED = 2_000  # directory entries looked at for them


def patient_tokens(phi: Mapping[str, object] | None) -> frozenset[str]:
    """The tokens of ``PatientName`` and ``PatientID`` in ``phi`` (as ``Scan.phi`` or
    ``phi_from_dataset`` give), case-folded: name parts, and the ID's letters and digits
    (prefixed ``id:``). Empty when neither is set."""
    if not phi:
        return frozenset()
    tokens: set[str] = set()
    name = str(phi.get("PatientName") or "").casefold()
    tokens.update(w for p in _NAME_SPLIT.split(name) for w in _WORD.findall(p) if len(w) >= 2)
    pid = str(phi.get("PatientID") or "").casefold()
    compact = "".join(_WORD.findall(pid))
    if len(compact) >= 3:
        tokens.add(f"id:{compact}")
    tokens.update(p for p in _WORD.findall(pid) if len(p) >= 4 and not p.isdigit())
    return frozenset(tokens)


class _Matcher:
    """Patient tokens compiled for fast checks: whole-word tokens as a set, substring tokens
    (name parts of 4+ characters, IDs) by their lengths, so that a run over thousands of
    patients checks a name in time linear in the name, not in the number of tokens."""

    def __init__(self, tokens: frozenset[str]):
        self.words = frozenset(t for t in tokens if not t.startswith("id:"))
        self.subs = frozenset({t[3:] if t.startswith("id:") else t for t in tokens  # CJK names are short
                               if t.startswith("id:") or len(t) >= 4 or not t.isascii()})  # fmt: skip
        self.lengths = sorted({len(t) for t in self.subs})

    def __call__(self, name: str) -> bool:
        if not name or not (self.words or self.subs):
            return False
        found = _WORD.findall(name.casefold())
        if self.words.intersection(found):
            return True
        compact = "".join(found)
        if len(self.subs) <= 32:
            return any(t in compact for t in self.subs)
        return any(compact[i : i + n] in self.subs for n in self.lengths for i in range(len(compact) - n + 1))


@lru_cache(maxsize=64)
def _matcher(tokens: frozenset[str]) -> _Matcher:
    return _Matcher(tokens)


def holds_patient_data(name: str, tokens: Iterable[str]) -> bool:
    """True when ``name`` (one path component, or any text) contains a patient token."""
    return _matcher(tokens if isinstance(tokens, frozenset) else frozenset(tokens))(name)


def pseudonym(name: str) -> str:
    """``case-<12 hex>``: the salted hash of a path component (or any label)."""
    return PSEUDONYM_PREFIX + uid_hash(f"path-component:{name}")


def mask_component(name: str, tokens: Iterable[str], pseudonymize: bool = False) -> str:
    if pseudonymize or holds_patient_data(name, tokens):
        return pseudonym(name)
    return name


def mask_label(label: str, tokens: Iterable[str], pseudonymize: bool = False) -> str:
    """A relative path label (``a/b/c.zip:member#series=HASH``) with every component that
    holds patient data (every component with ``pseudonymize``) replaced by its pseudonym;
    a ``#series=...`` suffix is kept as it is (a hash already)."""
    tokens = tokens if isinstance(tokens, frozenset) else frozenset(tokens)
    base, sep, series = label.partition("#series=")
    parts = re.split(r"([/\\:])", base)
    masked = [p if p in ("/", "\\", ":", "") else mask_component(p, tokens, pseudonymize) for p in parts]
    return "".join(masked) + sep + series


def mask_text(text: str, tokens: Iterable[str]) -> str:
    """Free text (an error reason, a log line) with every path-like chunk that holds patient
    data replaced by its pseudonym."""
    tokens = tokens if isinstance(tokens, frozenset) else frozenset(tokens)
    if not tokens or not text:
        return text
    return _CHUNK.sub(lambda m: mask_label(m.group(0), tokens), text)


def read_patient_tokens(path: str | Path, limits: ReadLimits | None = None) -> frozenset[str]:
    """The patient tokens of the DICOM data at ``path`` (a folder, a zip or a DICOM file):
    PatientName and PatientID of the first few files that hold them (headers only, bounded
    by ``limits``). Empty for NIfTI, unreadable or patient-free inputs; never raises."""
    limits = limits or ReadLimits()
    path = Path(path)
    for blob in _candidate_headers(path, limits):
        tokens = _tokens_of(blob)
        if tokens:
            return tokens
    return frozenset()


def _tokens_of(source) -> frozenset[str]:
    import pydicom

    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["PatientName", "PatientID"])
            phi = {"PatientName": str(ds.get("PatientName") or ""), "PatientID": str(ds.get("PatientID") or "")}
    except Exception:  # noqa: BLE001 - not DICOM, or broken: nothing known from this file
        return frozenset()
    return patient_tokens(phi)


def _candidate_headers(path: Path, limits: ReadLimits) -> Iterator:
    """Up to ``_MAX_TRIED`` files that may be DICOM: paths on disk, or zip members' bytes.
    Files with the DICOM preamble come first, wherever they sit: a PACS CD puts AUTORUN.INF,
    DICOMDIR and a viewer's DLLs beside the patient's image folder; files without it (raw
    datasets) are tried after them."""
    if path.is_file():
        if path.name.lower().endswith(".zip"):
            yield from _zip_members(path, limits)
        elif not is_nifti(path.name):
            yield str(path)
        return
    tried, later = 0, []
    for full in _files_below(path, limits):
        if has_dicm_preamble(full):
            tried += 1
            yield str(full)
            if tried >= _MAX_TRIED:
                return
        elif len(later) < _MAX_TRIED - tried:
            later.append(full)
    yield from (str(f) for f in later[: _MAX_TRIED - tried])


def _files_below(path: Path, limits: ReadLimits) -> Iterator[Path]:
    """At most ``_MAX_WALKED`` files under ``path`` that could be scans, never raising."""
    walked = 0
    try:
        for folder, _, files in walk_tree(path, limits.max_depth, on_too_deep="stop"):
            for name in files:
                walked += 1
                if walked > _MAX_WALKED:
                    return
                full = folder / name
                if _is_ignored(name) or is_nifti(name):
                    continue
                try:
                    if full.stat().st_size <= limits.max_file_bytes:
                        yield full
                except OSError:
                    continue
    except MedsslError:  # an unlistable folder: the read reports it
        return


def _zip_members(path: Path, limits: ReadLimits) -> Iterator:
    import io

    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and i.file_size <= min(limits.max_file_bytes, 64 << 20)]
            for info in infos[:_MAX_TRIED]:
                yield io.BytesIO(zf.read(info))
    except Exception:  # noqa: BLE001 - a broken zip: the read reports it
        return


class Redactor:
    """Masks free text (log lines, error reasons) for a set of patients and raw names: every
    path-like chunk holding a patient token, and every occurrence of a raw name that was
    replaced by its pseudonym (with ``--pseudonymize``, every input's path components).
    Usable as a ``logging`` filter: ``handler.addFilter(redactor)``."""

    def __init__(self) -> None:
        self.tokens: frozenset[str] = frozenset()
        self._names: dict[str, str] = {}
        self._names_re: re.Pattern[str] | None = None

    def add(self, tokens: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        new = frozenset(tokens) - self.tokens
        if new:
            self.tokens = self.tokens | new
        for name in names:
            if len(name) >= 2 and not name.startswith(PSEUDONYM_PREFIX) and name not in self._names:
                self._names[name] = pseudonym(name)
                self._names_re = None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        text = mask_text(text, self.tokens)
        if self._names:
            if self._names_re is None:
                alternatives = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
                self._names_re = re.compile(alternatives)
            text = self._names_re.sub(lambda m: self._names[m.group(0)], text)
        return text

    def filter(self, record) -> bool:
        if not (self.tokens or self._names):
            return True
        message = record.getMessage()
        masked = self(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:  # a traceback quotes paths too (--debug)
            record.exc_text = self(logging.Formatter().formatException(record.exc_info))
        return True


@contextmanager
def redacting_logs(redactor: Redactor) -> Iterator[Redactor]:
    """While the block runs, every handler of the root and ``medssl`` loggers passes records
    through ``redactor`` (io modules log ``source`` names; this masks them)."""
    handlers = {*logging.getLogger().handlers, *logging.getLogger("medssl").handlers}
    for handler in handlers:
        handler.addFilter(redactor)
    try:
        yield redactor
    finally:
        for handler in handlers:
            handler.removeFilter(redactor)
