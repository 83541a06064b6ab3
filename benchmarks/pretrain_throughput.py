"""Pretraining throughput: one JSON line per figure.

    python benchmarks/pretrain_throughput.py --device cpu                 # tiny, a minute on a CPU
    python benchmarks/pretrain_throughput.py --device cuda                # reference config on a GPU
    python benchmarks/pretrain_throughput.py --device cuda --compile

Figures: ``full_step`` (crops/s of the real training loop, data fed from .nii.gz files on
disk through the volume cache, median step after warm-up), ``data_wait`` (share of step time
spent waiting for data), ``model_step`` (crops/s of the training step on a batch already on
the device: view generation + forward + backward + optimizer), ``augment`` (s per step of the
on-device views, rotations and masks), ``peak_memory`` (GiB, CUDA). The race against the
real reference step (its SSLHead, Loss, rot_rand, aug_rand) is benchmarks/bench_ssl_step.py.
The GPU reference: Swin feature_size 48, 96^3 views, 4 crops per
step with 2 views each, inpainting + contrastive + rotation, bf16."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medssl.config import load_config
from medssl.training.pretrain_config import PretrainConfig


def emit(figure: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit, **extra}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_config(args: argparse.Namespace, root: Path, out: Path) -> PretrainConfig:
    total = args.warmup + args.steps
    common = [
        f"data.root={root}", f"data.cache_dir={out / 'cache'}", f"train.max_steps={total}", "train.log_every=1",
        f"train.checkpoint_every={total}", "train.preview_every=0", "train.tensorboard=false",
        "train.progress=false", f"train.device={args.device}", f"train.compile={str(args.compile).lower()}",
        f"train.warmup_steps={args.warmup}",
    ]
    if args.device == "cpu":
        return load_config(PretrainConfig, REPO / "configs/pretrain/smoke.yaml",
                           common + ["data.batch_size=2", "data.workers=1", "tasks.rotation.weight=1.0"])
    return load_config(PretrainConfig, REPO / "configs/pretrain/ct_swin_base.yaml",
                       common + [f"data.batch_size={args.crops}", f"data.workers={args.workers}"])


def make_cohort(root: Path, args: argparse.Namespace) -> None:
    from medssl.data.phantom_io import synth_cohort

    shape = (48, 48, 40) if args.device == "cpu" else (192, 192, 128)
    synth_cohort(root, args.cohort, fmt="nifti", seed=0, shape=shape, workers=1)


def full_step(cfg: PretrainConfig, out: Path, device: torch.device, args: argparse.Namespace) -> None:
    from medssl.training.metrics import read_metrics
    from medssl.training.pretrain import run_pretrain

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run_pretrain(cfg, out / "run")
    rows = read_metrics(out / "run")[args.warmup:]
    step_s = statistics.median(1.0 / r["it_s"] for r in rows)
    crops = cfg.data.batch_size * cfg.train.accum_steps
    emit("full_step", crops / step_s, "crops/s", step_s=round(step_s, 4), crops_per_step=crops)
    emit("data_wait", statistics.mean(r["data_wait"] for r in rows), "share of step time")
    if device.type == "cuda":
        emit("peak_memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")


def model_step(cfg: PretrainConfig, device: torch.device, args: argparse.Namespace) -> None:
    from medssl.training.optim import build_optimizer
    from medssl.training.pretrain import build_task
    from medssl.devices import amp_dtype

    task = build_task(cfg).to(device).train()
    opt = build_optimizer(task, cfg.train, device)
    region = cfg.data.side + cfg.tasks.views.max_shift
    batch = {"image": torch.rand(cfg.data.batch_size, 1, region, region, region, device=device), "seed": 0}
    dtype = amp_dtype(device, cfg.train.amp)
    if args.compile:
        task.compile_parts()
    step = task
    times, aug = [], []
    for i in range(args.warmup + args.steps):
        batch["seed"] = i
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = step(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t1 = time.perf_counter()
        with torch.no_grad():
            task._views(batch)
        sync(device)
        if i >= args.warmup:
            times.append(t1 - t0)
            aug.append(time.perf_counter() - t1)
    emit("model_step", cfg.data.batch_size / statistics.median(times), "crops/s", amp=str(dtype))
    emit("augment", statistics.median(aug), "s/step")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="measured steps (default 20 GPU, 5 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5 GPU, 2 CPU)")
    p.add_argument("--crops", type=int, default=4, help="crops per step on GPU (2 views each)")
    p.add_argument("--workers", type=int, default=8, help="loader workers on GPU")
    p.add_argument("--cohort", type=int, default=None, help="phantom volumes on disk (default 16 GPU, 4 CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the task")
    p.add_argument("--skip-full", action="store_true", help="only the model-alone figures")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    args.steps = args.steps or (20 if gpu else 5)
    args.warmup = args.warmup or (5 if gpu else 2)
    args.cohort = args.cohort or (16 if gpu else 4)
    device = torch.device(args.device)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        emit("device", 0, "", name=torch.cuda.get_device_name(0), torch=torch.__version__)
    with tempfile.TemporaryDirectory(prefix="medssl-bench-") as tmp:
        out = Path(tmp)
        cfg = build_config(args, out / "cohort", out)
        if not args.skip_full:
            make_cohort(out / "cohort", args)
            full_step(cfg, out, device, args)
        model_step(cfg, device, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
