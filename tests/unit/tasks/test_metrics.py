"""Metrics against hand-computed values; bootstrap intervals; sweep report files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medssl.tasks.metrics import bootstrap_ci, classification_metrics, mean_over_classes, segmentation_metrics
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
    assert saved["completeness"]["status"] == "final"
    assert saved["arms"]["pretrained"]["2"]["mean"] == pytest.approx(0.6)
    diff = saved["difference_vs_scratch"]["pretrained"]["4"]
    assert diff["mean"] == pytest.approx(0.1) and diff["per_seed"] == pytest.approx([0.1, 0.1])
    assert diff["lo"] == pytest.approx(0.1) and diff["significant"]  # constant differences: a zero-width interval
    assert saved["arms"]["scratch"]["4"]["per_seed"] == pytest.approx([0.5, 0.5])
    md = (tmp_path / "report.md").read_text()
    assert "| 2 | 50.0" in md and "per seed (0, 1): +10.0, +10.0" in md
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert report["metric"] == "dice"


def test_paired_bootstrap_matches_hand_computed_resampling():
    from medssl.tasks.metrics import paired_bootstrap

    # 2 seeds x 2 cases: a resample picks 2 seeds and 2 cases with replacement, 16 equally
    # likely (seed pair, case pair) draws. By hand: seeds {0,0},{0,1},{1,0},{1,1} and cases alike;
    # the sub-matrix mean of d = [[1, 3], [5, 7]] is 1 + 4 * (seed share of 1) + 2 * (case share of 1),
    # i.e. means 1, 2, 2, 3 / 3, 4, 4, 5 / 3, 4, 4, 5 / 5, 6, 6, 7: 2.5 % quantile 1, 97.5 % 7, mean 4.
    d = np.array([[1.0, 3.0], [5.0, 7.0]])
    res = paired_bootstrap(d, n_boot=20000, seed=0)
    assert res["mean"] == pytest.approx(4.0) and res["per_seed"] == [2.0, 6.0]
    assert res["lo"] == pytest.approx(1.0) and res["hi"] == pytest.approx(7.0)
    assert res["resampled"] == "seeds and cases" and res["significant"]
    # the share of resamples whose mean is 4 is 4/16 + 4/16 (the middle draws): check it
    from medssl.tasks import metrics as m

    rng = np.random.default_rng(0)
    si, ci = rng.integers(0, 2, (20000, 2)), rng.integers(0, 2, (20000, 2))
    means = np.array([d[np.ix_(a, b)].mean() for a, b in zip(si, ci)])
    assert np.mean(means == 4.0) == pytest.approx(0.25, abs=0.02)
    assert m.paired_bootstrap(np.array([[0.3]]))["note"].startswith("one seed and one case")
    crossing = paired_bootstrap(np.array([[-1.0, 2.0], [1.0, -0.5]]), n_boot=2000)
    assert crossing["lo"] < 0 < crossing["hi"] and not crossing["significant"]


def test_partial_report_says_so(tmp_path):
    runs = [{"arm": "scratch", "n_labeled": 2, "seed": 0, "value": 0.5, "per_case": [0.5, 0.5]},
            {"arm": "pretrained", "n_labeled": 2, "seed": 0, "value": 0.6, "per_case": [0.6, 0.6]},
            {"arm": "scratch", "n_labeled": 2, "seed": 1, "value": 0.4, "per_case": [0.4, 0.4]}]
    plan = {"n_labeled": [2], "seeds": [0, 1], "arms": ["scratch", "pretrained"]}
    report = write_sweep_report(runs, tmp_path, n_boot=100, plan=plan)
    assert report["completeness"] == {"status": "partial", "missing": ["pretrained n=2 seed=1"]}
    assert report["difference_vs_scratch"]["pretrained"]["2"]["seeds"] == [0]  # paired seeds only
    assert "**PARTIAL**" in (tmp_path / "report.md").read_text()


def test_effective_rank_of_white_noise_and_rank_one_features():
    import torch

    from medssl.models.collapse import effective_rank

    torch.manual_seed(0)
    noise = torch.randn(2, 16, 16, 16, 16)
    assert effective_rank(noise) == pytest.approx(16, rel=0.05)
    direction = torch.randn(16)
    rank_one = direction.view(1, 16, 1, 1, 1) * torch.randn(2, 1, 16, 16, 16)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.ones(1, 4, 4, 4, 4)) == 0.0
