"""Device and precision policy, one place for training, inference and evaluation.

``resolve_device("auto")`` is CUDA when available, else the CPU; asking for CUDA without
a GPU is a ConfigError. ``amp_dtype(device, "auto")`` is bf16 on a CUDA device that
supports it, else fp16 there, and full precision (None) on the CPU."""

from __future__ import annotations

import torch

from medssl.errors import ConfigError


def resolve_device(pref: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (or a torch.device). ``local_rank`` selects and
    sets the CUDA device of a DDP process."""
    text = str(pref)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{pref}' requested but no CUDA device is available; use auto or cpu")
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    return device


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto | bf16 | fp16 | off) on ``device``; None = fp32."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
