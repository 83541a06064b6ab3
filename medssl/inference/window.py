"""Sliding-window inference: Gaussian blending, mixed precision on CUDA, and an out-of-memory
fallback (stitch on the CPU, then smaller window batches) instead of a dead run.

Windows always run on the network's device; the stitched output lives on the same device
when it fits comfortably in free GPU memory, otherwise on the CPU (MONAI ``sw_device`` /
``device``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from medssl.devices import amp_dtype
from medssl.errors import MedsslError

log = logging.getLogger("medssl.inference")

# Stitch on the GPU only while the output buffers take at most this share of free memory.
GPU_STITCH_SHARE = 0.35


class InferenceOOMError(MedsslError):
    """Even the smallest window batch stitched on the CPU did not fit in device memory."""

    code = "out_of_memory"


@dataclass
class WindowConfig:
    """The artifact's ``InferenceSettings`` as run here (overrides applied) plus precision."""

    roi_size: tuple[int, int, int]
    overlap: float
    sw_batch_size: int
    mode: str
    amp: str = "auto"  # auto (bf16 if supported, else fp16; CUDA only) | bf16 | fp16 | off


@dataclass
class WindowRunner:
    """Runs ``network`` over a whole volume ``(1, C, X, Y, Z)`` -> logits ``(1, K, X, Y, Z)`` float32.

    ``fallbacks`` lists what the last call had to give up to fit in memory."""

    network: nn.Module
    cfg: WindowConfig
    device: torch.device
    out_channels: int = 2
    fallbacks: list[str] = field(default_factory=list)
    last_plan: tuple[int, str] | None = None
    _inferers: dict = field(default_factory=dict, repr=False)

    def __call__(self, x: Tensor) -> Tensor:
        self.fallbacks = []
        for sw_batch, stitch in fallback_plan(self.cfg.sw_batch_size, self._stitch_device(x)):
            try:
                out = self._run(x, sw_batch, stitch)
                self.last_plan = (sw_batch, stitch.type)
                return out
            except torch.OutOfMemoryError:
                self.fallbacks.append(f"out of memory with sw_batch_size={sw_batch}, stitching on {stitch.type}")
                log.warning("inference: %s; retrying with less memory", self.fallbacks[-1])
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        raise InferenceOOMError(
            f"out of device memory even with sw_batch_size=1 and CPU stitching (volume {tuple(x.shape[2:])}); "
            "use --device cpu or a smaller roi"
        )

    def _stitch_device(self, x: Tensor) -> torch.device:
        if self.device.type != "cuda":
            return torch.device("cpu")
        free, _ = torch.cuda.mem_get_info(self.device)
        voxels = x[0, 0].numel()
        need = voxels * 4 * (self.out_channels + 1) + x.numel() * x.element_size()  # output + weight count
        return self.device if need < GPU_STITCH_SHARE * free else torch.device("cpu")

    def _inferer(self, sw_batch: int, stitch: torch.device):
        from monai.inferers import SlidingWindowInferer

        key = (sw_batch, str(stitch))
        if key not in self._inferers:  # cached so the Gaussian importance map is computed once
            self._inferers[key] = SlidingWindowInferer(
                roi_size=self.cfg.roi_size,
                sw_batch_size=sw_batch,
                overlap=self.cfg.overlap,
                mode=self.cfg.mode,
                sw_device=self.device,
                device=stitch,
                cache_roi_weight_map=True,
            )
        return self._inferers[key]

    def _run(self, x: Tensor, sw_batch: int, stitch: torch.device) -> Tensor:
        inferer = self._inferer(sw_batch, stitch)
        with torch.inference_mode(), autocast(self.device, self.cfg.amp):
            out = inferer(x, self.network)
        return out.float()


def fallback_plan(sw_batch_size: int, stitch: torch.device) -> Iterator[tuple[int, torch.device]]:
    """(window batch, stitch device) to try in order: as configured, CPU stitching, halving batches."""
    cpu = torch.device("cpu")
    yield sw_batch_size, stitch
    if stitch.type != "cpu":
        yield sw_batch_size, cpu
    batch = sw_batch_size
    while batch > 1:
        batch = max(1, batch // 2)
        yield batch, cpu


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; a no-op on the CPU or when ``amp == "off"``."""
    dtype = amp_dtype(device, amp) if device.type == "cuda" else None
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
