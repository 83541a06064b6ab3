"""Fine-tune tasks: a network plus its loss, returning a dict of named losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import Tensor, nn


class SegmentationTask(nn.Module):
    """DiceCE on logits. batch: image (B, C, X, Y, Z) float, label (B, 1, X, Y, Z) int64.

    The Dice term skips background and pools the batch, so small lesions still pull."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.network(batch["image"])  # (B, K, X, Y, Z)
        loss = self.loss(logits.float(), batch["label"])
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


def balanced_class_weights(targets: Sequence[int], num_classes: int) -> list[float]:
    """n / (K * count_k), 1.0 for classes absent from ``targets`` (sklearn's 'balanced')."""
    counts = torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).float()
    n = counts.sum()
    return [float(n / (num_classes * c)) if c > 0 else 1.0 for c in counts]
