"""Metrics against hand-computed values; bootstrap intervals; sweep report files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medssl.evaluation.metrics import bootstrap_ci, classification_metrics, mean_over_classes, segmentation_metrics
from medssl.evaluation.report import write_sweep_report

LABELS = {"0": "background", "1": "a", "2": "b", "3": "c"}


def test_segmentation_metrics_by_hand():
    ref = np.zeros((20, 20, 20), np.int16)
    pred = np.zeros_like(ref)
    ref[5:10, 5:10, 5:10] = 1  # 125 voxels
    pred[6:11, 5:10, 5:10] = 1  # shifted by one voxel: overlap 100
    ref[12:15, 12:15, 12:15] = 2
    pred[0:2, 0:2, 0:2] = 3  # false positive only
    m = segmentation_metrics(pred, ref, LABELS, spacing=(2.0, 1.0, 1.0), surface_tolerance_mm=2.0)
    assert m["dice"]["a"] == pytest.approx(2 * 100 / 250)
    assert m["dice"]["b"] == 0.0 and m["dice"]["c"] == 0.0
    assert m["hd95"]["a"] == pytest.approx(2.0)  # one voxel along x at 2 mm
    assert math.isnan(m["hd95"]["b"])  # no prediction: distance undefined
    assert m["surface_dice"]["a"] == pytest.approx(1.0)  # every surface within 2 mm
    empty = segmentation_metrics(np.zeros_like(ref), np.zeros_like(ref), LABELS, distances=False)
    assert all(math.isnan(v) for v in empty["dice"].values())
    assert mean_over_classes({"a": 0.5, "b": float("nan"), "c": 1.0}) == 0.75


def test_classification_metrics_by_hand():
    y = [0, 0, 1, 1, 1]
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    m = classification_metrics(y, probs, {"0": "no", "1": "yes"})
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["auc"] == pytest.approx(5 / 6)  # 5 of the 6 (pos, neg) pairs ranked right
    assert m["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    one_class = classification_metrics([1, 1], probs[:2], {"0": "no", "1": "yes"})
    assert math.isnan(one_class["auc"])


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    vals = [0.2, 0.4, 0.5, 0.9, float("nan")]
    a, b = bootstrap_ci(vals, 500, seed=1), bootstrap_ci(vals, 500, seed=1)
    assert a == b and a["n"] == 4 and a["mean"] == pytest.approx(0.5)
    assert 0.2 <= a["lo"] < a["mean"] < a["hi"] <= 0.9
    assert bootstrap_ci([0.7, 0.7, 0.7])["lo"] == pytest.approx(0.7)
    assert bootstrap_ci([])["n"] == 0


def test_sweep_report_files(tmp_path):
    runs = []
    for n in (2, 4):
        for seed in (0, 1):
            runs.append({"arm": "scratch", "n_labeled": n, "seed": seed, "value": 0.5, "per_case": [0.4, 0.6]})
            runs.append({"arm": "pretrained", "n_labeled": n, "seed": seed, "value": 0.6, "per_case": [0.5, 0.7]})
    report = write_sweep_report(runs, tmp_path, n_boot=200)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["arms"]["pretrained"]["2"]["mean"] == pytest.approx(0.6)
    assert saved["difference_vs_scratch"]["pretrained"]["4"]["mean"] == pytest.approx(0.1)
    assert saved["arms"]["scratch"]["4"]["runs"] == [0.5, 0.5]
    assert "| 2 | 50.0" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert report["metric"] == "dice"
