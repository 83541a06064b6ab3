"""Scoring a network on prepared cases, in the tasks layer because training validates with
it and evaluation reports with it: sliding-window segmentation (MONAI) or whole-volume
classification, metrics per case and their means with bootstrap 95 % CIs. Callers reach
these through the task objects (:mod:`medssl.tasks.kinds`).

Metrics are computed on the model's preprocessed grid (the spacing of the artifact's
preprocessing), where the reference labels were carried nearest-neighbour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medssl.models.sliding import InferenceSettings
from medssl.data.labeled import PreparedCase, whole_volume
from medssl.tasks.metrics import bootstrap_ci, classification_metrics, mean_over_classes, segmentation_metrics


# How a deployed model scores a preprocessed input [1, C, X, Y, Z]: class scores [1, K, X, Y, Z]
# (segmentation) or [1, K] (classification); ``Predictor.scores``. Without one, the network
# itself through MONAI's sliding window (what validation during training uses).
Scorer = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def segment_case(network: nn.Module, case: PreparedCase, inference: InferenceSettings,
                 device: torch.device, scorer: Scorer | None = None) -> np.ndarray:
    """(X, Y, Z) int label map on the case's preprocessed grid."""
    x = torch.from_numpy(case.image)[None]
    if scorer is not None:
        return scorer(x).argmax(1)[0].cpu().numpy().astype(np.int16)
    network.eval()
    logits = sliding_window_inference(x.to(device), tuple(inference.roi_size), inference.sw_batch_size, network,
                                      overlap=inference.overlap, mode=inference.mode)
    return logits.argmax(1)[0].cpu().numpy().astype(np.int16)  # type: ignore[union-attr]


@torch.no_grad()
def classify_case(network: nn.Module, case: PreparedCase, inference: InferenceSettings,
                  device: torch.device, scorer: Scorer | None = None) -> np.ndarray:
    """(K,) class probabilities of the whole volume."""
    if scorer is not None:
        return scorer(torch.from_numpy(case.image)[None])[0].float().cpu().numpy()
    network.eval()
    logits = network(whole_volume(case, tuple(inference.roi_size)).to(device))
    return torch.softmax(logits.float(), 1)[0].cpu().numpy()


def score_classification(network: nn.Module, cases: list[PreparedCase], labels: dict[str, str],
                         inference: InferenceSettings, device: torch.device, n_boot: int = 1000,
                         scorer: Scorer | None = None) -> dict[str, Any]:
    """Pooled classification metrics, per-case probabilities and a bootstrap CI of accuracy."""
    probs = np.stack([classify_case(network, c, inference, device, scorer) for c in cases])
    y = [int(c.cls) for c in cases]  # type: ignore[arg-type]
    pooled = classification_metrics(y, probs, labels)
    per_case = [{"case": c.case_id, "target": t, "probs": [round(float(p), 5) for p in pr]}
                for c, t, pr in zip(cases, y, probs)]
    correct = [float(pr.argmax() == t) for t, pr in zip(y, probs)]
    return {"per_case": per_case, "summary": {**pooled, "accuracy_ci": bootstrap_ci(correct, n_boot)}}


def score_segmentation(network: nn.Module, cases: list[PreparedCase], labels: dict[str, str],
                       inference: InferenceSettings, device: torch.device, distances: bool = True,
                       n_boot: int = 1000, scorer: Scorer | None = None) -> dict[str, Any]:
    """Per-case Dice (and HD95, surface Dice) and their means with bootstrap CIs."""
    per_case = []
    for case in cases:
        pred = segment_case(network, case, inference, device, scorer)
        spacing = np.linalg.norm(case.affine[:3, :3], axis=0)
        m = segmentation_metrics(pred, case.label, labels, spacing, distances=distances)  # type: ignore[arg-type]
        per_case.append({"case": case.case_id, **m, "mean_dice": mean_over_classes(m["dice"])})
    summary: dict[str, Any] = {"dice": bootstrap_ci([r["mean_dice"] for r in per_case], n_boot)}
    names = list(per_case[0]["dice"]) if per_case else []
    for metric in ("dice", "hd95", "surface_dice") if distances else ("dice",):
        summary[f"{metric}_per_class"] = {
            n: bootstrap_ci([r[metric][n] for r in per_case], n_boot) for n in names
        }
    return {"per_case": per_case, "summary": summary}
