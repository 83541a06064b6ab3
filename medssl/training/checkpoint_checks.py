"""What a loaded checkpoint holds, checked before anything is restored from it.

``malformed``: a file that loads but lacks an entry the trainer restores (or holds the wrong
type) counts as unreadable. ``state_dict_mismatch`` / ``param_group_mismatch``: a well-formed
checkpoint that does not fit the configured model is a typed error, never a fallback.
Messages name parameter keys and config keys, never values (paths in the config may be
patients' folder names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

# Entries the trainer restores from a checkpoint, with the type each must have.
_ENTRIES: dict[str, type] = {"step": int, "data_position": int, "config": dict, "model": dict,
                             "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": list}  # fmt: skip
_RNG_KEYS = {"python", "numpy", "torch"}


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def malformed(data: Mapping[str, Any]) -> str | None:
    """Why ``data`` (a loaded training checkpoint) cannot be resumed from, or None."""
    for key, kind in _ENTRIES.items():
        if key not in data:
            return f"no '{key}' entry"
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            return f"'{key}' is {type(data[key]).__name__}, not {kind.__name__}"
    if not is_state_dict(data["model"]):
        return "'model' is not a state dict of tensors"
    if data.get("ema") is not None and not is_state_dict(data["ema"]):
        return "'ema' is not a state dict of tensors"
    opt = data["optimizer"]
    if not (isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)):
        return "'optimizer' is not an optimizer state dict"
    if not data["rng"] or not all(isinstance(r, dict) and _RNG_KEYS <= r.keys() for r in data["rng"]):
        return "'rng' holds no RNG states"
    return None


def _shape(t: Tensor) -> str:
    return "[" + ",".join(str(s) for s in t.shape) + "]"


def state_dict_mismatch(model: Mapping[str, Tensor], saved: Mapping[str, Tensor]) -> str | None:
    """How ``saved`` fails to load strictly into a module whose state dict is ``model``, e.g.
    "state dict does not match the model: 3 missing, 2 unexpected, 1 shape mismatch (first:
    encoder.x.weight [8,1,3,3,3] in the file vs [16,1,3,3,3] in the model)"; None when it fits."""
    missing = [k for k in model if k not in saved]
    unexpected = [k for k in saved if k not in model]
    shapes = [k for k in model if k in saved and saved[k].shape != model[k].shape]
    if not (missing or unexpected or shapes):
        return None
    if shapes:
        first = f"{shapes[0]} {_shape(saved[shapes[0]])} in the file vs {_shape(model[shapes[0]])} in the model"
    else:
        first = (missing or unexpected)[0]
    return (f"state dict does not match the model: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} shape mismatch{'es' if len(shapes) != 1 else ''} (first: {first})")  # fmt: skip


def param_group_mismatch(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> str | None:
    """How the saved optimizer state's parameter groups differ from ``optimizer``'s (what
    ``load_state_dict`` would refuse), or None."""
    now = [len(g["params"]) for g in optimizer.param_groups]
    then = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in saved["param_groups"]]
    if now == then:
        return None
    return f"optimizer parameter groups do not match the model's: {then} parameters in the file vs {now} now"


def config_diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (plain data)."""
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return [] if saved == current else [prefix or "(config)"]
    out: list[str] = []
    for key in sorted(set(saved) | set(current), key=str):
        out += config_diff(saved.get(key), current.get(key), f"{prefix}{key}.")
    return [k.rstrip(".") for k in out]


def keys_text(keys: list[str], most: int = 4) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")
