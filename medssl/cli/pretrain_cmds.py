"""Subcommands: ``medssl pretrain`` (self-supervised pretraining, resumable, torchrun-ready)
and ``medssl export-encoder`` (the pretrained encoder alone)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from medssl.errors import EXIT_OK

log = logging.getLogger("medssl")


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of a 3D encoder on unlabeled scans",
        description="Pretrain an encoder with masked inpainting + contrastive (+ rotation) tasks. "
        "Re-running the same command resumes from the last checkpoint in --out. "
        "Multi-GPU: torchrun --nproc_per_node N -m medssl pretrain ...",
    )
    p.add_argument("--config", required=True, type=Path, help="YAML config (see configs/pretrain/)")
    p.add_argument("--out", required=True, type=Path, help="run folder (created; resumed when it holds checkpoints)")
    p.add_argument("--restart", action="store_true",
                   help="when no checkpoint in --out can be read, or the newest does not fit the configured model, "
                   "set them aside (checkpoints/unreadable/) and train from step 0 (default: fail with exit 5 "
                   "naming the files)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=40")
    p.set_defaults(func=run_pretrain_cmd)

    e = sub.add_parser(
        "export-encoder",
        help="write the pretrained encoder of a run (state dict + config) for fine-tuning",
        description="Reads the newest checkpoint of RUN and writes {format: medssl.encoder, encoder: "
        "{name, ...}, state_dict, config}; loads with torch.load(weights_only=True).",
    )
    e.add_argument("run", type=Path, help="pretraining run folder")
    e.add_argument("--out", required=True, type=Path, help="output file, e.g. encoder.pt")
    e.add_argument("--ema", action="store_true", help="export the EMA weights (needs train.ema > 0)")
    e.set_defaults(func=run_export_cmd)


def run_pretrain_cmd(args: argparse.Namespace) -> int:
    from medssl.config import load_config
    from medssl.training.checkpoint import run_folder_writes, set_aside_unreadable
    from medssl.training.pretrain import run_pretrain
    from medssl.training.pretrain_config import PretrainConfig

    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    with run_folder_writes(args.out):
        if args.restart:
            set_aside_unreadable(args.out)
        state = run_pretrain(cfg, args.out, restart=args.restart)
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("run folder: %s (step %d)", args.out, state.step)
    return EXIT_OK


def run_export_cmd(args: argparse.Namespace) -> int:
    from medssl.training.pretrain import export_encoder

    payload = export_encoder(args.run, args.out, ema=args.ema)
    n = sum(int(t.numel()) for t in payload["state_dict"].values())
    log.info("wrote encoder '%s' (%d tensors, %.2f M parameters, step %d) to %s",
             payload["encoder"]["name"], len(payload["state_dict"]), n / 1e6, payload["step"], args.out)
    return EXIT_OK
