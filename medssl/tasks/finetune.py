"""Fine-tune tasks: a network plus its loss, returning a dict of named losses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import Tensor, nn


class SegmentationTask(nn.Module):
    """Dice + cross-entropy on logits. batch: image (B, C, X, Y, Z) float, label (B, 1, X, Y, Z) int64.

    The Dice term skips background and pools the batch, so small lesions still pull.
    ``class_weights`` (K values) weight the cross-entropy only: unweighted, its optimum for a
    structure the features cannot yet separate is "never predict it", and short few-case
    fine-tunes stayed there (kidney and spleen Dice 0 in 4 of 5 seeds, with 10 labeled cases)."""

    def __init__(self, network: nn.Module, class_weights: Sequence[float] | None = None):
        super().__init__()
        self.network = network
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        weight = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.network(batch["image"]).float()  # (B, K, X, Y, Z)
        label = batch["label"]
        loss = self.dice(logits, label) + F.cross_entropy(logits, label[:, 0].long(), weight=self.class_weights)
        return {"loss": loss, "dice_ce": loss.detach()}


class ClassificationTask(nn.Module):
    """Cross-entropy with optional class weights. batch: image (B, C, X, Y, Z), label (B,) int64."""

    def __init__(self, network: nn.Module, class_weights: Sequence[float] | None = None):
        super().__init__()
        self.network = network
        weight = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.network(batch["image"])  # (B, K)
        loss = F.cross_entropy(logits.float(), batch["label"], weight=self.class_weights)
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return {"loss": loss, "ce": loss.detach(), "accuracy": acc.detach()}


def voxel_class_weights(labels: Sequence[np.ndarray], num_classes: int) -> list[float]:
    """Cross-entropy weights for segmentation: 1 / sqrt(voxel frequency) over ``labels``,
    scaled to mean 1; a class absent from every label gets the largest present weight.
    The square root keeps a 0.2 %-of-voxels lesion at ~20x background rather than ~400x."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for lab in labels:
        counts += np.bincount(np.asarray(lab, dtype=np.int64).ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    if not present.any():
        return [1.0] * num_classes
    w = np.zeros(num_classes)
    w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[~present] = w[present].max()
    return [float(v) for v in w / w.mean()]


def balanced_class_weights(targets: Sequence[int], num_classes: int) -> list[float]:
    """n / (K * count_k), 1.0 for classes absent from ``targets`` (sklearn's 'balanced')."""
    counts = torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).float()
    n = counts.sum()
    return [float(n / (num_classes * c)) if c > 0 else 1.0 for c in counts]
