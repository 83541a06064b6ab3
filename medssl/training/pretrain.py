"""Pretraining end to end: config -> data feed -> SSL task -> the shared trainer; and
exporting the pretrained encoder alone."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.artifacts.model import atomic_torch_save
from medssl.config import config_to_dict, save_config
from medssl.data.feed import CropSampler, list_volumes, make_batches
from medssl.errors import CheckpointError
from medssl.models.encoders import build_encoder
from medssl.tasks.ssl import SSLTask
from medssl.training.checkpoint import checkpoint_paths, load_latest_checkpoint
from medssl.training.collapse_monitor import CollapseMonitor
from medssl.training.distributed import setup_distributed, teardown_distributed
from medssl.training.pretrain_config import PretrainConfig
from medssl.training.preview import preview_hook
from medssl.training.trainer import TrainState, fit

log = logging.getLogger("medssl.training")

ENCODER_FORMAT = "medssl.encoder"
ENCODER_FORMAT_VERSION = 1
UNET_PREFIX = "inpaint.decoder.network."


def seed_everything(seed: int, rank: int = 0) -> None:
    """Same torch seed on every rank (identical initial weights), per-rank Python/NumPy seeds."""
    torch.manual_seed(seed)
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)


def build_task(cfg: PretrainConfig) -> SSLTask:
    return SSLTask(cfg.model.encoder.spec(), cfg.tasks, cfg.data.side)


def run_pretrain(cfg: PretrainConfig, out: str | Path, restart: bool = False) -> TrainState:
    """Train (or resume) into ``out``: config.yaml, metrics.jsonl, tb/, previews/, checkpoints/.
    ``restart``: checkpoints that do not fit the configured model are set aside (``fit``)."""
    out = Path(out)
    info = setup_distributed(cfg.train.device)
    try:
        seed_everything(cfg.seed, info.rank)
        resuming = bool(checkpoint_paths(out))  # keep the run's config.yaml until the resume has worked
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resuming:
                save_config(cfg, out / "config.yaml")
        volumes = list_volumes(cfg.data)
        region = cfg.data.side + cfg.tasks.views.max_shift
        cache_dir = cfg.data.cache_dir or out / "cache"
        sampler = CropSampler(volumes, cfg.data, cache_dir, region, cfg.seed, info.rank, info.world_size)
        t0 = time.perf_counter()
        sampler.prepare()  # drops (and logs) unreadable scans
        if info.is_main:
            log.info("%d scans cached in %.1f s (%s)", len(sampler.volumes), time.perf_counter() - t0, cache_dir)
        task = build_task(cfg)
        hooks = [preview_hook(cfg.train.preview_every)] if cfg.train.preview_every else []
        if cfg.monitor.rank_every and info.is_main:
            monitor = CollapseMonitor(probe_batch(sampler.volumes, cfg, cache_dir), cfg.monitor.rank_every, out)
            step0 = monitor.start(task.encoder)
            log.info("encoder effective rank at random init: %s", " / ".join(f"{s['rank']:.2f}" for s in step0))
            hooks.append(monitor)
        batches = make_batches(sampler, cfg.data, pin_memory=info.device.type == "cuda")
        state = fit(task, batches, cfg.train, out, config=config_to_dict(cfg), hooks=hooks, info=info,
                    restart=restart)
        if resuming and info.is_main:
            save_config(cfg, out / "config.yaml")
        if info.is_main and state.metrics:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in state.metrics.items())
            log.info("pretraining finished at step %d: %s", state.step, shown)
        return state
    finally:
        teardown_distributed()


def probe_batch(volumes, cfg: PretrainConfig, cache_dir: Path) -> torch.Tensor:
    """The fixed probe batch of the collapse monitor: (N, 1, S, S, S) crops drawn with their
    own seed (never a training batch) from ``volumes``, the readable scans already cached."""
    probe_cfg = cfg.data.model_copy(update={"batch_size": cfg.monitor.probe_crops, "crops_per_volume": 1})
    return CropSampler(volumes, probe_cfg, cache_dir, cfg.data.side, cfg.seed + 7919).batch(0)["image"]


def export_encoder(run_dir: str | Path, out: str | Path, *, ema: bool = False) -> dict[str, Any]:
    """Write the encoder of the newest checkpoint in ``run_dir`` to ``out`` (atomic):
    {"format": "medssl.encoder", "format_version": 1, "encoder": {"name", "in_channels", **kwargs},
     "state_dict", "config", "step"}. Loads back with ``torch.load(out, weights_only=True)``."""
    run_dir = Path(run_dir)
    ckpt = load_latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"no readable checkpoint in {run_dir}/checkpoints (has pretraining run there?)")
    cfg = PretrainConfig.model_validate(ckpt["config"])
    weights = ckpt["model"]
    if ema:
        if ckpt.get("ema") is None:
            raise CheckpointError(f"{run_dir.name}: the run kept no EMA weights (train.ema was 0)")
        weights = ckpt["ema"]
    state = {k[len("encoder.") :]: v for k, v in weights.items() if k.startswith("encoder.")}
    spec = {"in_channels": 1, **cfg.model.encoder.spec()}
    build_encoder(spec).load_state_dict(state, strict=True)  # fails loudly if the spec is off
    payload = {
        "format": ENCODER_FORMAT,
        "format_version": ENCODER_FORMAT_VERSION,
        "encoder": spec,
        "state_dict": state,
        "config": ckpt["config"],
        "step": int(ckpt["step"]),
        "ema": ema,
    }
    unet = {k[len(UNET_PREFIX):]: v for k, v in weights.items() if k.startswith(UNET_PREFIX)}
    if unet:  # pretrained through the U-Net: its decoder can transfer too (model.transfer)
        payload["unet"] = {"state_dict": unet}
    collapse = run_dir / "collapse.json"
    if collapse.is_file():
        payload["collapse"] = json.loads(collapse.read_text())
    atomic_torch_save(payload, out)
    return payload
