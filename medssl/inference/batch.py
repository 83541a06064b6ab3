"""Batch prediction over many inputs: CPU worker threads read and preprocess the next scans
while the model runs on the current one; every input ends as one row (ok / failed /
skipped) and a failure never stops the run; outputs are atomic; ``resume`` (``--continue``)
keeps cases whose input and model hashes match their record and leaves their files,
``results.csv`` and the run record untouched. A full disk or a refused write in the output
folder stops the run with a ``ConfigError`` (exit 4) naming the file and the OS message;
the cases finished before it keep their records, so ``--continue`` goes on from there."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import medssl.io as scan_io  # module attribute calls: tests stand in for the readers
from medssl.artifacts.model import current_versions
from medssl.errors import (
    EXIT_ALL_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    InputError,
    MedsslError,
)
from medssl.inference.case_outputs import write_case_outputs
from medssl.inference.inputs import CaseInput, input_hash
from medssl.inference.outputs import write_json
from medssl.inference.predictor import Predictor, Prepared
from medssl.inference.records import (
    CaseRecord,
    inputs_roots,
    is_done,
    load_record,
    result_columns,
    save_record,
    write_results,
)
from medssl.io.scan import Scan

log = logging.getLogger("medssl.inference")


@dataclass
class BatchOptions:
    output: Path
    resume: bool = False  # --continue
    save_probabilities: bool = False
    dicom_seg: bool = True
    keep_patient_identity: bool = False  # DICOM SEG copies the source's Patient and Study modules
    preview: bool = True
    workers: int = 2  # reading + preprocessing threads; 0 = all in the main thread
    allow_resample: bool = False  # read_scan resamples tilted / unevenly spaced DICOM series
    part: int = 1  # 1-based shard index
    of: int = 1
    progress: bool = True
    pseudonymize: bool = False  # every case id hashed (collect_inputs did it; recorded, changes file names)


@dataclass
class BatchSummary:
    counts: dict[str, int] = field(default_factory=dict)  # ok / failed / skipped, plus kept (of those)
    exit_code: int = EXIT_OK
    seconds: float = 0.0


@dataclass
class _Loaded:
    case: CaseInput
    input_hash: str = ""
    scan: Scan | None = None
    prepared: Prepared | None = None
    datasets: list | None = None
    error: Exception | None = None
    kept: CaseRecord | None = None
    seconds: float = 0.0


def settings_hash(predictor: Predictor, opts: BatchOptions) -> str:
    """Hash of everything besides model and input that changes a case's outputs."""
    settings = {
        "overlap": predictor.window.overlap,
        "roi_size": list(predictor.window.roi_size),
        "tta": predictor.tta,
        "save_probabilities": opts.save_probabilities,
        "dicom_seg": opts.dicom_seg,
        "preview": opts.preview,
        "allow_resample": opts.allow_resample,
        **({"pseudonymize": True} if opts.pseudonymize else {}),  # absent when off: old records still match
        **({"keep_patient_identity": True} if opts.keep_patient_identity else {}),  # old runs keep their hash
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def shard(cases: list[CaseInput], part: int, of: int) -> list[CaseInput]:
    return cases[part - 1 :: of]


_WRITE_CODES = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EACCES: "read_only", errno.EPERM: "read_only"}  # fmt: skip


def output_write_error(err: OSError, out: Path) -> ConfigError | None:
    """A full disk anywhere, or a refused write inside ``out``, as a typed error naming the
    file (relative to ``out``: a masked case id, never a patient name) and the OS message."""
    where = Path(str(err.filename)) if err.filename else None
    inside = where is not None and where.absolute().is_relative_to(out.absolute())
    code = _WRITE_CODES.get(err.errno or 0)
    if code is None or not (inside or code == "disk_full" or err.errno == errno.EROFS):
        return None
    shown = where.absolute().relative_to(out.absolute()).as_posix() if inside else (where.name if where else "")
    return ConfigError(f"cannot write {out / shown if shown else out}: {err.strerror or err.__class__.__name__}; "
                       "free space or choose a writable --output, then rerun with --continue", code=code)  # fmt: skip


@contextlib.contextmanager
def _output_writes(out: Path):
    try:
        yield
    except OSError as err:
        typed = output_write_error(err, out)
        if typed is None:
            raise
        raise typed from err


def run_batch(predictor: Predictor, cases: list[CaseInput], opts: BatchOptions) -> BatchSummary:
    """Predict every case of this part; write per-case outputs, results.csv and the run record.
    Raises ``ConfigError`` (disk_full / read_only) when the output folder cannot be written."""
    with _output_writes(opts.output):
        return _run_batch(predictor, cases, opts)


def _run_batch(predictor: Predictor, cases: list[CaseInput], opts: BatchOptions) -> BatchSummary:
    from tqdm import tqdm

    start = time.perf_counter()
    out = opts.output
    out.mkdir(parents=True, exist_ok=True)
    mine = shard(cases, opts.part, opts.of)
    counts = {"ok": 0, "warning": 0, "failed": 0, "skipped": 0, "kept": 0}
    timings = {"load_seconds": 0.0, "predict_seconds": 0.0}
    settings = settings_hash(predictor, opts)
    bar = tqdm(total=len(mine), unit="scan", desc="predict", disable=not opts.progress, leave=False)
    for loaded in _in_order(lambda c: _load(predictor, c, opts, settings), mine, opts.workers):
        if loaded.kept is not None:
            record = loaded.kept
            counts["kept"] += 1
        else:
            record = _finish(predictor, loaded, opts)
            record.settings_hash = settings
            save_record(out, record)
            timings["load_seconds"] += loaded.seconds
            timings["predict_seconds"] += float(record.row.get("seconds") or 0) - loaded.seconds
        status = record.row["status"]
        counts[status] += 1
        _log_case(record, kept=loaded.kept is not None)
        bar.set_postfix_str(f"{counts['ok']} ok, {counts['warning']} warning, {counts['failed']} failed")
        bar.update(1)
    bar.close()
    write_results(out, [c.key for c in cases], result_columns(predictor.labels, predictor.kind.output_type))
    summary = BatchSummary(counts, _exit_code(counts), round(time.perf_counter() - start, 3))
    run_file = out / ("run.json" if opts.of == 1 else f"run_part{opts.part}of{opts.of}.json")
    if counts["kept"] < len(mine) or not run_file.is_file():
        run_record = _run_record(predictor, opts, summary, timings, len(mine))
        roots = inputs_roots(cases, out, keep_patient_identity=opts.keep_patient_identity,
                             pseudonymize=opts.pseudonymize)
        write_json(run_file, {**run_record, **roots})  # the viewer finds inputs
    return summary


def _exit_code(counts: dict[str, int]) -> int:
    if counts["failed"] == 0:
        return EXIT_OK
    return EXIT_ALL_FAILED if counts["ok"] + counts["warning"] == 0 else EXIT_PARTIAL


def _in_order(fn: Callable[[CaseInput], _Loaded], cases: Iterable[CaseInput], workers: int) -> Iterator[_Loaded]:
    """``fn`` over ``cases`` in worker threads, at most ``workers + 1`` ahead, results in order."""
    if workers <= 0:
        yield from map(fn, cases)
        return
    it = iter(cases)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medssl-load") as pool:
        pending = deque(pool.submit(fn, c) for c in islice(it, workers + 1))
        while pending:
            future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield future.result()


def _load(predictor: Predictor, case: CaseInput, opts: BatchOptions, settings: str) -> _Loaded:
    """Runs in a worker thread: hash, --continue check, read, preprocess. Never raises."""
    start = time.perf_counter()
    loaded = _Loaded(case)
    if case.kind in ("skipped", "failed"):
        loaded.kept = load_record(opts.output, case.key) if opts.resume else None
        return loaded
    try:
        loaded.input_hash = input_hash(case)
        record = load_record(opts.output, case.key) if opts.resume else None
        if is_done(record, opts.output, loaded.input_hash, predictor.model_hash, settings):
            loaded.kept = record
            return loaded
        if case.kind == "dicom" and opts.dicom_seg and predictor.kind.output_type == "image":
            # the SEG's source headers come from the same read: the files are read once
            scan, datasets = scan_io.read_scan_and_datasets(case.path, series_uid=case.series,
                                                            allow_resample=opts.allow_resample)  # fmt: skip
            loaded.datasets = list(datasets or [])
        else:
            scan = scan_io.read_scan(case.path, series_uid=case.series, allow_resample=opts.allow_resample)
        scan.case_id = case.case_id
        scan.source = case.source
        loaded.scan = scan
        loaded.prepared = predictor.prepare(scan)
    except Exception as err:  # noqa: BLE001 - recorded as this input's failure
        loaded.error = err
    loaded.seconds = time.perf_counter() - start
    return loaded


def _finish(predictor: Predictor, loaded: _Loaded, opts: BatchOptions) -> CaseRecord:
    """Predict and write one case's outputs; any error becomes its failed row."""
    case = loaded.case
    row: dict[str, Any] = {"case_id": case.case_id, "source": case.source, "code": "", "reason": ""}
    record = CaseRecord(case.source, case.case_id, loaded.input_hash, predictor.model_hash, row, key=case.key)
    if case.kind in ("skipped", "failed"):
        row.update(status=case.kind, code=case.code, reason=case.redact(case.reason), seconds=0)
        return record
    start = time.perf_counter()
    error = loaded.error
    if error is None:
        try:
            extra, record.outputs = write_case_outputs(predictor, loaded.scan, loaded.prepared, loaded.datasets, opts.output,
                                                       save_probabilities=opts.save_probabilities, preview=opts.preview,
                                                       input_sha256=loaded.input_hash,
                                                       keep_patient_identity=opts.keep_patient_identity)  # fmt: skip
            row.update({"status": "ok", **extra})  # segmentation sets ok | warning itself
        except OSError as err:
            if output_write_error(err, opts.output) is not None:
                raise  # the output folder, not this input: stops the run (run_batch types it)
            error = err
        except Exception as err:  # noqa: BLE001 - recorded as this input's failure
            error = err
    if error is not None:
        reason = case.redact(_reason(error, case.source))
        row.update(status="failed", code=getattr(error, "code", "internal"), reason=reason)
        record.retry = not isinstance(error, InputError)
    row["seconds"] = round(loaded.seconds + time.perf_counter() - start, 3)
    return record


def _reason(err: Exception, source: str) -> str:
    """A medssl error's PHI-free reason; for any other error only its class name (its message
    may quote header values), the message itself at DEBUG."""
    reason = getattr(err, "reason", None) if isinstance(err, MedsslError) else None
    if not reason:
        log.debug("%s: internal error", source, exc_info=err)
        reason = f"{err.__class__.__name__}: internal error; rerun with --debug for details"
    return " ".join(str(reason).split())[:300]


def _log_case(record: CaseRecord, kept: bool) -> None:
    row = record.row
    if kept:
        log.info("%s: done earlier, kept (%s)", record.case_id, row["status"])
    elif row["status"] == "ok":
        log.info("%s: ok (%.1f s)", record.case_id, row["seconds"])
    else:
        log.warning("%s: %s [%s] %s", record.source, row["status"], row["code"], row["reason"])


def _run_record(predictor: Predictor, opts: BatchOptions, summary: BatchSummary, timings: dict, n: int) -> dict:
    processed = max(1, n - summary.counts.get("kept", 0))
    return {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": current_versions(),
        "device": str(predictor.device),
        "model": {"sha256": predictor.model_hash, **predictor.describe()},
        "options": {
            "continue": opts.resume,
            "save_probabilities": opts.save_probabilities,
            "workers": opts.workers,
            "part": opts.part,
            "of": opts.of,
            "dicom_seg": opts.dicom_seg,
            "keep_patient_identity": opts.keep_patient_identity,
            "preview": opts.preview,
            "allow_resample": opts.allow_resample,
            "pseudonymize": opts.pseudonymize,
        },
        "inputs": n,
        "counts": summary.counts,
        "exit_code": summary.exit_code,
        "timings": {
            "total_seconds": summary.seconds,
            "seconds_per_processed_scan": round(summary.seconds / processed, 3),
            **{k: round(v, 3) for k, v in timings.items()},
        },
    }
