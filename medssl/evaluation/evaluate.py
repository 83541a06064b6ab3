"""Evaluate a network on prepared cases: sliding-window segmentation (MONAI) or whole-volume
classification, metrics per case and their means with bootstrap 95 % CIs.

Metrics are computed on the model's preprocessed grid (the spacing of the artifact's
preprocessing), where the reference labels were carried nearest-neighbour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medssl.evaluation.metrics import bootstrap_ci, classification_metrics, mean_over_classes, segmentation_metrics
from medssl.training.finetune_data import PreparedCase, whole_volume


@torch.no_grad()
def predict_case(network: nn.Module, case: PreparedCase, inference: dict[str, Any], device: torch.device,
                 task: str = "segmentation") -> np.ndarray:
    """Segmentation: (X, Y, Z) int label map; classification: (K,) probabilities."""
    network.eval()
    roi = tuple(int(v) for v in inference["roi_size"])
    if task == "classification":
        logits = network(whole_volume(case, roi).to(device))
        return torch.softmax(logits.float(), 1)[0].cpu().numpy()
    x = torch.from_numpy(case.image)[None].to(device)
    logits = sliding_window_inference(x, roi, int(inference.get("sw_batch_size", 4)), network,
                                      overlap=float(inference.get("overlap", 0.5)), mode="gaussian")
    return logits.argmax(1)[0].cpu().numpy().astype(np.int16)  # type: ignore[union-attr]


def evaluate_cases(
    network: nn.Module, cases: list[PreparedCase], labels: dict[str, str], inference: dict[str, Any],
    device: torch.device, task: str = "segmentation", distances: bool = True, n_boot: int = 1000,
) -> dict[str, Any]:
    """{"per_case": [...], "summary": {metric: {mean, lo, hi, n}}} (classification: pooled metrics)."""
    if task == "classification":
        probs = np.stack([predict_case(network, c, inference, device, task) for c in cases])
        y = [int(c.cls) for c in cases]  # type: ignore[arg-type]
        pooled = classification_metrics(y, probs, labels)
        per_case = [{"case": c.case_id, "target": t, "probs": [round(float(p), 5) for p in pr]}
                    for c, t, pr in zip(cases, y, probs)]
        correct = [float(pr.argmax() == t) for t, pr in zip(y, probs)]
        return {"per_case": per_case, "summary": {**pooled, "accuracy_ci": bootstrap_ci(correct, n_boot)}}
    per_case = []
    for case in cases:
        pred = predict_case(network, case, inference, device)
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


def cases_for(data: str | Path) -> list:
    """A datalist, or one image file with ``NAME_label.nii.gz`` next to it."""
    from medssl.data.datalist import LABEL_SUFFIX, NIFTI_SUFFIXES, LabeledCase, _stem, load_datalist
    from medssl.errors import ConfigError

    path = Path(data)
    if path.is_file() and path.name.endswith(NIFTI_SUFFIXES):
        stem = _stem(path)
        label = next((path.with_name(f"{stem}{LABEL_SUFFIX}{s}") for s in NIFTI_SUFFIXES
                      if path.with_name(f"{stem}{LABEL_SUFFIX}{s}").is_file()), None)
        if label is None:
            raise ConfigError(f"{path.name}: no {stem}{LABEL_SUFFIX}.nii.gz next to it to evaluate against")
        return [LabeledCase(stem, path, label)]
    return load_datalist(path)


def evaluate_artifact(model: str | Path, data: str | Path, device: str = "auto", n_boot: int = 1000) -> dict[str, Any]:
    """Score a model artifact on labeled data, preprocessed as the artifact says."""
    from medssl.artifacts.model import load_model_artifact
    from medssl.training.finetune_config import FinetuneConfig
    from medssl.training.finetune_data import prepare_case
    from medssl.training.finetune_run import resolve_device

    art = load_model_artifact(model)
    base = art.meta.get("config") or {"task": art.task}
    cfg = FinetuneConfig.model_validate(base)
    cfg.data.root = str(data)
    cfg.data.modality = art.modality
    cfg.data.labels = dict(art.labels) if cfg.data.class_from_label is None else None
    cfg.data.preprocessing = cfg.data.preprocessing.model_validate(art.preprocessing)
    names = {str(k): str(v) for k, v in art.labels.items()}
    dev = resolve_device(device)
    cases = [prepare_case(c, cfg, names) for c in cases_for(data)]
    result = evaluate_cases(art.build(dev), cases, names, art.inference, dev, art.task, n_boot=n_boot)
    return {"task": art.task, "model": {"network": art.network.get("name"), "sha256": art.sha256},
            "n_cases": len(cases), **result}
