"""Atomic training checkpoints (last two kept) and every RNG state as plain data, so a
checkpoint loads with ``weights_only=True`` and a re-run resumes exactly."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.artifacts.model import atomic_torch_save
from medssl.errors import CheckpointError

FORMAT = "medssl.checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")

log = logging.getLogger("medssl.training")


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


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``checkpoints/ckpt_<step>.pt`` atomically, then delete all but the newest ``keep``."""
    path = Path(run_dir) / "checkpoints" / f"ckpt_{step:08d}.pt"
    atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **payload}, path)
    for old in checkpoint_paths(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path.name}: cannot be read as a checkpoint ({err.__class__.__name__})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a medssl training checkpoint")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path.name}: checkpoint format {data['format_version']} is newer than this medssl")
    return data


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (an unreadable newer one is skipped
    with a warning), or None when there is none."""
    for path in checkpoint_paths(run_dir):
        try:
            return read_checkpoint(path)
        except CheckpointError as err:
            log.warning("skipping checkpoint %s", err)
    return None
