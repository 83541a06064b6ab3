"""The SSL pretraining step, medssl against the SwinUNETR/Pretrain reference doing the same work.

    python benchmarks/bench_ssl_step.py                 # CPU: Swin feature 12, 64^3, 2 crops x 2 views, fp32
    python benchmarks/bench_ssl_step.py --quick         # smoke: 1 crop, one step each, no warm-up
    python benchmarks/bench_ssl_step.py --device cuda   # GPU: Swin 48, 96^3, 4 crops x 2 views, fp16 autocast

Same crops (one random batch of B crops, C = 1), two views per crop, the same three tasks
(rotation, contrastive, reconstruction), the same Swin transformer (MONAI's, window 7,
depths 2-2-2-2), the same optimiser (AdamW, no clipping) and precision. The reference is
the real code: its ``SSLHead`` (VAE decoder), ``Loss``, ``rot_rand`` and ``aug_rand``,
imported from ../shared/reference (the CPU copy on a CPU). medssl is configured to do the
same work: no crop shift, flips, intensity jitter, blur or noise (the reference has none),
rotation labels, box masks filled with noise, the light decoder from the deepest feature.

Figures (seconds per step, medssl / reference, interleaved): ssl_augment, ssl_forward (with
the losses), ssl_backward, ssl_optimizer, ssl_step (their sum); on CUDA also
ssl_peak_memory (GiB). ``equal`` on ssl_step: both Swin encoders, given the same weights,
give the same deepest features on the same input (max abs difference < 1e-4 in fp32)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from racing import add_common_args, emit, reference_dir  # noqa: E402

PHASES = ("augment", "forward", "backward", "optimizer")


def load_reference(device: torch.device) -> SimpleNamespace:
    root = reference_dir("swinunetr_pretrain" if device.type == "cuda" else "swinunetr_pretrain_cpu")
    sys.path.insert(0, str(root))
    from losses.loss import Loss  # the reference's modules, by their own names
    from models.ssl_head import SSLHead
    from utils.ops import aug_rand, rot_rand

    sys.path.remove(str(root))
    return SimpleNamespace(SSLHead=SSLHead, Loss=Loss, rot_rand=rot_rand, aug_rand=aug_rand)


def medssl_task(feature: int, size: int):  # noqa: ANN201
    from medssl.tasks.config import TasksConfig
    from medssl.tasks.ssl import SSLTask

    tasks = TasksConfig.model_validate({
        "views": {"max_shift": 0, "flip_prob": 0, "intensity_scale": 0, "intensity_shift": 0, "noise_std": 0,
                  "blur_prob": 0},
        "inpaint": {"weight": 1.0, "mask": "boxes", "n_boxes": 4, "box_min": max(1, size // 20),
                    "box_max": size // 4, "fill": "noise", "decoder": "light", "skips": "none",
                    "decoder_width": 8 * feature},
        "contrastive": {"weight": 1.0, "temperature": 0.5, "hidden_dim": 512, "proj_dim": 128, "gather": False},
        "rotation": {"weight": 1.0},
    })  # fmt: skip
    return SSLTask({"name": "swin", "feature_size": feature}, tasks, size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stepper:
    """One training step split into timed phases; ``times[phase]`` collects seconds."""

    def __init__(self, device: torch.device, amp: torch.dtype | None) -> None:
        self.device, self.amp = device, amp
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.peak = 0.0

    def _autocast(self):  # noqa: ANN202
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def run(self, parts, keep: bool) -> None:  # noqa: ANN001
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        marks = [time.perf_counter()]
        state = None
        for phase, fn in zip(PHASES, parts):
            if phase == "forward":
                with self._autocast():
                    state = fn(state)
            else:
                state = fn(state)
            _sync(self.device)
            marks.append(time.perf_counter())
        if keep:
            for phase, t0, t1 in zip(PHASES, marks, marks[1:]):
                self.times[phase].append(t1 - t0)
            if self.device.type == "cuda":
                self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device) / 2**30)


def medssl_parts(task, opt, crops: torch.Tensor, scaler, seed: list[int]):  # noqa: ANN001, ANN201
    def augment(_):  # noqa: ANN001, ANN202
        seed[0] += 1
        return task._views({"image": crops, "seed": seed[0]})

    def forward(views):  # noqa: ANN001, ANN202
        return task.losses(views)[0]["loss"]

    def backward(loss):  # noqa: ANN001, ANN202
        scaler.scale(loss).backward()

    def step(_):  # noqa: ANN001, ANN202
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    return augment, forward, backward, step


def reference_parts(ref: SimpleNamespace, model, loss_fn, opt, crops: torch.Tensor, scaler):  # noqa: ANN001, ANN201
    args = SimpleNamespace(local_rank=crops.device.index or 0)

    def augment(_):  # noqa: ANN001, ANN202  -- main.py lines 40-43
        x1, rot1 = ref.rot_rand(args, crops)
        x2, rot2 = ref.rot_rand(args, crops)
        return x1, rot1, x2, rot2, ref.aug_rand(args, x1), ref.aug_rand(args, x2)

    def forward(state):  # noqa: ANN001, ANN202  -- main.py lines 46-53
        x1, rot1, x2, rot2, x1_augment, x2_augment = state
        rot1_p, contrastive1_p, rec_x1 = model(x1_augment)
        rot2_p, contrastive2_p, rec_x2 = model(x2_augment)
        rot_p = torch.cat([rot1_p, rot2_p], dim=0)
        rots = torch.cat([rot1, rot2], dim=0)
        imgs_recon = torch.cat([rec_x1, rec_x2], dim=0)
        imgs = torch.cat([x1, x2], dim=0)
        return loss_fn(rot_p, rots, contrastive1_p, contrastive2_p, imgs_recon, imgs)[0]

    def backward(loss):  # noqa: ANN001, ANN202
        scaler.scale(loss).backward()

    def step(_):  # noqa: ANN001, ANN202  -- AdamW, as its main.py builds it by default
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()

    return augment, forward, backward, step


def same_encoder(task, model, size: int, device: torch.device) -> tuple[bool, float]:  # noqa: ANN001
    """medssl's encoder loaded with the reference's swinViT weights: same deepest features?"""
    enc = type(task.encoder)(feature_size=task.encoder_spec["feature_size"]).to(device).eval()
    enc.load_state_dict(model.swinViT.state_dict())
    x = torch.rand(1, 1, size, size, size, device=device)
    with torch.no_grad():
        ours, theirs = enc(x)[-1].float(), model.swinViT.eval()(x)[4].float()
    model.swinViT.train()
    diff = float((ours - theirs).abs().max())
    return diff < 1e-4, diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--crops", type=int, default=None, help="crops per step (2 views each)")
    p.add_argument("--size", type=int, default=None, help="crop side, voxels")
    p.add_argument("--feature", type=int, default=None, help="Swin feature_size")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    crops_n = args.crops or (4 if gpu else 1 if args.quick else 2)
    size = args.size or (96 if gpu else 64)  # the reference needs >= 2 tokens at stride 32
    feature = args.feature or (48 if gpu else 12)
    repeats = args.repeats or (10 if gpu else 1 if args.quick else 5)
    device = torch.device(args.device)
    amp = torch.float16 if gpu else None
    torch.manual_seed(0)
    ref = load_reference(device)
    task = medssl_task(feature, size).to(device).train()
    refargs = SimpleNamespace(spatial_dims=3, in_channels=1, feature_size=feature, dropout_path_rate=0.0,
                              use_checkpoint=False, local_rank=0)  # fmt: skip
    model = ref.SSLHead(refargs, dim=16 * feature).to(device).train()
    loss_fn = ref.Loss(crops_n, refargs).to(device)
    from medssl.training.config import TrainConfig
    from medssl.training.optim import build_optimizer

    opt_m = build_optimizer(task, TrainConfig(lr=4e-4, weight_decay=1e-5), device)
    opt_r = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=1e-5)
    scaler_m, scaler_r = (torch.amp.GradScaler(device.type, enabled=gpu) for _ in range(2))
    crops = torch.rand(crops_n, 1, size, size, size, device=device)
    ours, theirs = Stepper(device, amp), Stepper(device, amp)
    parts_m = medssl_parts(task, opt_m, crops, scaler_m, [0])
    parts_r = reference_parts(ref, model, loss_fn, opt_r, crops, scaler_r)
    warmup = 2 if gpu else 0 if args.quick else 1
    for i in range(warmup + repeats):
        ours.run(parts_m, keep=i >= warmup)
        theirs.run(parts_r, keep=i >= warmup)
    equal, diff = same_encoder(task, model, size, device)
    common = {"device": args.device, "crops": crops_n, "views": 2, "size": size, "feature_size": feature,
              "precision": "fp16 autocast" if gpu else "fp32"}  # fmt: skip
    for phase in PHASES:
        a, b = ours.times[phase], theirs.times[phase]
        emit(f"ssl_{phase}", statistics.median(a), statistics.median(b), "s/step",
             ratios=[x / y for x, y in zip(a, b)], repeats=repeats, **common)  # fmt: skip
    a = [sum(t) for t in zip(*ours.times.values())]
    b = [sum(t) for t in zip(*theirs.times.values())]
    emit("ssl_step", statistics.median(a), statistics.median(b), "s/step", ratios=[x / y for x, y in zip(a, b)],
         equal=equal, repeats=repeats, encoder_max_abs_diff=diff,
         crops_per_s=[round(crops_n / statistics.median(a), 2), round(crops_n / statistics.median(b), 2)], **common)  # fmt: skip
    if gpu:
        emit("ssl_peak_memory", ours.peak, theirs.peak, "GiB", repeats=repeats, **common)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
