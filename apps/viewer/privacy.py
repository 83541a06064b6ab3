"""Patient data in the names the viewer lists (README "Patient data in paths"): a folder,
file or zip member whose name holds a patient's PatientName / PatientID tokens is listed as
``case-<hash>``. The tokens, the check and the hash are ``medssl.io.path_privacy``'s; this
module picks the tokens for the picker and the worklist and caches the header reads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from medssl.io.discovery import is_nifti
from medssl.io.path_privacy import mask_component, mask_label, mask_text, read_patient_tokens

from .sources import MAX_ENTRIES, Case, Entry

NO_TOKENS: frozenset[str] = frozenset()


# The picker is built before a scan is opened, so each listed DICOM folder or zip is checked
# when it is listed: PatientName / PatientID of its first DICOM file (headers only), cached
# per path and modification time. Listing already opens up to five files of each folder to
# tell DICOM apart, so this is the same order of cost once, and nothing on later reruns;
# listing every folder masked until opened would leave a clinician picking among hashes in
# a share named after no one. The tokens stay in this process's memory only.
@lru_cache(maxsize=2 * MAX_ENTRIES)
def _tokens(path: str, mtime_ns: int) -> frozenset[str]:
    return read_patient_tokens(path)


def tokens_of(path: Path | None) -> frozenset[str]:
    """The patient tokens of the DICOM folder, zip or file at ``path``; empty for NIfTI
    (no patient tags), a missing path or a scan without patient fields."""
    if path is None or is_nifti(Path(path).name):
        return NO_TOKENS
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return NO_TOKENS
    return _tokens(str(path), mtime)


def union(paths: Iterable[Path | None]) -> frozenset[str]:
    """Every listed patient's tokens together: a folder named after a patient is masked
    wherever it appears, also above a NIfTI file or sub-folder that holds no tags itself
    (over-masking a name that merely looks like another patient's is the safe side)."""
    return NO_TOKENS.union(*(tokens_of(p) for p in paths))


def entry_labels(entries: list[Entry], tokens: frozenset[str]) -> dict[str, str]:
    """{picker label: the label shown}: components holding patient tokens masked. The picker
    stays masked when the open scan's patient data is revealed: it lists every patient."""
    return {e.label: mask_label(e.label, tokens) for e in entries}


def case_label(case: Case, tokens: frozenset[str]) -> str:
    return mask_component(case.case_id, tokens)


def worklist_rows(cases: list[Case], tokens: frozenset[str]) -> list[dict[str, str]]:
    """The worklist table: case ids and failure reasons with patient names masked (a run
    before ``medssl predict`` masked them may have written them)."""
    rows = []
    for c in cases:
        row = {k: c.row.get(k, "") or "" for k in ("case_id", "status", "code", "reason")}
        row["case_id"], row["reason"] = case_label(c, tokens), mask_text(row["reason"], tokens)
        rows.append(row)
    return rows
