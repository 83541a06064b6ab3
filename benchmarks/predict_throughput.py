"""Prediction throughput, one JSON line per figure.

CPU (default without CUDA): seconds per scan of the whole ``Predictor`` path (preprocessing,
sliding window, resampling back, argmax) for a small U-Net artifact on phantom CT scans.

    python benchmarks/predict_throughput.py --device cpu --scans 3

GPU: SwinUNETR feature_size 48 (random weights, 14 classes, ROI 96^3) on a 512 x 512 x 300 CT
at overlap 0.25. Times, in the same run and on the same input tensor already on the GPU,
the plain MONAI ``sliding_window_inference`` under fp16 autocast (sw_batch 4; constant and
Gaussian blending) against medssl's window runner (Gaussian blending with a cached
importance map, bf16/fp16 autocast, larger window batches, stitching on the GPU, fused
attention, optional ``torch.compile``), plus the max abs difference of the softmax outputs
against the Gaussian baseline and the argmax agreement. Then the whole Predictor per scan.

    python benchmarks/predict_throughput.py --device cuda            # full size
    python benchmarks/predict_throughput.py --device cuda --compile  # also torch.compile
    python benchmarks/predict_throughput.py --device cpu --swin --size 96 96 96 --sw-batch 2 --repeats 1  # CPU smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medssl.artifacts.model import ModelArtifact, save_model_artifact
from medssl.inference.predictor import Predictor
from medssl.models.encoders import use_fused_attention
from medssl.inference.window import WindowConfig, WindowRunner, autocast
from medssl.io.scan import Scan


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median seconds over ``repeats`` runs after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def ct_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """CT-like HU: a phantom drawn at a quarter of the size and upsampled (fast at 512^2 x 300)."""
    import torch.nn.functional as F

    from medssl.data.phantom import make_phantom

    small = tuple(max(16, n // 4) for n in shape)
    image, _, _ = make_phantom(seed, shape=small)
    big = F.interpolate(torch.from_numpy(image)[None, None], size=tuple(shape), mode="trilinear", align_corners=False)
    return big[0, 0].numpy()


def run_cpu(args: argparse.Namespace) -> None:
    spec = {"name": "unet", "in_channels": 1, "out_channels": 7, "channels": [16, 32, 64, 128], "strides": [2, 2, 2]}
    from medssl.models import build_network

    art = ModelArtifact(task="segmentation", network=spec, state_dict=build_network(spec).state_dict(),
                        labels={str(i): f"l{i}" for i in range(7)},
                        preprocessing={"orientation": "RAS", "spacing": [1.5, 1.5, 2.0]},
                        inference={"roi_size": [96, 96, 64], "overlap": 0.5, "sw_batch_size": 2})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor.from_artifact(save_model_artifact(art, Path(tmp) / "model.pt"), device="cpu")
    for i in range(args.scans):
        from medssl.data.phantom import make_phantom

        image, _, affine = make_phantom(i, shape=tuple(args.size))
        scan = Scan(image, affine, "CT", f"phantom_{i}", f"phantom_{i}")
        start = time.perf_counter()
        pred = predictor.predict(scan)
        emit(figure="cpu_predict_seconds_per_scan", device="cpu", threads=torch.get_num_threads(), scan=i,
             shape=list(scan.shape), seconds=round(time.perf_counter() - start, 3),
             preprocess_seconds=pred.info["preprocess_seconds"], network="unet 16-32-64-128")  # fmt: skip


def run_swin(args: argparse.Namespace, device: torch.device) -> None:
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    base = SwinUNETR(in_channels=1, out_channels=14, feature_size=48).to(device).eval()
    x = torch.from_numpy(np.clip((ct_volume(tuple(args.size)) + 1000) / 2000, 0, 1))[None, None].float().to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    roi, common = (96, 96, 96), {"device": str(device), "gpu": name, "shape": list(args.size)}

    def plain(mode: str):
        def fn():
            with torch.inference_mode(), autocast(device, "fp16"):
                return sliding_window_inference(x, roi, 4, base, overlap=0.25, mode=mode)
        return fn

    t_const, _ = timed(plain("constant"), device, args.repeats)
    emit(figure="plain_swi_fp16_constant_seconds", seconds=round(t_const, 3), sw_batch_size=4, **common)
    t_gauss, ref = timed(plain("gaussian"), device, args.repeats)
    emit(figure="plain_swi_fp16_gaussian_seconds", seconds=round(t_gauss, 3), sw_batch_size=4, **common)
    ref_probs = torch.softmax(ref.float(), 1)
    del ref

    net = copy.deepcopy(base)
    use_fused_attention(net)
    if args.compile:
        net = torch.compile(net)
    for sw_batch in args.sw_batch:
        runner = WindowRunner(net, WindowConfig(roi, overlap=0.25, sw_batch_size=sw_batch, mode="gaussian", amp=args.amp), device, out_channels=14)
        t_ours, out = timed(lambda runner=runner: runner(x), device, args.repeats)
        probs = torch.softmax(out, 1)
        emit(figure="medssl_window_seconds", seconds=round(t_ours, 3), sw_batch_size=sw_batch, amp=args.amp,
             compile=args.compile, stitch=runner.last_plan[1], ratio_vs_plain_constant=round(t_ours / t_const, 3),
             ratio_vs_plain_gaussian=round(t_ours / t_gauss, 3),
             max_abs_diff_softmax=round(float((probs - ref_probs).abs().max()), 4),
             argmax_agreement=round(float((probs.argmax(1) == ref_probs.argmax(1)).float().mean()), 5), **common)  # fmt: skip
        del out, probs
    if device.type == "cuda":
        emit(figure="peak_gpu_memory_gib", value=round(torch.cuda.max_memory_allocated(device) / 2**30, 2), **common)

    if args.predictor:
        _whole_predictor(base, args, common, device)


def _whole_predictor(base: torch.nn.Module, args: argparse.Namespace, common: dict, device: torch.device) -> None:
    """Predictor.predict on the scan (CPU preprocessing, windows, resampling, argmax)."""
    from monai.networks.nets import SwinUNETR

    from medssl.models.registry import NETWORKS

    if "bench_swin_unetr" not in NETWORKS:
        NETWORKS.register("bench_swin_unetr")(lambda: SwinUNETR(in_channels=1, out_channels=14, feature_size=48))
    art = ModelArtifact(task="segmentation", network={"name": "bench_swin_unetr"}, state_dict=base.state_dict(),
                        labels={str(i): f"l{i}" for i in range(14)}, preprocessing={"orientation": "RAS"},
                        inference={"roi_size": [96, 96, 96], "overlap": 0.25, "sw_batch_size": max(args.sw_batch)})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor.from_artifact(save_model_artifact(art, Path(tmp) / "m.pt"), device=device, amp=args.amp,
                                            compile=args.compile)  # fmt: skip
    affine = np.diag([-0.8, -0.8, 1.0, 1.0])
    scan = Scan(ct_volume(tuple(args.size)), affine, "CT", "bench", "bench")
    t, _ = timed(lambda: predictor.predict(scan), device, args.repeats)
    emit(figure="medssl_predictor_seconds_per_scan", seconds=round(t, 3), **common)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--swin", action="store_true", help="the SwinUNETR comparison (default on CUDA; on the CPU only as a smoke test)")
    p.add_argument("--size", type=int, nargs=3, default=None, help="volume shape (default: cpu 96 96 48, cuda 512 512 300)")
    p.add_argument("--scans", type=int, default=3, help="CPU: number of phantom scans")
    p.add_argument("--repeats", type=int, default=3, help="GPU: timed repeats after one warm-up (median)")
    p.add_argument("--sw-batch", type=int, nargs="+", default=[4, 8, 16], help="GPU: window batches to try")
    p.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "auto", "off"))
    p.add_argument("--compile", action="store_true", help="GPU: torch.compile the network (slow first call)")
    p.add_argument("--predictor", action="store_true", help="GPU: also time the whole Predictor.predict")
    args = p.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.size = args.size or ([512, 512, 300] if cuda else [96, 96, 48])
    if cuda or args.swin:
        run_swin(args, torch.device("cuda" if cuda else "cpu"))
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
