"""GPU checks (skipped without CUDA): a short bf16 Swin pretraining run on phantoms whose
losses fall, and the reference-configuration benchmark running end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


def test_short_swin_pretraining_on_gpu_losses_fall(tmp_path):
    from medssl.config import load_config
    from medssl.data.phantom_io import synth_cohort
    from medssl.training.metrics import read_metrics
    from medssl.training.pretrain import run_pretrain
    from medssl.training.pretrain_config import PretrainConfig

    synth_cohort(tmp_path / "D", 8, fmt="nifti", seed=0, shape=(128, 128, 96), workers=1)
    cfg = load_config(PretrainConfig, REPO / "configs/pretrain/ct_swin_base.yaml", [
        f"data.root={tmp_path / 'D'}", "data.crop_size=64", "data.workers=2", "model.encoder.feature_size=24",
        "train.max_steps=120", "train.warmup_steps=10", "train.lr=0.001", "train.log_every=1",
        "train.checkpoint_every=60", "train.preview_every=60", "train.device=cuda",
        "tasks.views.max_shift=8", "tasks.inpaint.box_min=8", "tasks.inpaint.box_max=16",
    ])
    state = run_pretrain(cfg, tmp_path / "run")
    assert state.step == 120
    rows = read_metrics(tmp_path / "run")
    q = len(rows) // 4
    for key in ("loss", "inpaint_l1"):
        first = sum(r[key] for r in rows[:q]) / q
        last = sum(r[key] for r in rows[-q:]) / q
        assert last < 0.8 * first, (key, first, last)


def test_reference_benchmark_runs(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "benchmarks/pretrain_throughput.py"), "--device", "cuda",
                          "--steps", "5", "--warmup", "3"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    figures = {json.loads(line)["figure"] for line in res.stdout.splitlines() if line.startswith("{")}
    assert {"full_step", "data_wait", "model_step", "augment", "peak_memory"} <= figures
