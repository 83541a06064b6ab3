"""``Predictor``: a model artifact turned into predictions on a scan's own voxel grid.

    predictor = Predictor.from_artifact("runs/ft1", device="auto", tta=True)
    pred = predictor.predict(scan)          # pred.label (X, Y, Z) uint8, on scan's grid

The artifact alone decides preprocessing, window size and labels; the result is resampled
back through world space onto the input grid (see ``resample``)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.artifacts.model import ModelArtifact, load_model_artifact
from medssl.data.preprocess import preprocess_scan
from medssl.devices import resolve_device
from medssl.errors import ConfigError
from medssl.inference.resample import is_exact_regrid, resample_to_grid
from medssl.inference.window import WindowConfig, WindowRunner, autocast
from medssl.io.scan import Scan
from medssl.models.encoders import use_fused_attention
from medssl.tasks.kinds import task_kind

log = logging.getLogger("medssl.inference")

# Flip test-time augmentation: identity plus one flip per spatial axis of (B, C, X, Y, Z).
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


@dataclass
class Prediction:
    """What a model says about one scan. Arrays are on the scan's own grid (``affine``)."""

    task: str
    labels: dict[str, str]
    affine: np.ndarray
    label: np.ndarray | None = None  # (X, Y, Z) uint8 label map (segmentation)
    confidence: np.ndarray | None = None  # (X, Y, Z) float32 probability of the chosen label
    probabilities: np.ndarray | None = None  # (K, X, Y, Z) float32, when asked for
    uncertainty: np.ndarray | None = None  # (X, Y, Z) float32 in [0, 1], with TTA (flip disagreement)
    class_probs: dict[str, float] | None = None  # classification: label name -> probability
    info: dict[str, Any] = field(default_factory=dict)  # device, seconds, fallbacks, ...


@dataclass
class Prepared:
    """A scan on the model's grid: ``image`` (1, C, X', Y', Z') float32 on the CPU."""

    image: Tensor
    affine: np.ndarray
    seconds: float


class Predictor:
    """Runs one model artifact; build it once, call ``predict`` for each scan."""

    def __init__(
        self,
        artifact: ModelArtifact,
        device: str | torch.device = "auto",
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        tta: bool = False,
        amp: str = "auto",
        compile: bool = False,
    ):
        self.artifact = artifact
        self.kind = task_kind(artifact.task)
        self.labels = {str(k): str(v) for k, v in artifact.labels.items()}
        self.device = resolve_device(device)
        self.tta = tta
        self.preprocessing = artifact.preprocessing
        self.network = artifact.build(self.device)
        use_fused_attention(self.network)  # also for artifacts trained with sdpa off
        if compile:
            self.network = torch.compile(self.network)
        inf = artifact.inference
        self.window = WindowConfig(
            roi_size=tuple(inf.roi_size),
            overlap=float(overlap if overlap is not None else inf.overlap),
            sw_batch_size=int(sw_batch_size or inf.sw_batch_size),
            mode=inf.mode,
            amp=amp,
        )
        if not 0.0 <= self.window.overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {self.window.overlap}")
        self.runner = WindowRunner(self.network, self.window, self.device, out_channels=max(2, len(self.labels)))

    @classmethod
    def from_artifact(cls, path_or_run_dir: str | Path, device: str | torch.device = "auto", **kw: Any) -> Predictor:
        """Load ``model.pt`` (or the one inside a run folder). Keywords as ``Predictor``."""
        return cls(load_model_artifact(path_or_run_dir), device=device, **kw)

    @property
    def model_hash(self) -> str:
        return self.artifact.sha256

    def describe(self) -> dict[str, Any]:
        """PHI-free settings for run records."""
        return {
            "task": self.kind.name,
            "network": self.artifact.network.get("name"),
            "labels": self.labels,
            "device": str(self.device),
            "roi_size": list(self.window.roi_size),
            "overlap": self.window.overlap,
            "sw_batch_size": self.window.sw_batch_size,
            "amp": self.window.amp,
            "tta": self.tta,
            "preprocessing": self.artifact.preprocessing.model_dump(mode="json"),
        }

    def prepare(self, scan: Scan) -> Prepared:
        """Preprocess on the CPU (safe to call from worker threads)."""
        start = time.perf_counter()
        array, affine = _preprocess(scan, self.preprocessing)
        image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]  # [1, C, X', Y', Z']
        return Prepared(image, np.asarray(affine, dtype=np.float64), time.perf_counter() - start)

    def predict(self, scan: Scan, *, keep_probabilities: bool = False, prepared: Prepared | None = None) -> Prediction:
        prepared = prepared or self.prepare(scan)
        start = time.perf_counter()
        x = prepared.image.to(self.device)
        with torch.inference_mode():
            if self.kind.output_type == "image":
                pred = self._segment(scan, x, prepared.affine, keep_probabilities)
            else:
                pred = self._classify(scan, x)
        pred.info.update(
            device=str(self.device),
            preprocess_seconds=round(prepared.seconds, 3),
            inference_seconds=round(time.perf_counter() - start, 3),
            fallbacks=list(self.runner.fallbacks),
        )
        return pred

    def scores(self, x: Tensor) -> Tensor:
        """Class probabilities on the model's own grid for a preprocessed input [1, C, X', Y', Z']:
        [1, K, X', Y', Z'] (segmentation) or [1, K] (classification), with this predictor's
        window, precision, fallbacks and TTA. ``predict`` resamples these to the scan;
        ``medssl evaluate`` scores them against labels on the same grid."""
        x = x.to(self.device)
        with torch.inference_mode():
            if self.kind.output_type == "image":
                return self._flip_average(lambda inp: self.runner(inp), x)[0][None]
            return self._flip_average(self._classifier_forward, self._whole(x))[0][None]

    def _flips(self) -> tuple[tuple[int, ...], ...]:
        return TTA_FLIPS if self.tta else ((),)

    def _segment(self, scan: Scan, x: Tensor, model_affine: np.ndarray, keep_probabilities: bool) -> Prediction:
        mean, mutual_info = self._flip_average(lambda inp: self.runner(inp), x)  # [K, X', Y', Z'], [X', Y', Z']
        k = mean.shape[0]
        to_scan = partial(resample_to_grid, src_affine=model_affine, dst_affine=scan.affine, dst_shape=scan.shape,
                          mode="bilinear")  # fmt: skip
        if is_exact_regrid(model_affine, tuple(mean.shape[1:]), scan.affine, scan.shape):
            # The scan's voxels are the model's reoriented: reduce over classes first, then move
            # two volumes instead of K (the same values: both steps are per voxel).
            probs = mean
            probs[0] += (1.0 - probs.sum(0)).clamp_min(0)
            confidence, label = probs.max(0)
            label, confidence = to_scan(torch.stack([label.to(probs.dtype), confidence]))
            probs = to_scan(probs) if keep_probabilities else None
            uncertainty = to_scan(mutual_info[None])[0] if mutual_info is not None else None
        else:
            stack = mean if mutual_info is None else torch.cat([mean, mutual_info[None]])
            stack = to_scan(stack)
            probs = stack[:k]
            probs[0] += (1.0 - probs.sum(0)).clamp_min(0)  # outside the model's field of view: background
            confidence, label = probs.max(0)
            uncertainty = stack[k] if mutual_info is not None else None
        return Prediction(
            task=self.kind.name,
            labels=self.labels,
            affine=np.asarray(scan.affine),
            label=label.to(torch.uint8).cpu().numpy(),
            confidence=confidence.cpu().numpy(),
            probabilities=probs.cpu().numpy() if keep_probabilities else None,
            uncertainty=uncertainty.clamp(0, 1).cpu().numpy() if uncertainty is not None else None,
        )

    def _whole(self, x: Tensor) -> Tensor:
        size = self.window.roi_size  # a classifier sees the whole volume resized to its window
        return F.interpolate(x, size=size, mode="trilinear", align_corners=False) if tuple(x.shape[2:]) != size else x

    def _classifier_forward(self, inp: Tensor) -> Tensor:
        with torch.inference_mode(), autocast(self.device, self.window.amp):
            return self.network(inp).float()

    def _classify(self, scan: Scan, x: Tensor) -> Prediction:
        mean, _ = self._flip_average(self._classifier_forward, self._whole(x))
        names = [self.labels.get(str(i), str(i)) for i in range(mean.shape[0])]
        return Prediction(
            task=self.kind.name,
            labels=self.labels,
            affine=np.asarray(scan.affine),
            class_probs={n: round(float(p), 6) for n, p in zip(names, mean.flatten().tolist())},
        )

    def _flip_average(self, forward, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Mean probabilities over the flips and, with TTA, their mutual information
        (entropy of the mean minus mean entropy, / log K): 0 where every flip agrees."""
        total = entropy_sum = None
        flips = self._flips()
        for dims in flips:
            logits = forward(torch.flip(x, dims) if dims else x)
            probs = to_probabilities(logits)
            if dims and probs.dim() == 5:
                probs = torch.flip(probs, dims)
            total = probs if total is None else total + probs
            if len(flips) > 1:
                h = entropy(probs)
                entropy_sum = h if entropy_sum is None else entropy_sum + h
        mean = total[0] / len(flips) if len(flips) > 1 else total[0]  # type: ignore[index]
        if entropy_sum is None or mean.dim() < 4:
            return mean, None
        mutual_info = (entropy(mean[None]) - entropy_sum / len(flips))[0] / math.log(max(2, mean.shape[0]))
        return mean, mutual_info


def to_probabilities(logits: Tensor) -> Tensor:
    """Softmax over channels; a single-channel output is a sigmoid foreground probability."""
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        return torch.cat([1 - fg, fg], dim=1)
    return torch.softmax(logits, dim=1)


def entropy(probs: Tensor) -> Tensor:
    """(B, K, ...) -> (B, ...) Shannon entropy in nats."""
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(1)


def _preprocess(scan: Scan, cfg) -> tuple[np.ndarray, np.ndarray]:
    return preprocess_scan(scan, cfg)
