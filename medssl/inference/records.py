"""Per-case records and the run-level ``results.csv``.

Each finished case leaves ``OUT/.medssl/cases/<key>.json`` (``key``: a hash of the input's
resolved path and series, ``CaseInput.key``): its input hash, the model hash,
a hash of the settings that change outputs, the files it wrote and its results row.
``--continue`` trusts a record only when all three match and every listed file still exists; ``results.csv`` is rebuilt from the records of
all inputs of the run (every part of a sharded run), in input order, and rewritten only
when its bytes change."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medssl.inference.outputs import csv_bytes, json_bytes, write_if_changed
from medssl.io.path_privacy import holds_patient_data

if TYPE_CHECKING:
    from medssl.inference.inputs import CaseInput

log = logging.getLogger("medssl.inference")

RECORD_DIR = ".medssl/cases"
BASE_COLUMNS = ["case_id", "source", "status", "code", "reason", "seconds"]


@dataclass
class CaseRecord:
    source: str
    case_id: str
    input_hash: str
    model_hash: str
    row: dict[str, Any]
    outputs: list[str] = field(default_factory=list)
    retry: bool = False  # a failure that may pass next time (not a bad input): --continue retries it
    settings_hash: str = ""  # prediction settings that change outputs (overlap, TTA, which files)
    key: str = ""  # CaseInput.key: names the record file

    def to_json(self) -> bytes:
        return json_bytes(self.__dict__)


def record_path(out: Path, key: str) -> Path:
    return out / RECORD_DIR / f"{key}.json"


def load_record(out: Path, key: str) -> CaseRecord | None:
    path = record_path(out, key)
    try:
        return CaseRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_record(out: Path, record: CaseRecord) -> None:
    write_if_changed(record_path(out, record.key), record.to_json())


def is_done(record: CaseRecord | None, out: Path, input_hash: str, model_hash: str, settings_hash: str) -> bool:
    """True when ``--continue`` may keep this case as it is."""
    if record is None or (record.input_hash, record.model_hash, record.settings_hash) != (input_hash, model_hash, settings_hash):
        return False
    if record.row.get("status") == "failed":
        return not record.retry
    return all((out / name).is_file() for name in record.outputs)


def result_columns(labels: dict[str, str], output_type: str) -> list[str]:
    """Base columns plus ``volume_ml_<label>`` per foreground label when a prediction is a
    label ``image``, or ``predicted, prob_<class>`` when it is class ``probabilities``
    (``FinetuneKind.output_type``)."""
    ordered = sorted(labels, key=int)
    if output_type == "image":
        return BASE_COLUMNS + [f"volume_ml_{labels[k]}" for k in ordered if int(k) > 0]
    return BASE_COLUMNS + ["predicted"] + [f"prob_{labels[k]}" for k in ordered]


def write_results(out: Path, keys: list[str], columns: list[str]) -> bool:
    """Rebuild ``results.csv`` from the records of ``keys``; True if the file changed."""
    rows = [r.row for r in (load_record(out, k) for k in keys) if r is not None]
    return write_if_changed(out / "results.csv", csv_bytes(rows, columns))


# --- Where the inputs live, so the viewer opens a case wherever it reads the results from ---


def inputs_roots(cases: list[CaseInput], out: Path, *, keep_patient_identity: bool = False,
                 pseudonymize: bool = False) -> dict[str, list[str]]:
    """run.json fields naming the folder(s) each case's ``source`` is relative to (the inputs'
    common parent): ``inputs_root_rel`` relative to the results folder ``out`` (both moved
    together), ``inputs_root`` absolute (the results folder moved alone). Kept out of
    results.csv on purpose: one record per run, no path in every row.

    A folder above the inputs can be named after the patient (``/archive/SMITH_JOHN/ct``):
    such a root is left out (the viewer then needs ``--data-dir``), as is every root under
    ``pseudonymize``, unless ``keep_patient_identity``."""
    import os

    roots: list[Path] = []
    withheld = 0
    for case in cases:
        rel = Path(str(case.source).partition("#series=")[0])
        path = Path(os.path.abspath(case.path))
        if rel.parts and path.parts[-len(rel.parts):] == rel.parts:
            root = path.parents[len(rel.parts) - 1]
            private = pseudonymize or any(part in case.hidden or holds_patient_data(part, case.patient)
                                          for part in root.parts)
            if private and not keep_patient_identity:
                withheld += 1
            elif root not in roots:
                roots.append(root)
    if withheld:
        log.info("run.json leaves out the inputs' folder for %d case(s): it holds patient data or --pseudonymize "
                 "is on (open the results in the viewer with --data-dir)", withheld)
    relative = []
    for root in roots:
        try:
            relative.append(Path(os.path.relpath(root, os.path.abspath(out))).as_posix())
        except ValueError:  # another drive (Windows): no relative path
            continue
    return {"inputs_root": [str(r) for r in roots], "inputs_root_rel": relative}
