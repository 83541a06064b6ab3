"""A small fine-tuning loop for runs that need per-group learning rates (layer-wise LR
decay, ``train.encoder_lr_mult``), which the shared trainer (``medssl.training.trainer.fit``)
does not take yet. Sample a batch, step, validate every ``val_every`` steps, keep the best
weights; finite-loss check, metrics.jsonl, bf16 autocast on CUDA. Not resumable and not
DDP: everything else goes through the shared trainer."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from medssl.errors import MedsslError

log = logging.getLogger("medssl.finetune")
MAX_NONFINITE_IN_A_ROW = 5


class NonFiniteLossError(MedsslError):
    code = "nonfinite_loss"


@dataclass
class LoopResult:
    best_metric: float = float("-inf")
    best_step: int = 0
    best_state: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0
    skipped_nonfinite: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def run_loop(
    task: nn.Module,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    next_batch: Callable[[int], dict[str, Tensor]],
    validate: Callable[[nn.Module], float],
    *,
    max_steps: int,
    val_every: int,
    warmup_steps: int = 0,
    device: torch.device,
    amp: bool = False,
    log_every: int = 10,
    metrics_path: Path | None = None,
) -> LoopResult:
    """Train ``task`` (whose forward returns {"loss", ...}) and keep ``network``'s best state."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, max_steps))
    use_amp = amp and device.type == "cuda"
    res = LoopResult()
    start = time.perf_counter()
    nonfinite = 0
    fh = metrics_path.open("a") if metrics_path else None
    try:
        for step in range(1, max_steps + 1):
            task.train()
            batch = {k: v.to(device, non_blocking=True) for k, v in next_batch(step).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = task(batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                nonfinite += 1
                res.skipped_nonfinite += 1
                optimizer.zero_grad(set_to_none=True)
                if nonfinite >= MAX_NONFINITE_IN_A_ROW:
                    raise NonFiniteLossError(f"loss not finite for {nonfinite} steps in a row at step {step}; "
                                             "lower train.lr or check the data")
                continue
            nonfinite = 0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            row = {"step": step, **{k: round(float(v.detach()), 5) for k, v in out.items()},
                   "lr": optimizer.param_groups[0]["lr"]}
            if step % val_every == 0 or step == max_steps:
                metric = validate(network)
                row["val_metric"] = round(metric, 5)
                if metric > res.best_metric or not res.best_state:
                    res.best_metric, res.best_step = metric, step
                    res.best_state = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
            if step % log_every == 0 or "val_metric" in row:
                log.info("step %d loss %.4f%s", step, row["loss"],
                         f" val {row['val_metric']:.4f}" if "val_metric" in row else "")
                res.history.append(row)
                if fh:
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
            res.steps = step
    finally:
        if fh:
            fh.close()
    res.seconds = time.perf_counter() - start
    return res
