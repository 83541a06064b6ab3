"""Collapse monitoring during pretraining: per-stage effective rank and feature spread of the
encoder on one fixed probe batch, at step 0 (random init) and every ``train.rank_every`` steps.

Values go to metrics.jsonl / TensorBoard as ``ssl/rank_<stage>`` and ``ssl/std_<stage>``;
the step-0 values are kept in ``RUN/collapse.json`` (so a resumed run compares with the
same baseline) and the latest with them. A stage whose rank falls below its step-0 value
is logged as a warning once per stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from medssl.atomic import atomic_path
from medssl.models.collapse import collapsed_stages, stage_stats

log = logging.getLogger("medssl.training")


def flat_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, s in enumerate(stats):
        out[f"ssl/rank_{i}"] = round(s["rank"], 4)
        out[f"ssl/std_{i}"] = round(s["std"], 5)
    return out


class CollapseMonitor:
    """A trainer hook (``__call__(state)``); ``start(encoder)`` records step 0 before training."""

    def __init__(self, probe: Tensor, every: int, run_dir: Path) -> None:
        self.probe = probe
        self.every = every
        self.path = Path(run_dir) / "collapse.json"
        self.record: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.warned: set[int] = set()

    def start(self, encoder: torch.nn.Module) -> list[dict[str, float]]:
        if "step0" not in self.record:
            self.record = {"step0": self._measure(encoder), "history": []}
            self._write()
        return self.record["step0"]

    def _measure(self, encoder: torch.nn.Module) -> list[dict[str, float]]:
        device = next(encoder.parameters()).device
        return stage_stats(encoder, self.probe.to(device))

    def _write(self) -> None:
        with atomic_path(self.path, ".json") as tmp:
            tmp.write_text(json.dumps(self.record, indent=1))

    def __call__(self, state) -> None:
        if not state.info.is_main or state.step % self.every:
            return
        now = self._measure(state.task.encoder)
        self.record["latest"] = {"step": state.step, "stages": now}
        self.record.setdefault("history", []).append({"step": state.step, "ranks": [s["rank"] for s in now]})
        self._write()
        if state.logger is not None:
            state.logger.log(state.step, flat_stats(now))
        for i in collapsed_stages(now, self.record["step0"]):
            if i not in self.warned:
                self.warned.add(i)
                log.warning("encoder stage %d is collapsing: effective rank %.2f at step %d < %.2f at random init",
                            i, now[i]["rank"], state.step, self.record["step0"][i]["rank"])
