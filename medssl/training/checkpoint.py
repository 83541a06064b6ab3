"""Atomic training checkpoints (the newest two readable ones kept) and every RNG state as
plain data, so a checkpoint loads with ``weights_only=True`` and a re-run resumes exactly.

Readability decides what is kept: pruning never deletes a readable checkpoint while keeping
unreadable ones, and a run folder whose checkpoints are all unreadable is a
``CheckpointError`` naming them, not a silent restart from step 0 (``set_aside_unreadable``,
``--restart``, moves them away first). A checkpoint that loads but lacks an entry the trainer
restores, or holds the wrong type, counts as unreadable (``checkpoint_checks.malformed``).
A write that fails (disk full, read-only folder) is a ``CheckpointError`` with the path and
the OS message, also when torch.save wraps the ``OSError`` in a ``RuntimeError``; the older
checkpoints stay."""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.atomic import atomic_path
from medssl.errors import CheckpointError
from medssl.training.checkpoint_checks import is_state_dict, malformed

FORMAT = "medssl.checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")

log = logging.getLogger("medssl.training")

UNREADABLE_DIR = "unreadable"  # checkpoints/unreadable/: what --restart set aside
_WRITE_CODES = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EACCES: "read_only", errno.EPERM: "read_only"}  # fmt: skip
# (resolved path, size, mtime_ns) -> readable: each file is read at most once per process.
_READABLE: dict[tuple[str, int, int], bool] = {}


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA RNG states as tensors / plain data."""
    np_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir/checkpoints``, newest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("ckpt_*.pt") if _NAME.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)), reverse=True)  # type: ignore[union-attr]


def write_error(err: OSError, path: str | Path | None = None) -> CheckpointError:
    """A failed write in a run folder as a typed error: the path and the OS message
    (``code`` disk_full, read_only or write_failed)."""
    where = err.filename or path or "run folder"
    code = _WRITE_CODES.get(err.errno or 0, "write_failed")
    hint = {"disk_full": "; free space or point --out elsewhere (the older checkpoints are intact)",
            "read_only": "; make the run folder writable or point --out elsewhere"}.get(code, "")  # fmt: skip
    return CheckpointError(f"cannot write {where}: {err.strerror or err.__class__.__name__}{hint}", code=code)


@contextlib.contextmanager
def run_folder_writes(run_dir: str | Path) -> Iterator[None]:
    """Around a training command: a full disk anywhere, or a refused write inside ``run_dir``
    (config.yaml, metrics.jsonl, checkpoints), becomes ``write_error``'s typed error instead
    of an internal error; other OSErrors pass through."""
    try:
        yield
    except OSError as err:
        inside = bool(err.filename) and _is_under(Path(str(err.filename)), Path(run_dir))
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or (err.errno in _WRITE_CODES and inside):
            raise write_error(err) from err
        raise


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.absolute().relative_to(folder.absolute())
    except ValueError:
        return False
    return True


def _os_error(err: BaseException | None) -> OSError | None:
    """The first ``OSError`` in ``err``'s chain (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def save_torch_file(obj: Any, path: Path) -> Path:
    """``torch.save`` through an open file, atomically; a failure is a ``CheckpointError``.
    torch's zip writer turns a failed ``write`` (disk full) into a ``RuntimeError`` whose
    context is the ``OSError``: its errno and message are reported."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(obj, fh)
    except OSError as err:
        raise write_error(err, path) from err
    except RuntimeError as err:
        if (os_err := _os_error(err)) is not None:
            raise write_error(os_err, path) from err
        raise CheckpointError(f"cannot write {path}: {err.__class__.__name__} from torch.save; check the free "
                              "space and permissions of the run folder", code="write_failed") from err  # fmt: skip
    return path


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``checkpoints/ckpt_<step>.pt`` atomically, then prune to the newest ``keep``
    readable checkpoints (unreadable ones go too: nothing can resume from them)."""
    path = Path(run_dir) / "checkpoints" / f"ckpt_{step:08d}.pt"
    save_torch_file({"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **payload}, path)
    _remember(path, True)
    prune_checkpoints(run_dir, keep)
    return path


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Newest first, keep the first ``keep`` readable checkpoints; files past them are
    deleted unread, unreadable ones before them are deleted with a warning."""
    kept = 0
    for path in checkpoint_paths(run_dir):
        if kept < keep and is_readable(path):
            kept += 1
            continue
        if kept < keep:
            log.warning("deleting unreadable checkpoint %s", path.name)
        path.unlink(missing_ok=True)


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _remember(path: Path, readable: bool) -> None:
    stamp = _stamp(path)
    if stamp is not None:
        _READABLE[stamp] = readable


def is_readable(path: Path) -> bool:
    """Whether ``read_checkpoint(path)`` succeeds (remembered per size and mtime)."""
    stamp = _stamp(path)
    if stamp is None:
        return False
    if stamp not in _READABLE:
        try:
            read_checkpoint(path)
        except CheckpointError:
            pass
    return _READABLE.get(stamp, False)


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        _remember(path, False)
        raise CheckpointError(f"{path.name}: cannot be read as a checkpoint ({err.__class__.__name__})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        _remember(path, False)
        raise CheckpointError(f"{path.name}: not a medssl training checkpoint")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path.name}: checkpoint format {data['format_version']} is newer than this medssl")
    if (problem := malformed(data)) is not None:
        _remember(path, False)
        raise CheckpointError(f"{path.name}: malformed checkpoint ({problem})")
    _remember(path, True)
    return data


def read_best(path: Path) -> dict[str, Any]:
    """Fine-tuning's ``best.pt`` ({metric, step, state_dict}), ``weights_only``; a truncated,
    foreign or crafted file is a ``CheckpointError`` naming it."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a best-weights file ({err.__class__.__name__}); pass "
                              "--restart to set it aside", code="bad_checkpoint") from err  # fmt: skip
    if not (isinstance(data, dict) and is_state_dict(data.get("state_dict"))
            and isinstance(data.get("metric"), (int, float)) and isinstance(data.get("step"), int)):  # fmt: skip
        raise CheckpointError(f"{path}: not a medssl best-weights file (metric, step, state_dict); pass --restart "
                              "to set it aside", code="bad_checkpoint")  # fmt: skip
    return data


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in ``run_dir`` and its path (newer unreadable ones are
    skipped with one warning), or None when there is none. Checkpoints that are all
    unreadable raise ``CheckpointError`` naming each and why, in its one line: resuming is
    impossible and starting over would overwrite the run's history (``set_aside_unreadable``
    first, as ``--restart`` does)."""
    failures = []
    for path in checkpoint_paths(run_dir):
        try:
            data = read_checkpoint(path)
        except CheckpointError as err:
            failures.append(err.reason)
            continue
        if failures:
            log.warning("skipping unreadable checkpoints (%s); resuming from %s", "; ".join(failures), path.name)
        return path, data
    if failures:
        raise CheckpointError(f"no readable checkpoint in {Path(run_dir) / 'checkpoints'}: {'; '.join(failures)}; "
                              "pass --restart (pretrain, finetune) to set them aside and train from step 0",
                              code="no_readable_checkpoint")  # fmt: skip
    return None


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """``latest_checkpoint`` without the path."""
    found = latest_checkpoint(run_dir)
    return found[1] if found is not None else None


def set_aside_unreadable(run_dir: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """``--restart``: when ``run_dir`` holds checkpoints and none is readable, move them (and
    ``metrics.jsonl`` and the ``extra`` run files, e.g. ``best.pt``) into
    ``checkpoints/unreadable/`` so training starts from step 0 without losing or mixing
    history. A run with a readable checkpoint is left as it is (it resumes). Returns what moved."""
    run_dir = Path(run_dir)
    paths = checkpoint_paths(run_dir)
    if not paths or any(is_readable(p) for p in paths):
        return []
    moved = set_aside_run(run_dir, extra)
    log.warning("--restart: no readable checkpoint; set aside %s in %s, training from step 0",
                ", ".join(p.name for p in moved), run_dir / "checkpoints" / UNREADABLE_DIR)  # fmt: skip
    return moved


def set_aside_run(run_dir: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """Move every checkpoint of ``run_dir``, ``metrics.jsonl`` and the ``extra`` run files into
    ``checkpoints/unreadable/``; returns where they went."""
    files = [*checkpoint_paths(run_dir), *(Path(run_dir) / name for name in ("metrics.jsonl", *extra))]
    return [t for t in (set_aside_file(Path(run_dir), p) for p in files) if t]


def set_aside_unreadable_best(run_dir: Path, name: str = "best.pt") -> Path | None:
    """``--restart`` for fine-tuning: an unreadable ``best.pt`` is moved aside (the run
    resumes from its checkpoint and finds its best weights again at the next validation)."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    try:
        read_best(path)
        return None
    except CheckpointError:
        target = set_aside_file(Path(run_dir), path)
        log.warning("--restart: %s is unreadable; set aside as %s", name, target)
        return target


def set_aside_file(run_dir: Path, path: Path) -> Path | None:
    """Move ``path`` into ``run_dir/checkpoints/unreadable/`` under a free name; None when it is gone."""
    if not path.is_file():
        return None
    aside = run_dir / "checkpoints" / UNREADABLE_DIR
    aside.mkdir(parents=True, exist_ok=True)
    target, n = aside / path.name, 1
    while target.exists():
        target, n = aside / f"{path.name}.{n}", n + 1
    try:
        path.replace(target)
    except FileNotFoundError:  # another rank moved it first
        return None
    return target
