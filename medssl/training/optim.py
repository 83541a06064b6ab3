"""AdamW (fused on CUDA) with linear warm-up + cosine decay, and an EMA of the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from medssl.training.config import TrainConfig


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, device: torch.device, param_groups: list[dict] | None = None
) -> torch.optim.AdamW:
    """AdamW, fused on CUDA. Default groups: biases and norm weights (1-D) get no weight decay.

    ``param_groups``: your own groups instead, e.g. per-stage learning rates:
    ``[{"params": [...], "lr_mult": 0.1}, {"params": [...], "weight_decay": 0.0}]``;
    ``lr_mult`` scales ``cfg.lr``, a missing ``weight_decay`` is ``cfg.weight_decay``;
    ``hold_steps``: the group's learning rate is 0 for that many steps (``build_scheduler``)."""
    if param_groups is None:
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        param_groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = []
    for g in param_groups:
        g = dict(g)
        g["lr"] = cfg.lr * float(g.pop("lr_mult", 1.0))
        g.setdefault("weight_decay", cfg.weight_decay)
        g["params"] = [p for p in g["params"] if p.requires_grad]
        groups.append(g)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda")


def warmup_cosine(step: int, cfg: TrainConfig) -> float:
    """Learning-rate factor at optimizer step ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def held_warmup_cosine(step: int, cfg: TrainConfig, hold: int) -> float:
    """``warmup_cosine``, 0 for the first ``hold`` steps, then warmed up again over
    ``cfg.warmup_steps`` (a group that joins late starts gently, as the others did)."""
    if step < hold:
        return 0.0
    rewarm = min(1.0, (step - hold + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return warmup_cosine(step, cfg) * rewarm


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    holds = [int(g.get("hold_steps", 0)) for g in optimizer.param_groups]
    if not any(holds):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda s, h=h: held_warmup_cosine(s, cfg, h) for h in holds])


class ModelEMA:
    """Exponential moving average of a model's floating-point state (kept on its device)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)
