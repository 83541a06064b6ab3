"""``metrics.jsonl`` (one JSON line per logged step) and TensorBoard (grouped scalars, see
``medssl.training.tensorboard``), rank 0 only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medssl.training.tensorboard import TensorBoardWriter


class MetricsLogger:
    """Append-only metrics; on resume, lines past the resumed step are dropped first so a
    killed-and-resumed run reads like an uninterrupted one."""

    def __init__(self, run_dir: Path, *, enabled: bool, start_step: int, tensorboard: bool,
                 parts_group: str = "train"):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        self._truncate_after(start_step)
        if tensorboard:
            self.writer = TensorBoardWriter(Path(run_dir) / "tb", start_step=start_step, parts_group=parts_group)

    def _truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        tmp.replace(self.path)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **values}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            self.writer.scalars(step, values)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
