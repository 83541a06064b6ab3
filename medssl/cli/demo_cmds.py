"""``medssl demo``: the whole pipeline on built-in phantom data, in a few minutes on a CPU.

Each step is the same subcommand a user would type; the demo prints it before running it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from medssl.errors import EXIT_OK, MedsslError


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated phantoms (synth, index, pretrain, fine-tune, predict)",
        description="Generate a phantom cohort, index it, inspect and convert a scan, run a small "
        "label-efficiency sweep (pretraining with the recommended recipe, fine-tuning with and without it, "
        "the difference with its interval), predict on held-out scans (and the real DICOM sample when "
        "found), then print the command that opens the viewer on the results. Example: medssl demo --out demo_out",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything (default demo_out)")
    p.add_argument("--n", type=int, default=16, help="phantom subjects to generate (default 16)")
    p.add_argument("--real-data", type=Path, default=None, help="folder of the real sample scans (optional)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="sweep_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo's sweep config (finetune/demo_sweep.yaml), repeatable; "
                   "e.g. --set train.max_steps=50 for a quicker, weaker run")
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


def _difference_line(report: dict) -> str:
    """The sweep's pretrained-minus-scratch result as one honest sentence."""
    lines = []
    for n, d in sorted(report["difference_vs_scratch"].get("pretrained", {}).items(), key=lambda kv: int(kv[0])):
        verdict = "significant" if d["significant"] else "not significant"
        per_seed = ", ".join(f"{100 * v:+.1f}" for v in d["per_seed"])
        lines.append(f"pretrained - scratch at {n} labeled cases: {100 * d['mean']:+.1f} Dice points, 95 % interval "
                     f"[{100 * d['lo']:.1f}, {100 * d['hi']:.1f}] ({verdict}); seeds {d['seeds']} ({per_seed}), "
                     f"{d['n_cases']} test phantoms")
    return "\n   ".join(lines) or "no pretrained arm in the report"


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data, held = out / "phantoms", out / "heldout"
    real = args.real_data or _default_real_data()
    t0 = time.perf_counter()

    _step("synthesise a phantom cohort (NIfTI + DICOM twins)",
          ["data", "synth", "--out", str(data), "--n", str(args.n), "--format", "both", "--seed", str(args.seed)])
    _step("synthesise held-out phantoms",
          ["data", "synth", "--out", str(held), "--n", "3", "--format", "both", "--seed", str(args.seed + 1000)])
    _step("index the cohort (headers only)", ["data", "index", str(data), "--out", str(out / "manifest.jsonl")])
    _step("inspect a DICOM phantom", ["inspect", str(data / "dicom" / "phantom_000")])
    _step("convert it to NIfTI", ["convert", str(data / "dicom" / "phantom_000"), str(out / "converted" / "phantom_000.nii.gz")])
    sweep = out / "sweep"
    _step("pretrain (masked image modelling, the recommended recipe), then fine-tune scratch and pretrained "
          "on 4 labeled phantoms x 3 seeds, scored on the same test phantoms",
          ["sweep", "--config", _config("finetune/demo_sweep.yaml"), "--out", str(sweep), f"data.root={data}",
           f"sweep.pretrain_data={out / 'manifest.jsonl'}", *args.sweep_overrides])
    report = json.loads((sweep / "report.json").read_text())
    best = max((r for r in report["runs"] if r["arm"] == "pretrained"), key=lambda r: (r["n_labeled"], -r["seed"]))
    model = sweep / best["run"]  # the pretrained model with the most labeled cases, first seed
    _step("evaluate the pretrained model on the held-out phantoms",
          ["evaluate", "--model", str(model), "--data", str(held), "--out", str(out / "eval_pretrained.json")])
    inputs = [str(held / "nifti"), str(held / "dicom")]
    if real is not None:
        inputs.append(str(real / "dicom" / "head_ct_series"))
    _step("batch prediction (held-out phantoms" + (" + the real head CT, outside what the model was trained on)"
                                                   if real else ")"),
          ["predict", "--model", str(model), "--input", *inputs, "--output", str(out / "predictions"), "--no-progress"])

    print(f"\n== done in {time.perf_counter() - t0:.0f} s; everything is under {out}/")
    print(f"   {_difference_line(report)}")
    print("   (a demo-sized sweep; `medssl sweep --config configs/finetune/phantom_label_efficiency.yaml` measures it "
          "with 10 test phantoms and 5 seeds)")
    print(f"   sweep report: {sweep / 'report.md'}; which case went where: {sweep / 'splits.json'}")
    print(f"   batch results: {out / 'predictions' / 'results.csv'} (masks, DICOM SEG, volumes in mL, previews)")
    print(f"   pretraining: {sweep / 'pretrain' / 'metrics.jsonl'} (losses, per-stage effective rank)")
    print("\nOpen the viewer on these results:")
    print(f"   {sys.executable.rsplit('/', 1)[0]}/medssl viewer --data-dir {out} --results-dir {out / 'predictions'} "
          f"--models-dir {sweep / 'runs'}")
    return EXIT_OK
