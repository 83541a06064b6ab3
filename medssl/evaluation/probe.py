"""Frozen-feature probe: a fast representation score for comparing pretraining checkpoints
(reconstruction loss alone picks checkpoints badly). Pooled coarsest encoder features of
each whole volume, then kNN and logistic regression, balanced accuracy by stratified
cross-validation. No encoder weight changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medssl.artifacts.weights import exported_encoder_spec, load_pretrained, open_weights
from medssl.data.datalist import load_cases
from medssl.data.labeled import prepare_case, resolve_labels, whole_volume
from medssl.errors import ConfigError
from medssl.models import build_network
from medssl.models.encoders import build_encoder
from medssl.tasks.metrics import mean_over_classes, segmentation_metrics
from medssl.training.finetune_config import FinetuneConfig


def probe_spec(cfg: FinetuneConfig, in_channels: int, n_classes: int) -> dict[str, Any]:
    """A classifier over the same encoder the config's network uses."""
    enc = cfg.model.encoder
    return {"name": "classifier", "in_channels": in_channels, "num_classes": n_classes, "encoder": enc.name,
            "encoder_kwargs": enc.kwargs}


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
    cases = [prepare_case(c, cfg, names) for c in load_cases(cfg.data)]
    y = np.array([c.cls for c in cases])
    counts = np.bincount(y, minlength=len(names))
    folds = int(min(5, counts[counts > 0].min())) if (counts > 0).sum() > 1 else 0
    if folds < 2:
        raise ConfigError(f"probe needs at least 2 cases of each of 2 classes; class counts {counts.tolist()}")
    torch.manual_seed(seed)
    net = build_network(probe_spec(cfg, cases[0].image.shape[0], len(names))).eval()
    report = load_pretrained(net, pretrained, cfg.model.encoder.name, cfg.model.min_loaded_fraction).to_dict() \
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


# --- frozen multi-scale feature segmentation probe -------------------------------------------
# A linear (1x1) head on every encoder stage's features, upsampled to the scan's grid and
# concatenated. Trilinear upsampling is linear, so the head is applied per stage at the
# stage's own resolution and the logits are upsampled and summed: the same result without
# holding full-resolution features of large scans.


def _padded(image: np.ndarray, multiple: int) -> torch.Tensor:
    pads = [(0, 0)] + [(0, (-n) % multiple) for n in image.shape[1:]]
    return torch.from_numpy(np.pad(image, pads, mode="edge"))[None]


def _points(shape: tuple[int, ...], idx: np.ndarray) -> torch.Tensor:
    """Voxel indices (N, 3) of a grid ``shape`` -> grid_sample coordinates (1, N, 1, 1, 3)."""
    norm = (2 * idx.astype(np.float32) + 1) / np.asarray(shape, dtype=np.float32) - 1  # align_corners=False
    return torch.from_numpy(norm[:, ::-1].copy()).view(1, -1, 1, 1, 3)  # grid_sample wants (z, y, x)


def _sample_features(feats: list[torch.Tensor], shape: tuple[int, ...], idx: np.ndarray) -> torch.Tensor:
    grid = _points(shape, idx)
    cols = [F.grid_sample(f.float(), grid, mode="bilinear", align_corners=False).view(f.shape[1], -1) for f in feats]
    return torch.cat(cols).T  # [N, sum C]


def _balanced_voxels(label: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for k in np.unique(label):
        where = np.argwhere(label == k)
        picks.append(where[rng.choice(len(where), min(per_class, len(where)), replace=False)])
    return np.concatenate(picks)


@torch.no_grad()
def _encode(encoder: torch.nn.Module, image: np.ndarray) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    x = _padded(image, int(encoder.strides[-1]))
    return encoder(x), tuple(x.shape[2:])


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, n_classes: int, steps: int = 300) -> torch.nn.Linear:
    """Multinomial logistic regression (L2 1e-4) by full-batch L-BFGS on standardised x."""
    head = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + 1e-4 * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head


def segmentation_probe_score(encoder: torch.nn.Module, train, test, names: dict[str, str],
                             per_class: int = 3000, seed: int = 0) -> dict[str, Any]:
    """Train a linear head on frozen features of ``train`` cases, Dice on ``test`` cases."""
    encoder = encoder.eval()
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for case in train:
        feats, shape = _encode(encoder, case.image)
        idx = _balanced_voxels(case.label, per_class, rng)
        xs.append(_sample_features(feats, shape, idx))
        ys.append(torch.from_numpy(case.label[tuple(idx.T)]).long())
    x, y = torch.cat(xs), torch.cat(ys)
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    head = fit_linear_head((x - mu) / sd, y, len(names))
    w = head.weight / sd  # fold the standardisation into the head: logits = w . f + b'
    b = head.bias - (w * mu).sum(1)
    per_case = []
    for case in test:
        feats, shape = _encode(encoder, case.image)
        logits, start = b.view(1, -1, 1, 1, 1).expand(1, -1, *shape).clone(), 0
        for f in feats:
            wi = w[:, start:start + f.shape[1]]
            start += f.shape[1]
            coarse = torch.einsum("kc,bcxyz->bkxyz", wi, f.float())
            logits += F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
        pred = logits[0].argmax(0).numpy()[tuple(slice(0, n) for n in case.image.shape[1:])]
        m = segmentation_metrics(pred, case.label, names, distances=False)
        per_case.append({"case": case.case_id, "mean_dice": mean_over_classes(m["dice"]), "dice": m["dice"]})
    return {"mean_dice": float(np.nanmean([c["mean_dice"] for c in per_case])), "per_case": per_case,
            "n_train_voxels": int(len(y)), "feature_dim": int(x.shape[1])}


def run_segmentation_probe(cfg: FinetuneConfig, pretrained: str | None, n_train: int = 5,
                           seed: int = 0) -> dict[str, Any]:
    """Frozen-feature segmentation probe of the pretrained encoder and of the same network at
    random init (seed ``seed``), on the config's split: ``n_train`` labeled pool cases train
    the linear head, the test cases (validation when there is no test split) score it."""
    names = resolve_labels(cfg)
    d = cfg.data
    splits = d.split(load_cases(d))
    train = [prepare_case(c, cfg, names) for c in splits.train[:n_train]]
    test = [prepare_case(c, cfg, names) for c in (splits.test or splits.val)]
    weights = open_weights(pretrained) if pretrained else None  # read once: spec and tensors
    spec = (exported_encoder_spec(weights) if weights else None) or cfg.encoder_spec()
    spec = {"in_channels": train[0].image.shape[0], **spec}
    results: dict[str, Any] = {}
    for name, source in (("random", None), ("pretrained", weights)):
        if name == "pretrained" and source is None:
            continue
        torch.manual_seed(seed)
        encoder = build_encoder(spec)
        if source is not None:
            load_pretrained(encoder, source, spec["name"], cfg.model.min_loaded_fraction)
        results[name] = segmentation_probe_score(encoder, train, test, names, seed=seed)
    out = {"n_train": len(train), "n_test": len(test), "train_cases": [c.case_id for c in train],
           "encoders": {k: {"mean_dice": v["mean_dice"], "feature_dim": v["feature_dim"]} for k, v in results.items()},
           "per_case": {k: v["per_case"] for k, v in results.items()}}
    if "pretrained" in results:
        out["pretrained_minus_random"] = results["pretrained"]["mean_dice"] - results["random"]["mean_dice"]
    return out
