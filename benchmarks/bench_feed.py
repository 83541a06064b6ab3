"""The pretraining feed, medssl's volume cache + crop sampler against MONAI's CacheDataset and
PersistentDataset doing the same work with the same loader workers.

    python benchmarks/bench_feed.py           # the real CT NIfTIs of ../shared/data/real, 2 workers
    python benchmarks/bench_feed.py --quick   # smoke: 2 small phantoms, loading in the main process

Both sides: load .nii.gz, orient to RAS, resample to 1.5 x 1.5 x 2.0 mm (bilinear), CT window
[-1000, 1000] HU -> [0, 1] (cached, deterministic), then per batch random 64^3 crops, 2 per
volume, 4 per batch (random: medssl's foreground-aware sampler; MONAI
RandSpatialCropSamplesd + SpatialPadd). Each trial is a fresh process (``--quick``: all in
this one, and no memory figure).

Figures (medians of interleaved repeats; below 1 medssl is faster or smaller):
  feed_cold_vs_cachedataset    s from an empty cache to the last of N batches, against
                               CacheDataset (fill with the same workers) + DataLoader
  feed_cold_vs_persistent      the same against PersistentDataset with an empty cache folder
  feed_warm_vs_cachedataset    ms per crop once warm (medssl: filled cache, new process;
                               CacheDataset: after its fill)
  feed_warm_vs_persistent      ms per crop, PersistentDataset with its cache folder filled
  feed_peak_memory             MiB, main process peak + the largest worker's, warm trials
``equal`` (cold figures): medssl's cached volume equals MONAI's cached output for each file
(max abs difference below 1e-4 on the [0, 1] scale: float32 rounding in the resample)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from racing import REPO, add_common_args, emit, real_data_dir  # noqa: E402

SPACING = (1.5, 1.5, 2.0)
SIDE, PER_VOLUME, BATCH = 64, 2, 4


def preprocess_cfg():  # noqa: ANN201
    from medssl.data.preprocess import PreprocessConfig

    return PreprocessConfig(orientation="RAS", spacing=SPACING, intensity="ct_window")


def monai_cached():  # noqa: ANN201
    from monai import transforms as mt

    return mt.Compose([
        mt.LoadImaged("image", image_only=True), mt.EnsureChannelFirstd("image"),
        mt.Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))), mt.Spacingd("image", pixdim=SPACING, mode="bilinear"),
        mt.ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        mt.EnsureTyped("image", track_meta=False, dtype=np.float32),
    ])  # fmt: skip


def monai_random():  # noqa: ANN201
    from monai import transforms as mt

    return mt.Compose([mt.SpatialPadd("image", (SIDE,) * 3),
                       mt.RandSpatialCropSamplesd("image", (SIDE,) * 3, PER_VOLUME, random_size=False)])


def _batches(loader, n: int) -> tuple[list[float], int]:  # noqa: ANN001
    """Time stamps of n batches drawn from an endless pass over ``loader``, and crops seen."""
    stamps, crops = [], 0
    while len(stamps) < n:
        for batch in loader:
            crops += int(batch["image"].shape[0])
            stamps.append(time.perf_counter())
            if len(stamps) == n:
                break
    return stamps, crops


def trial_medssl(files: list[Path], cache: Path, workers: int, n: int) -> tuple[list[float], int]:
    from medssl.data.feed import CropSampler, PretrainDataConfig, make_batches

    cfg = PretrainDataConfig(files=files, preprocessing=preprocess_cfg(), crop_size=SIDE, batch_size=BATCH,
                             crops_per_volume=PER_VOLUME, workers=workers)  # fmt: skip
    sampler = CropSampler([(f, None) for f in files], cfg, cache, SIDE, seed=0)
    sampler.prepare()
    return _batches(make_batches(sampler, cfg, pin_memory=False)(0), n)


def trial_monai(kind: str, files: list[Path], cache: Path, workers: int, n: int) -> tuple[list[float], int]:
    from monai.data import CacheDataset, DataLoader, PersistentDataset
    from monai import transforms as mt

    data = [{"image": str(f)} for f in files]
    transform = mt.Compose([*monai_cached().transforms, *monai_random().transforms])
    if kind == "cachedataset":
        ds = CacheDataset(data, transform, num_workers=workers, progress=False)
    else:
        ds = PersistentDataset(data, transform, cache_dir=cache)
    loader = DataLoader(ds, batch_size=BATCH // PER_VOLUME, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)  # fmt: skip
    return _batches(loader, n)


def trial(kind: str, files: list[Path], cache: Path, workers: int, batches: int) -> dict:
    import monai.data  # noqa: F401  -- imports are not what is timed
    import monai.transforms  # noqa: F401

    import medssl.data.feed  # noqa: F401

    start = time.perf_counter()
    if kind == "medssl":
        stamps, crops = trial_medssl(files, cache, workers, batches)
    else:
        stamps, crops = trial_monai(kind, files, cache, workers, batches)
    warm = stamps[len(stamps) // 2:]
    warm_crops = BATCH * (len(warm) - 1)
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"total_s": stamps[-1] - start, "ms_per_crop": 1000 * (warm[-1] - warm[0]) / max(1, warm_crops),
            "crops": crops, "peak_mib": (own.ru_maxrss + kids.ru_maxrss) / 1024}  # fmt: skip


def run_trial(args: argparse.Namespace) -> int:
    print(json.dumps(trial(args.trial, [Path(f) for f in args.files], Path(args.cache), args.workers, args.batches)))
    return 0


def _trial(kind: str, files: list[Path], cache: Path, workers: int, batches: int, fresh: bool = True) -> dict:
    """One trial in a fresh process (``fresh``), or in this one (the smoke run: no peak memory)."""
    if not fresh:
        return trial(kind, files, cache, workers, batches)
    cmd = [sys.executable, __file__, "--trial", kind, "--cache", str(cache), "--workers", str(workers),
           "--batches", str(batches), "--files", *map(str, files)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def same_volumes(files: list[Path], tmp: Path) -> tuple[bool, float]:
    from medssl.data.cache import VolumeCache

    cache, transform, worst = VolumeCache(tmp / "equal"), monai_cached(), 0.0
    for f in files:
        ours = np.asarray(cache.get(f, preprocess_cfg()))
        theirs = np.asarray(transform({"image": str(f)})["image"])
        if ours.shape != theirs.shape:
            return False, float("inf")
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst < 1e-4, worst


def inputs(args: argparse.Namespace, tmp: Path) -> list[Path]:
    if not args.quick:
        ct = real_data_dir() / "ct"
        return [p for p in sorted(ct.glob("*.nii.gz")) if "label" not in p.name]
    from medssl.data.phantom_io import synth_cohort

    synth_cohort(tmp / "cohort", 2, fmt="nifti", seed=0, shape=(64, 64, 40), workers=1)
    return sorted(p for p in (tmp / "cohort" / "nifti").glob("*.nii.gz") if "label" not in p.name)


def race(args: argparse.Namespace) -> int:
    repeats = args.repeats or (1 if args.quick else 5)
    workers = 0 if args.quick else 2  # quick: no worker processes to start
    batches = 3 if args.quick else 16
    with tempfile.TemporaryDirectory(prefix="medssl-bench-feed-") as tmp_name:
        tmp = Path(tmp_name)
        files = inputs(args, tmp)
        equal, diff = same_volumes(files, tmp)
        rows: dict[str, list[dict]] = {k: [] for k in ("m_cold", "m_warm", "c", "p_cold", "p_warm")}
        for _ in range(repeats):
            for name in ("m", "p"):
                shutil.rmtree(tmp / name, ignore_errors=True)
            for key, kind, cache in (("m_cold", "medssl", "m"), ("c", "cachedataset", "c"),
                                     ("p_cold", "persistent", "p"), ("m_warm", "medssl", "m"),
                                     ("p_warm", "persistent", "p")):  # fmt: skip
                rows[key].append(_trial(kind, files, tmp / cache, workers, batches, fresh=not args.quick))
    common = {"workers": workers, "batches": batches, "crops_per_batch": BATCH, "volumes": len(files)}

    def fig(name: str, a: str, b: str, key: str, unit: str, **extra) -> None:
        x, y = [r[key] for r in rows[a]], [r[key] for r in rows[b]]
        emit(name, statistics.median(x), statistics.median(y), unit, ratios=[i / j for i, j in zip(x, y)],
             repeats=repeats, **common, **extra)  # fmt: skip

    fig("feed_cold_vs_cachedataset", "m_cold", "c", "total_s", "s", equal=equal, max_abs_diff=diff)
    fig("feed_cold_vs_persistent", "m_cold", "p_cold", "total_s", "s", equal=equal, max_abs_diff=diff)
    fig("feed_warm_vs_cachedataset", "m_warm", "c", "ms_per_crop", "ms/crop")
    fig("feed_warm_vs_persistent", "m_warm", "p_warm", "ms_per_crop", "ms/crop")
    if not args.quick:  # the smoke run's trials share one process: no memory figure
        fig("feed_peak_memory", "m_warm", "c", "peak_mib", "MiB", note="vs CacheDataset; main + largest worker")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    p.add_argument("--trial", choices=("medssl", "cachedataset", "persistent"), help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return run_trial(args) if args.trial else race(args)


if __name__ == "__main__":
    raise SystemExit(main())
