"""TensorBoard for training runs (``RUN/tb``, rank 0): grouped scalars, image previews, hparams.

Tags are grouped so TensorBoard shows one section each:

- ``train/``: the backpropagated ``loss``, ``lr``, throughput (``it_s``, ``items_s``,
  ``data_wait``), and a fine-tune task's loss parts;
- ``ssl/``: a pretext task's named losses (``contrastive``, ``rotation``, ``inpaint_l1``...);
- ``val/``: validation metrics (keys written ``val_NAME`` or ``val/NAME``);
- ``images/``: mid axial slices of the task's ``preview(batch)`` volumes (input, masked view,
  reconstruction), scaled to [0, 1].

Hyperparameters are the resolved config's scalar leaves (dotted keys), written once per
(re)start into the run's own folder, so TensorBoard's HPARAMS tab lists the run with its
``train/loss`` and ``val/`` metrics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from medssl.tasks.ssl import SSLTask

TRAIN_KEYS = frozenset({"loss", "lr", "grad_norm", "data_wait", "it_s", "items_s"})
HPARAM_TYPES = (bool, int, float, str)


def tag_for(key: str, parts_group: str = "train") -> str:
    """``loss`` -> ``train/loss``; ``val_dice`` -> ``val/dice``; task parts -> ``{parts_group}/key``."""
    if "/" in key:
        return key
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    return f"train/{key}" if key in TRAIN_KEYS else f"{parts_group}/{key}"


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Scalar leaves of a nested config as ``{"train.lr": 1e-4, ...}``; short lists as text."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_hparams(value, f"{name}."))
        elif isinstance(value, HPARAM_TYPES):
            out[name] = value
        elif isinstance(value, (list, tuple)) and len(value) <= 8 and all(isinstance(v, HPARAM_TYPES) for v in value):
            out[name] = str(list(value))
    return out


def mid_slice(volume: Tensor) -> Tensor:
    """(X, Y, Z) -> (1, H, W) float in [0, 1]: the mid axial slice, rows = Y (anterior up in RAS)."""
    vol = volume.detach().float().cpu()
    plane = vol[:, :, vol.shape[2] // 2].T.flip(0)  # [Y, X], top row = highest y
    return plane.clamp(0.0, 1.0)[None]


class TensorBoardWriter:
    """A ``SummaryWriter`` on ``log_dir`` that groups tags (module docstring)."""

    def __init__(self, log_dir: str | Path, *, start_step: int = 0, parts_group: str = "train"):
        from torch.utils.tensorboard import SummaryWriter

        self.parts_group = parts_group
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag_for(key, self.parts_group), value, step)

    def images(self, step: int, volumes: Mapping[str, Tensor]) -> None:
        """volumes: name -> (X, Y, Z) tensor (e.g. ``input``, ``masked``, ``recon``)."""
        for name, volume in volumes.items():
            self.writer.add_image(f"images/{name}", mid_slice(volume), step, dataformats="CHW")

    def hparams(self, config: Mapping[str, Any], metrics: tuple[str, ...] = ("train/loss", "val/metric")) -> None:
        from torch.utils.tensorboard.summary import hparams

        exp, ssi, sei = hparams(flatten_hparams(config), {m: 0.0 for m in metrics})
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def image_hook(writer: TensorBoardWriter, every: int):
    """A trainer hook: every ``every`` steps, the task's ``preview(batch)`` as TensorBoard images."""

    def hook(state) -> None:
        if not state.info.is_main or state.step % every or not hasattr(state.task, "preview"):
            return
        with torch.no_grad(), state.autocast():
            writer.images(state.step, state.task.preview(state.batch))

    return hook


def parts_group_for(task: Any) -> str:
    """``ssl`` for a pretext task (its named losses), else ``train``."""
    return "ssl" if isinstance(task, SSLTask) else "train"


def attach(writer: TensorBoardWriter | None, config: Mapping[str, Any], image_every: int) -> list:
    """Write the run's hparams now; the hooks that add images. Nothing without a writer."""
    if writer is None:
        return []
    writer.hparams(config)
    return [image_hook(writer, image_every)] if image_every > 0 else []
