"""Evaluate a model artifact on labeled data (``medssl evaluate``): cases preprocessed as the
artifact says, predicted through the :class:`~medssl.inference.predictor.Predictor` (the
same window, precision and fallbacks as ``medssl predict``) on the model's grid, and scored
by the artifact's task object (:mod:`medssl.tasks.kinds`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medssl.artifacts.model import load_model_artifact
from medssl.data.datalist import LABEL_SUFFIX, LabeledCase, load_datalist, pseudonymized
from medssl.data.labeled import prepare_case
from medssl.errors import ConfigError
from medssl.inference.predictor import Predictor
from medssl.io.discovery import NIFTI_SUFFIXES, case_stem, is_nifti
from medssl.training.finetune_config import FinetuneConfig


def cases_for(data: str | Path) -> list[LabeledCase]:
    """A datalist, or one image file with ``NAME_label.nii.gz`` next to it."""
    path = Path(data)
    if path.is_file() and is_nifti(path):
        stem = case_stem(path)
        label = next((path.with_name(f"{stem}{LABEL_SUFFIX}{s}") for s in NIFTI_SUFFIXES
                      if path.with_name(f"{stem}{LABEL_SUFFIX}{s}").is_file()), None)
        if label is None:
            raise ConfigError(f"{path.name}: no {stem}{LABEL_SUFFIX}.nii.gz next to it to evaluate against")
        return [LabeledCase(stem, path, label)]
    return load_datalist(path)


def evaluate_artifact(model: str | Path, data: str | Path, device: str = "auto", n_boot: int = 1000) -> dict[str, Any]:
    """Score a model artifact on labeled data, preprocessed as the artifact says."""
    art = load_model_artifact(model)
    base = art.meta.get("config") or {"task": art.task}
    cfg = FinetuneConfig.model_validate(base)
    cfg.data.root = str(data)
    cfg.data.modality = art.modality
    cfg.data.labels = dict(art.labels) if cfg.data.class_from_label is None else None
    cfg.data.preprocessing = art.preprocessing.model_copy(deep=True)
    names = {str(k): str(v) for k, v in art.labels.items()}
    predictor = Predictor(art, device=device)  # as `medssl predict` runs it: window, precision, fallbacks
    found = cases_for(data)
    if cfg.data.pseudonymize:  # as the model was trained: hashed case ids in the report
        found = pseudonymized(found)
    cases = [prepare_case(c, cfg, names) for c in found]
    kind = predictor.kind
    result = kind.score(predictor.network, cases, names, art.inference, predictor.device,
                        n_boot=n_boot, scorer=predictor.scores)
    return {"task": art.task, "metric": kind.metric, "model": {"network": art.network.get("name"), "sha256": art.sha256},
            "n_cases": len(cases), **result}
