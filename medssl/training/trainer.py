"""The one plain training loop shared by pretraining and fine-tuning.

    state = fit(task, batches, cfg, run_dir, config=resolved_config_dict, hooks=[...])

``task``: an nn.Module whose ``forward(batch)`` returns a dict with a scalar "loss" (what is
backpropagated) and any other scalar tensors (logged). ``batches(start)``: an iterable of
batches beginning at micro-batch number ``start`` (the data position a checkpoint stores);
tensors inside a batch (a dict, list or tensor) are moved to the device here. A re-run with
the same ``run_dir`` resumes from the newest checkpoint: model, optimizer, scheduler, scaler,
EMA, step, data position and every RNG state. A checkpoint that does not fit the model (another
``model`` config) is a ``CheckpointError``; with ``restart`` the run's checkpoints are set aside
and training starts from step 0."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from medssl.devices import amp_dtype
from medssl.errors import CheckpointError, MedsslError
from medssl.training.checkpoint import capture_rng, latest_checkpoint, restore_rng, save_checkpoint, set_aside_run
from medssl.training.checkpoint_checks import config_diff, keys_text, param_group_mismatch, state_dict_mismatch
from medssl.training.config import TrainConfig
from medssl.training.distributed import DistInfo, all_gather_objects, all_reduce_, barrier, setup_distributed
from medssl.training import tensorboard
from medssl.training.metrics import MetricsLogger
from medssl.training.optim import ModelEMA, build_optimizer, build_scheduler

log = logging.getLogger("medssl.training")

BatchSource = Callable[[int], Iterable[Any]]


@dataclass
class TrainState:
    """What hooks see after every optimizer step (on every rank; check ``info.is_main``)."""

    task: nn.Module  # unwrapped (no DDP / compile)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    info: DistInfo
    run_dir: Path
    amp_dtype: torch.dtype | None
    ema: ModelEMA | None = None
    step: int = 0  # optimizer steps done
    batch: Any = None  # the last micro-batch, on the device
    metrics: dict[str, float] = field(default_factory=dict)  # the last logged line
    bad_steps: int = 0  # non-finite steps skipped in total
    logger: MetricsLogger | None = None  # hooks may log extra values with it (rank 0)
    stop: bool = False  # a hook sets it to end training after this step (early stopping)
    tensorboard: Any = None  # rank 0's TensorBoardWriter (``.scalars(step, {"val_dice": ...})``), or None

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.info.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


Hook = Callable[[TrainState], None]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _batch_items(batch: Any) -> int:
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    return next((int(v.shape[0]) for v in values if isinstance(v, Tensor) and v.ndim), 1)


class _Window:
    """Sums over the steps since the last log line."""

    def __init__(self) -> None:
        self.losses: dict[str, Tensor] = {}
        self.steps = self.items = 0
        self.wait = self.elapsed = 0.0

    def add(self, parts: dict[str, Tensor], items: int, wait: float, elapsed: float) -> None:
        for k, v in parts.items():
            self.losses[k] = self.losses.get(k, 0.0) + v.float()
        self.steps += 1
        self.items += items
        self.wait += wait
        self.elapsed += elapsed

    def summary(self, info: DistInfo) -> dict[str, float]:
        keys = sorted(self.losses)
        vec = torch.stack([self.losses[k] for k in keys]) / (self.steps * info.world_size)
        vec = all_reduce_(vec).tolist()
        out = {k: float(v) for k, v in zip(keys, vec)}
        out["data_wait"] = self.wait / max(self.elapsed, 1e-9)
        out["it_s"] = self.steps / max(self.elapsed, 1e-9)
        out["items_s"] = self.items * info.world_size / max(self.elapsed, 1e-9)
        return out


def _misfit(state: TrainState, ckpt: dict[str, Any], path: Path, config: dict[str, Any]) -> CheckpointError | None:
    """Why the (well-formed) checkpoint at ``path`` cannot be restored into this run, or None."""
    model = state.task.state_dict()
    problem = (state_dict_mismatch(model, ckpt["model"]) or param_group_mismatch(state.optimizer, ckpt["optimizer"])
               or (state_dict_mismatch(model, ckpt["ema"]) if state.ema is not None and ckpt.get("ema") else None))
    if problem is None:
        return None
    changed = config_diff(ckpt["config"], config)
    why = f"; it was written with another config (changed: {keys_text(changed)})" if changed else ""
    return CheckpointError(f"{path}: {problem}{why}; resume with the run's original config, or pass --restart to "
                           "set its checkpoints aside and train from step 0", code="checkpoint_mismatch")  # fmt: skip


def _resume(state: TrainState, scaler: torch.amp.GradScaler, config: dict[str, Any],
            restart: bool, run_files: tuple[str, ...]) -> int:
    """Restore the newest readable checkpoint; returns the data position (0: a fresh start)."""
    found = latest_checkpoint(state.run_dir)
    if found is None:
        return 0
    path, ckpt = found
    if (err := _misfit(state, ckpt, path, config)) is not None:
        if not restart:
            raise err
        barrier()  # every rank has read it before rank 0 moves it
        if state.info.is_main:
            moved = set_aside_run(state.run_dir, run_files)
            log.warning("--restart: %s does not fit the model; set aside %s, training from step 0",
                        path.name, ", ".join(p.name for p in moved))  # fmt: skip
        barrier()
        return 0
    if ckpt["config"] != config and state.info.is_main:
        log.warning("resuming %s with a config that differs from the checkpoint's (%s)",
                    state.run_dir.name, keys_text(config_diff(ckpt["config"], config)))  # fmt: skip
    position = _restore(state, ckpt, scaler, path)
    if state.info.is_main:
        log.info("resuming from step %d", state.step)
    return position


def _restore(state: TrainState, ckpt: dict[str, Any], scaler: torch.amp.GradScaler, path: Path) -> int:
    parts: list[tuple[str, Any]] = [("model", state.task), ("optimizer", state.optimizer),
                                    ("scheduler", state.scheduler), ("scaler", scaler)]  # fmt: skip
    if state.ema is not None and ckpt.get("ema") is not None:
        parts.append(("ema", state.ema))
    for key, part in parts:
        try:
            part.load_state_dict(ckpt[key])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path}: its '{key}' state does not fit this run ({err.__class__.__name__}); "
                                  "resume with the run's original config, or pass --restart to set its "
                                  "checkpoints aside", code="checkpoint_mismatch") from err  # fmt: skip
    rngs = ckpt["rng"]
    if len(rngs) != state.info.world_size:
        log.warning("checkpoint was written by %d processes, now %d: RNG streams differ", len(rngs), state.info.world_size)
    restore_rng(rngs[state.info.rank % len(rngs)])
    state.step = int(ckpt["step"])
    state.bad_steps = int(ckpt.get("bad_steps", 0))
    state.stop = bool(ckpt.get("stopped", False))
    return int(ckpt["data_position"])


def _save(state: TrainState, scaler: torch.amp.GradScaler, position: int, config: dict[str, Any], keep: int) -> None:
    rngs = all_gather_objects(capture_rng(), state.info)
    if not state.info.is_main:
        return
    payload = {
        "config": config,
        "model": state.task.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "rng": rngs,
        "data_position": position,
        "bad_steps": state.bad_steps,
        "world_size": state.info.world_size,
        "stopped": state.stop,
    }
    path = save_checkpoint(state.run_dir, state.step, payload, keep=keep)
    log.debug("checkpoint %s", path.name)


def fit(
    task: nn.Module,
    batches: BatchSource,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    config: dict[str, Any],
    hooks: Iterable[Hook] = (),
    info: DistInfo | None = None,
    keep_checkpoints: int = 2,
    param_groups: list[dict] | None = None,
    restart: bool = False,
    run_files: tuple[str, ...] = (),
) -> TrainState:
    """Train ``task`` for ``cfg.max_steps`` optimizer steps (or resume and finish); see module doc.

    ``config``: the resolved config as plain data, stored in every checkpoint.
    ``param_groups``: optimizer groups (see ``optim.build_optimizer``: ``lr_mult``, ``weight_decay``).
    ``restart``: when the newest checkpoint does not fit ``task``, move the checkpoints,
    ``metrics.jsonl`` and ``run_files`` into ``checkpoints/unreadable/`` and start from step 0
    (otherwise: ``CheckpointError``, code "checkpoint_mismatch").
    Raises MedsslError(code "non_finite_loss") after ``cfg.max_bad_steps`` non-finite steps in a row."""
    info = info or setup_distributed(cfg.device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    task.to(info.device)
    amp = amp_dtype(info.device, cfg.amp)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp == torch.float16)
    optimizer = build_optimizer(task, cfg, info.device, param_groups)
    state = TrainState(task, optimizer, build_scheduler(optimizer, cfg), info, run_dir, amp)
    state.ema = ModelEMA(task, cfg.ema) if cfg.ema > 0 else None
    position = _resume(state, scaler, config, restart, run_files)
    if state.step >= cfg.max_steps or state.stop:  # finished, or stopped early by a hook
        return state
    if cfg.compile:  # in place, so state_dict keys stay unprefixed
        task.compile_parts() if hasattr(task, "compile_parts") else task.compile()
    model: nn.Module = task
    if info.distributed:
        model = DistributedDataParallel(task, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    metrics = MetricsLogger(run_dir, enabled=info.is_main, start_step=state.step, tensorboard=cfg.tensorboard,
                            parts_group=tensorboard.parts_group_for(task))  # fmt: skip
    state.tensorboard = metrics.writer
    state.logger = metrics
    hooks = [*hooks, *tensorboard.attach(metrics.writer, config, cfg.preview_every or cfg.checkpoint_every)]
    try:
        _loop(state, model, batches, cfg, scaler, position, config, list(hooks), metrics, keep_checkpoints)
    finally:
        metrics.close()
    return state


def _loop(state, model, batches, cfg, scaler, position, config, hooks, metrics, keep) -> None:
    from tqdm.auto import tqdm

    info, task, optimizer = state.info, state.task, state.optimizer
    params = [p for g in optimizer.param_groups for p in g["params"]]
    max_norm = cfg.clip if cfg.clip > 0 else math.inf
    it = iter(batches(position))
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not (info.is_main and cfg.progress), unit="step",
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    window, bad_in_row = _Window(), 0
    task.train()
    while state.step < cfg.max_steps:
        t0, wait, items = time.perf_counter(), 0.0, 0
        parts: dict[str, Tensor] = {}
        for micro in range(cfg.accum_steps):
            tw = time.perf_counter()
            state.batch = to_device(next(it), info.device)
            wait += time.perf_counter() - tw
            items += _batch_items(state.batch)
            sync = info.distributed and micro < cfg.accum_steps - 1
            with model.no_sync() if sync else contextlib.nullcontext():  # type: ignore[operator]
                with state.autocast():
                    out = model(state.batch)
                scaler.scale(out["loss"] / cfg.accum_steps).backward()
            for k, v in out.items():
                if isinstance(v, Tensor) and v.ndim == 0:
                    parts[k] = parts.get(k, 0.0) + v.detach().float() / cfg.accum_steps
        position += cfg.accum_steps
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        ok = torch.isfinite(parts["loss"]) & (torch.isfinite(grad_norm) | torch.tensor(scaler.is_enabled()))
        ok = bool(all_reduce_(ok.to(torch.int32).reshape(1), "min").item())
        if ok:
            scaler.step(optimizer)
            scaler.update()
            if state.ema is not None:
                state.ema.update(task)
            bad_in_row = 0
        else:
            scaler.update()  # closes this step's unscale_(); lowers the fp16 loss scale
            state.bad_steps += 1
            bad_in_row += 1
            log.warning("non-finite loss at step %d: update skipped (%d in a row)", state.step + 1, bad_in_row)
            if bad_in_row >= cfg.max_bad_steps:
                raise MedsslError(
                    f"loss was not finite for {bad_in_row} steps in a row (step {state.step + 1}); "
                    "lower train.lr, enable train.clip or check the data",
                    code="non_finite_loss",
                )
        optimizer.zero_grad(set_to_none=True)
        state.scheduler.step()
        state.step += 1
        if ok:
            window.add(parts, items, wait, time.perf_counter() - t0)
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            if window.steps:
                state.metrics = {**window.summary(info), "lr": optimizer.param_groups[0]["lr"]}
                metrics.log(state.step, state.metrics)
                bar.set_postfix(loss=f"{state.metrics['loss']:.4f}")
            window = _Window()
        for hook in hooks:
            hook(state)
        if info.distributed:  # every rank stops together, whoever's hook asked
            state.stop = bool(all_reduce_(torch.tensor([int(state.stop)], device=info.device), "max").item())
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps or state.stop:
            _save(state, scaler, position, config, keep)
        if state.stop:
            break
    bar.close()
    del it
