"""``medssl demo``: the whole pipeline on built-in phantom data, in a few minutes on a CPU.

Each step is the same subcommand a user would type; the demo prints it before running it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import yaml

from medssl.errors import EXIT_OK, MedsslError


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated phantoms (synth, index, pretrain, fine-tune, predict)",
        description="Generate a phantom cohort, index it, inspect and convert a scan, pretrain briefly, "
        "fine-tune with and without pretraining, predict on held-out scans (and the real DICOM sample "
        "when found), then print the command that opens the viewer on the results.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything (default demo_out)")
    p.add_argument("--n", type=int, default=16, help="phantom subjects to generate (default 16)")
    p.add_argument("--real-data", type=Path, default=None, help="folder of the real sample scans (optional)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _step(title: str, argv: list[str]) -> None:
    from medssl.cli import main

    print(f"\n== {title}\n$ medssl {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    if code not in (0, 6):  # 6: a batch step where some inputs failed
        raise MedsslError(f"demo step '{title}' failed with exit status {code}")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def _default_real_data() -> Path | None:
    """The real sample scans beside the repo (``../shared/data/real``), when present."""
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        cand = base.parent / "shared" / "data" / "real"
        if (cand / "dicom" / "head_ct_series").is_dir():
            return cand
    return None


def _config(name: str) -> str:
    """configs/NAME from the working folder or the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "configs" / name).is_file():
            return str(base / "configs" / name)
    raise MedsslError(f"config {name} not found: run the demo from the medssl checkout")


def _dice(report: Path) -> float:
    data = json.loads(report.read_text())
    return float(data["summary"]["dice"]["mean"])


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data, held = out / "phantoms", out / "heldout"
    real = args.real_data or _default_real_data()
    quiet = ["train.progress=false", "train.tensorboard=false"]
    finetune_cfg = _config("finetune/demo_seg.yaml")
    # Pretrain on intensities normalised exactly as fine-tuning will see them.
    preprocess = yaml.safe_load(Path(finetune_cfg).read_text())["data"]["preprocessing"]
    t0 = time.perf_counter()

    _step("synthesise a phantom cohort (NIfTI + DICOM twins)",
          ["data", "synth", "--out", str(data), "--n", str(args.n), "--format", "both", "--seed", str(args.seed)])
    _step("synthesise held-out phantoms",
          ["data", "synth", "--out", str(held), "--n", "3", "--format", "both", "--seed", str(args.seed + 1000)])
    _step("index the cohort (headers only)", ["data", "index", str(data), "--out", str(out / "manifest.jsonl")])
    _step("inspect a DICOM phantom", ["inspect", str(data / "dicom" / "phantom_000")])
    _step("convert it to NIfTI", ["convert", str(data / "dicom" / "phantom_000"), str(out / "converted" / "phantom_000.nii.gz")])
    _step("self-supervised pretraining (inpainting + contrastive)",
          ["pretrain", "--config", _config("pretrain/smoke.yaml"), "--out", str(out / "pretrain"),
           f"data.manifest={out / 'manifest.jsonl'}", f"data.preprocess={json.dumps(preprocess)}", "train.max_steps=150", "train.preview_every=50", *quiet])
    _step("export the encoder", ["export-encoder", str(out / "pretrain"), "--out", str(out / "encoder.pt")])
    models = out / "models"
    for arm, extra in (("scratch", []), ("pretrained", ["--pretrained", str(out / "encoder.pt")])):
        _step(f"fine-tune on 4 labeled phantoms ({arm})",
              ["finetune", "--config", finetune_cfg, "--out", str(models / arm),
               f"data.root={data}", *extra, *quiet])
        _step(f"evaluate {arm} on held-out phantoms",
              ["evaluate", "--model", str(models / arm), "--data", str(held), "--out", str(out / f"eval_{arm}.json")])
    inputs = [str(held / "nifti"), str(held / "dicom")]
    if real is not None:
        inputs.append(str(real / "dicom" / "head_ct_series"))
    _step("batch prediction (held-out phantoms" + (" + the real DICOM sample)" if real else ")"),
          ["predict", "--model", str(models / "pretrained"), "--input", *inputs,
           "--output", str(out / "predictions"), "--no-progress"])

    scratch, pretrained = _dice(out / "eval_scratch.json"), _dice(out / "eval_pretrained.json")
    print(f"\n== done in {time.perf_counter() - t0:.0f} s; everything is under {out}/")
    print(f"   kidney Dice on 3 held-out phantoms, 4 labeled cases: scratch {scratch:.3f}, "
          f"pretrained {pretrained:.3f} ({100 * (pretrained - scratch):+.1f} points; one seed, a smoke-scale "
          "run: `medssl sweep` measures this with seeds and confidence intervals)")
    print(f"   batch results: {out / 'predictions' / 'results.csv'} (masks, DICOM SEG, volumes in mL, previews)")
    print(f"   pretraining: {out / 'pretrain' / 'metrics.jsonl'}, previews in {out / 'pretrain' / 'previews'}")
    print("\nOpen the viewer on these results:")
    print(f"   {sys.executable.rsplit('/', 1)[0]}/medssl viewer --data-dir {out} --results-dir {out / 'predictions'} "
          f"--models-dir {models}")
    return EXIT_OK
