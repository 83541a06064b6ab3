"""Frozen-feature probe: a fast representation score for comparing pretraining checkpoints
(reconstruction loss alone picks checkpoints badly). Pooled coarsest encoder features of
each whole volume, then kNN and logistic regression, balanced accuracy by stratified
cross-validation. No encoder weight changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.artifacts.weights import load_pretrained
from medssl.data.datalist import load_datalist
from medssl.errors import ConfigError
from medssl.models import build_network
from medssl.training.finetune_config import FinetuneConfig
from medssl.training.finetune_data import prepare_case, resolve_labels, whole_volume


def probe_spec(cfg: FinetuneConfig, in_channels: int, n_classes: int) -> dict[str, Any]:
    """A classifier over the same encoder the config's network uses."""
    kw = dict(cfg.model.kwargs)
    if cfg.model.network in ("classifier", "cnn_unet"):
        enc, enc_kw = kw.get("encoder", "cnn"), kw.get("encoder_kwargs", {})
    elif cfg.model.network == "swin_unetr":
        enc, enc_kw = "swin", {k: kw[k] for k in ("feature_size", "depths", "num_heads") if k in kw}
    else:
        raise ConfigError(f"probe: no encoder known for network '{cfg.model.network}'")
    return {"name": "classifier", "in_channels": in_channels, "num_classes": n_classes, "encoder": enc,
            "encoder_kwargs": enc_kw}


@torch.no_grad()
def run_probe(cfg: FinetuneConfig, pretrained: str | None = None, seed: int = 0) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = cfg.model_copy(deep=True)
    cfg.task = "classification"
    names = resolve_labels(cfg)
    cases = [prepare_case(c, cfg, names) for c in load_datalist(cfg.data.root)]
    y = np.array([c.cls for c in cases])
    counts = np.bincount(y, minlength=len(names))
    folds = int(min(5, counts[counts > 0].min())) if (counts > 0).sum() > 1 else 0
    if folds < 2:
        raise ConfigError(f"probe needs at least 2 cases of each of 2 classes; class counts {counts.tolist()}")
    torch.manual_seed(seed)
    net = build_network(probe_spec(cfg, cases[0].image.shape[0], len(names))).eval()
    report = load_pretrained(net, pretrained, cfg.model.encoder, cfg.model.min_loaded_fraction).to_dict() \
        if pretrained else None
    roi = tuple(cfg.inference.roi_size)
    feats = np.concatenate([net.features(whole_volume(c, roi)).numpy() for c in cases])  # (N, F)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    k = max(1, min(5, len(cases) - len(cases) // folds - 1))
    knn = cross_val_predict(make_pipeline(StandardScaler(), KNeighborsClassifier(k)), feats, y, cv=cv)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    logreg = cross_val_predict(linear, feats, y, cv=cv)
    return {
        "n_cases": len(cases), "feature_dim": int(feats.shape[1]), "folds": folds, "class_counts": counts.tolist(),
        "knn_balanced_accuracy": float(balanced_accuracy_score(y, knn)),
        "logreg_balanced_accuracy": float(balanced_accuracy_score(y, logreg)),
        "pretrained": {"loaded": report["loaded"], "total": report["total"]} if report else None,
    }
