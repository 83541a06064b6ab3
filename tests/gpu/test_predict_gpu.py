"""Prediction on CUDA (skipped without a GPU): same answers as the CPU, GPU stitching for
small volumes, and the throughput benchmark runs end to end at a small size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.inference import Predictor
from tests.unit.inference.test_inference_fixtures import (
    grid_affine,
    sphere_scan,
    threshold_artifact,
)

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[2]


def test_cuda_matches_cpu_and_stitches_on_gpu(tmp_path):
    path = threshold_artifact(tmp_path / "m.pt", preprocessing={"orientation": "RAS", "spacing": [1.5, 1.5, 1.5]})
    affine = grid_affine((1.0, 1.2, 2.5), "LPS", 10.0)
    scan = sphere_scan(affine, (40, 36, 16), affine[:3, :3] @ np.array([20.0, 18.0, 8.0]) + affine[:3, 3], 8.0)
    gpu = Predictor.from_artifact(path, device="cuda", tta=True)
    on_gpu = gpu.predict(scan)
    on_cpu = Predictor.from_artifact(path, device="cpu", tta=True).predict(scan)
    assert (on_gpu.label == on_cpu.label).mean() > 0.999
    assert gpu.runner.last_plan == (2, "cuda")
    assert on_gpu.info["device"].startswith("cuda")


def test_swin_unetr_window_runner_agrees_with_plain_sliding_window():
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SwinUNETR

    from medssl.models.encoders import use_fused_attention
    from medssl.inference.window import WindowConfig, WindowRunner

    torch.manual_seed(0)
    net = SwinUNETR(in_channels=1, out_channels=3, feature_size=12).cuda().eval()
    x = torch.rand(1, 1, 96, 96, 80, device="cuda")
    with torch.inference_mode():
        ref = torch.softmax(sliding_window_inference(x, (64, 64, 64), 2, net, overlap=0.25, mode="gaussian"), 1)
    use_fused_attention(net)
    out = WindowRunner(net, WindowConfig((64, 64, 64), 0.25, 4, "gaussian", amp="bf16"), torch.device("cuda"), 3)(x)
    assert (torch.softmax(out, 1) - ref).abs().max() < 0.05


def test_benchmark_runs_small():
    cmd = [sys.executable, str(REPO / "benchmarks" / "predict_throughput.py"), "--device", "cuda",
           "--size", "160", "160", "120", "--repeats", "1", "--sw-batch", "4"]  # fmt: skip
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ours = [d for d in lines if d["figure"] == "medssl_window_seconds"]
    assert ours and ours[0]["max_abs_diff_softmax"] < 0.05
