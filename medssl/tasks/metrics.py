"""Segmentation metrics per class (MONAI), classification metrics (scikit-learn) and
bootstrap confidence intervals. Classes empty in both prediction and reference give NaN
and are left out of means."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _onehot(label: np.ndarray | torch.Tensor, k: int) -> torch.Tensor:
    """(X, Y, Z) int -> (1, K, X, Y, Z) float."""
    t = torch.as_tensor(np.asarray(label), dtype=torch.long)
    return F.one_hot(t.clamp(0, k - 1), k).permute(3, 0, 1, 2)[None].float()


def segmentation_metrics(
    pred: np.ndarray, ref: np.ndarray, labels: dict[str, str], spacing: Sequence[float] = (1.0, 1.0, 1.0),
    surface_tolerance_mm: float = 2.0, distances: bool = True,
) -> dict[str, dict[str, float]]:
    """Per foreground class: dice, and (``distances``) hd95 in mm and surface dice at the tolerance.

    pred, ref: (X, Y, Z) integer label maps on the same grid."""
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    k = max(int(i) for i in labels) + 1
    p, r = _onehot(pred, k), _onehot(ref, k)
    names = [labels.get(str(i), str(i)) for i in range(1, k)]
    out: dict[str, dict[str, float]] = {"dice": {}, "hd95": {}, "surface_dice": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(p, r, include_background=False, ignore_empty=True)[0]
        if distances:
            hd = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=list(spacing))[0]
            sd = compute_surface_dice(p, r, [surface_tolerance_mm] * (k - 1), include_background=False,
                                      spacing=list(spacing))[0]
    for i, name in enumerate(names):
        both_empty = not bool(p[0, i + 1].any() or r[0, i + 1].any())
        out["dice"][name] = float("nan") if both_empty else float(torch.nan_to_num(dice[i], nan=0.0))
        if distances:
            one_empty = bool(p[0, i + 1].any()) != bool(r[0, i + 1].any())
            out["hd95"][name] = float("nan") if both_empty or one_empty else float(hd[i])
            out["surface_dice"][name] = float("nan") if both_empty else float(torch.nan_to_num(sd[i], nan=0.0))
    return out


def mean_over_classes(per_class: dict[str, float]) -> float:
    vals = [v for v in per_class.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, labels: dict[str, str]) -> dict[str, Any]:
    """AUC (one-vs-rest for >2 classes; NaN with one class present), balanced accuracy,
    macro F1 and the confusion matrix. probs: (N, K)."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    k = probs.shape[1]
    pred = probs.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class present: AUC undefined (NaN), said in the report
        try:
            auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr",
                                                                                labels=list(range(k)))
        except ValueError:
            auc = float("nan")
        bacc = balanced_accuracy_score(y, pred)
    return {
        "auc": float(auc),
        "balanced_accuracy": float(bacc),
        "f1": float(f1_score(y, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "class_names": [labels.get(str(i), str(i)) for i in range(k)],
    }


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Mean of the finite values and a percentile bootstrap (1 - alpha) interval over them."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": len(v)}


def paired_bootstrap(diff: np.ndarray, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Mean and percentile interval of a (seeds, cases) matrix of paired differences, with
    seeds and test cases resampled as units (two-level bootstrap: a resample draws seeds
    with replacement and, independently, cases with replacement, and averages the sub-matrix).

    With one seed only cases are resampled, with one case only seeds; one seed and one case
    give no interval (``lo``/``hi`` NaN). NaN cells (a class absent in a case) are skipped.
    ``significant``: the interval excludes 0."""
    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or d.size == 0 or not np.isfinite(d).any():
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n_seeds": 0, "n_cases": 0,
                "significant": False, "per_seed": []}
    n_s, n_c = d.shape
    per_seed = [float(np.nanmean(row)) if np.isfinite(row).any() else float("nan") for row in d]
    out: dict[str, Any] = {"mean": float(np.nanmean(d)), "n_seeds": n_s, "n_cases": n_c, "per_seed": per_seed}
    if n_s * n_c == 1:
        return {**out, "lo": float("nan"), "hi": float("nan"), "significant": False,
                "note": "one seed and one case: no interval"}
    rng = np.random.default_rng(seed)
    si = rng.integers(0, n_s, size=(n_boot, n_s)) if n_s > 1 else np.zeros((n_boot, 1), dtype=int)
    ci = rng.integers(0, n_c, size=(n_boot, n_c)) if n_c > 1 else np.zeros((n_boot, 1), dtype=int)
    means = np.array([np.nanmean(d[np.ix_(s, c)]) for s, c in zip(si, ci)])
    lo, hi = np.nanquantile(means, [alpha / 2, 1 - alpha / 2])
    return {**out, "lo": float(lo), "hi": float(hi), "significant": bool(lo > 0 or hi < 0),
            "resampled": "seeds and cases" if n_s > 1 and n_c > 1 else "cases" if n_c > 1 else "seeds"}
