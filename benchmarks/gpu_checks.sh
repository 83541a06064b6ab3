#!/usr/bin/env bash
# Every GPU check of the project in one call, for a lent H100/H200 (device tool):
#   bash benchmarks/gpu_checks.sh            # prints one JSON line per figure, then the gpu tests
# Installs nothing but medssl itself (torch must already be there, with CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --no-deps -e . >/dev/null 2>&1 || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sed 's/^/{"device": "/; s/$/"}/'
export OMP_NUM_THREADS=8
# Issue 3: full SSL step at the reference config (Swin 48, 96^3, 4 crops x 2 views), data-wait, memory;
# then the model alone with torch.compile.
timeout 420 python benchmarks/pretrain_throughput.py --device cuda --baseline
timeout 300 python benchmarks/pretrain_throughput.py --device cuda --compile --skip-full
# Issue 5: SwinUNETR-48 on 512x512x300 at overlap 0.25 against plain sliding_window_inference fp16.
timeout 300 python benchmarks/predict_throughput.py --device cuda
# GPU tests (short pretraining run on phantoms with falling losses, predictor on CUDA, OOM fallback).
timeout 300 python -m pytest -q tests/gpu
