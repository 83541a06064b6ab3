"""Subcommands: ``finetune``, ``evaluate``, ``sweep``, ``export-bundle``, ``probe`` and
``weights inspect``. Heavy imports happen inside each ``run`` so ``medssl --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from medssl.errors import EXIT_CHECKPOINT, EXIT_OK

log = logging.getLogger("medssl")


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a segmentation or classification model on labeled scans",
                       description="Train from a config; writes RUN/model.pt (model artifact), config.yaml, "
                       "metrics.jsonl, summary.json. Re-running with the same --out resumes.")
    p.add_argument("--config", required=True, type=Path, help="YAML config (see configs/finetune/)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--pretrained", default=None, help="encoder weights: exported encoder, pretrain run, "
                   "SwinUNETR SSL release file, or a state dict")
    p.add_argument("--export-bundle", type=Path, default=None, metavar="DIR", help="also write a MONAI bundle")
    p.add_argument("--restart", action="store_true",
                   help="set unreadable checkpoints / best.pt, or ones that do not fit the configured model, aside "
                   "(checkpoints/unreadable/) and go on, from step 0 when no checkpoint is left (default: fail "
                   "with exit 5 naming the files)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. data.root=D")
    p.set_defaults(func=run_finetune_cmd)

    e = sub.add_parser("evaluate", help="score a model artifact on labeled data (Dice, HD95, surface Dice / AUC...)")
    e.add_argument("--model", required=True, type=Path, help="model.pt or a run folder holding one")
    e.add_argument("--data", required=True, help="dataset.json, CSV, folder of image/label pairs, or one image "
                   "(its label next to it as NAME_label.nii.gz)")
    e.add_argument("--out", type=Path, default=None, help="write the full report JSON here")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=run_evaluate_cmd)

    s = sub.add_parser("sweep", help="label-efficiency sweep: labeled cases x seeds x scratch/pretrained",
                       description="Writes OUT/report.json, report.md, plot.png and OUT/runs/*; resumable.")
    s.add_argument("--config", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    s.set_defaults(func=run_sweep_cmd)

    b = sub.add_parser("export-bundle", help="write a model artifact as a MONAI bundle folder")
    b.add_argument("run", type=Path, help="model.pt or run folder")
    b.add_argument("--out", required=True, type=Path)
    b.set_defaults(func=run_export_bundle_cmd)

    w = sub.add_parser("weights", help="pretrained weight files")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=sub._parser_class)
    wsub.required = True
    i = wsub.add_parser("inspect", help="report how a weights file would load into an encoder",
                        description="Prints loaded/total tensors, missing, unexpected and shape-mismatched keys; "
                        "exits 5 when fewer than --min-fraction of the encoder's tensors would load.")
    i.add_argument("file", type=Path)
    i.add_argument("--encoder", default=None, help="encoder name (swin, cnn); default: the spec stored in an "
                   "exported encoder file, else swin")
    i.add_argument("--feature-size", type=int, default=None, help="swin feature size (default 48)")
    i.add_argument("--in-channels", type=int, default=None, help="input channels (default 1)")
    i.add_argument("--set", dest="kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="other encoder arguments, e.g. --set channels=[8,16,32,64]")
    i.add_argument("--min-fraction", type=float, default=0.9)
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.set_defaults(func=run_inspect_cmd)

    pr = sub.add_parser("probe", help="frozen-feature probe: score an encoder checkpoint without fine-tuning it",
                        description="--kind segmentation (default for segmentation configs): a linear head on the "
                        "encoder's multi-scale features, trained on --n-train labeled cases, Dice on the config's "
                        "test cases, next to the same encoder at random init. --kind classification: kNN and "
                        "logistic regression on pooled features, balanced accuracy by cross-validation.")
    pr.add_argument("--config", required=True, type=Path, help="a fine-tune config (data, model.encoder)")
    pr.add_argument("--pretrained", default=None, help="encoder weights; omitted: random init baseline")
    pr.add_argument("--kind", choices=("auto", "segmentation", "classification"), default="auto")
    pr.add_argument("--n-train", type=int, default=5, help="segmentation: labeled cases for the head (default 5)")
    pr.add_argument("--json", action="store_true")
    pr.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    pr.set_defaults(func=run_probe_cmd)


def run_finetune_cmd(args: argparse.Namespace) -> int:
    from medssl.config import load_config
    from medssl.training.checkpoint import run_folder_writes, set_aside_unreadable, set_aside_unreadable_best
    from medssl.training.finetune_config import FinetuneConfig
    from medssl.training.finetune_run import run_finetune

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    with run_folder_writes(args.out):
        if args.restart:
            set_aside_unreadable(args.out, extra=("best.pt", "val.jsonl"))
            set_aside_unreadable_best(args.out)
        res = run_finetune(cfg, args.out, pretrained=args.pretrained, restart=args.restart)
    line = f"{args.out}/model.pt: best validation {res.metric_name} {res.best_metric:.4f} at step {res.best_step}"
    if res.test:
        line += f"; test {res.metric_name} {_headline(res.test['summary'], res.metric_name)}"
    if res.load_report:
        line += f"; pretrained {res.load_report['loaded']}/{res.load_report['total']} encoder tensors loaded"
    print(line)
    if args.export_bundle:
        from medssl.artifacts.bundle import export_bundle

        export_bundle(args.out, args.export_bundle)
        print(f"MONAI bundle written to {args.export_bundle}")
    return EXIT_OK


def _headline(summary: dict, metric: str) -> str:
    v = summary.get(metric)
    if isinstance(v, dict):
        return f"{v['mean']:.4f} [95% CI {v['lo']:.4f}, {v['hi']:.4f}] over {v['n']} cases"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def run_evaluate_cmd(args: argparse.Namespace) -> int:
    from medssl.evaluation.evaluate import evaluate_artifact

    report = evaluate_artifact(args.model, args.data, device=args.device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    metric = report["metric"]
    print(f"{report['n_cases']} cases: {metric} {_headline(report['summary'], metric)}")
    if "dice_per_class" in report["summary"]:
        for name, ci in report["summary"]["dice_per_class"].items():
            print(f"  {name}: dice {ci['mean']:.4f}" if ci["n"] else f"  {name}: absent")
    return EXIT_OK


def run_sweep_cmd(args: argparse.Namespace) -> int:
    from medssl.config import load_config
    from medssl.evaluation.report import write_markdown  # noqa: F401  (fail early if matplotlib is missing)
    from medssl.evaluation.sweep import run_sweep
    from medssl.training.finetune_config import SweepConfig

    cfg = load_config(SweepConfig, args.config, args.overrides)
    pc = cfg.sweep.pretrain_config
    if pc and not Path(pc).is_file():  # relative to the configs/ folder the sweep config sits in
        here = args.config.resolve()
        found = next((c for c in (here.parent / pc, here.parents[1] / pc, here.parents[2] / pc) if c.is_file()), None)
        if found is not None:
            cfg.sweep.pretrain_config = str(found)
    run_sweep(cfg, args.out)
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'plot.png'}")
    return EXIT_OK


def run_export_bundle_cmd(args: argparse.Namespace) -> int:
    from medssl.artifacts.bundle import export_bundle

    export_bundle(args.run, args.out)
    print(f"MONAI bundle written to {args.out}")
    return EXIT_OK


def run_inspect_cmd(args: argparse.Namespace) -> int:
    from medssl.artifacts.weights import exported_encoder_spec, plan_load, read_weights
    from medssl.config import parse_override
    from medssl.models import ENCODERS

    # an exported encoder describes itself; otherwise --encoder (default swin)
    spec = (exported_encoder_spec(args.file) if args.encoder is None else None) or {"name": args.encoder or "swin"}
    name = spec.pop("name")
    kwargs = {"in_channels": 1, **spec}
    if args.in_channels is not None:
        kwargs["in_channels"] = args.in_channels
    if args.feature_size is not None:
        kwargs["feature_size"] = args.feature_size
    elif name == "swin":
        kwargs.setdefault("feature_size", 48)
    for text in args.kwargs:
        path, value = parse_override(text)
        kwargs[".".join(path)] = value
    encoder = ENCODERS.build(name, **kwargs)
    sd, fmt = read_weights(args.file)
    report, _ = plan_load(encoder, sd, fmt)
    ok = report.total > 0 and report.fraction >= args.min_fraction
    if args.json:
        print(json.dumps({**report.to_dict(), "ok": ok, "min_fraction": args.min_fraction,
                          "encoder": {"name": name, **kwargs}}, indent=1))
    else:
        print(f"{args.file.name}: {report.summary()}")
        for title, items in (("missing", report.missing), ("unexpected", report.unexpected),
                             ("shape-mismatched", [f"{m['key']} {m['source']} -> {m['target']}" for m in
                                                   report.mismatched]), ("adapted", report.adapted)):
            if items:
                print(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
    if not ok:
        print(f"medssl: error [checkpoint]: {args.file.name}: only {report.loaded} of {report.total} encoder tensors "
              f"would load ({100 * report.fraction:.1f}% < {100 * args.min_fraction:.0f}%); "
              "check --encoder, --feature-size, --in-channels", file=sys.stderr)
        return EXIT_CHECKPOINT
    return EXIT_OK


def run_probe_cmd(args: argparse.Namespace) -> int:
    from medssl.config import load_config
    from medssl.evaluation.probe import run_probe
    from medssl.training.finetune_config import FinetuneConfig

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    kind = cfg.task if args.kind == "auto" else args.kind
    if kind == "segmentation":
        from medssl.evaluation.probe import run_segmentation_probe

        res = run_segmentation_probe(cfg, args.pretrained, n_train=args.n_train)
        if args.json:
            print(json.dumps({k: v for k, v in res.items() if k != "per_case"}, indent=1))
        else:
            shown = ", ".join(f"{name} {100 * r['mean_dice']:.1f}" for name, r in res["encoders"].items())
            print(f"segmentation probe ({res['n_train']} labeled cases, {res['n_test']} test cases): "
                  f"mean Dice x100: {shown}")
        return EXIT_OK
    res = run_probe(cfg, args.pretrained)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"probe on {res['n_cases']} cases, {res['feature_dim']}-d features: "
              f"kNN balanced accuracy {res['knn_balanced_accuracy']:.3f}, "
              f"logistic regression {res['logreg_balanced_accuracy']:.3f} ({res['folds']}-fold CV)")
    return EXIT_OK
