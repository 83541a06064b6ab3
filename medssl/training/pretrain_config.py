"""The pretraining config: ``configs/pretrain/*.yaml`` validate against ``PretrainConfig``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medssl.config import StrictModel
from medssl.data.feed import PretrainDataConfig
from medssl.models.spec import EncoderSpec
from medssl.tasks.config import TasksConfig
from medssl.training.config import TrainConfig


class PretrainModelConfig(StrictModel):
    renamed: ClassVar[dict[str, str]] = {"name": "model.encoder.name",
                                         "kwargs": "model.encoder (arguments sit beside its name)"}

    encoder: EncoderSpec = EncoderSpec()


class MonitorConfig(StrictModel):
    """Collapse monitoring: per-stage effective rank and feature std on a fixed probe batch."""

    rank_every: int = Field(100, ge=0)  # steps between measurements; 0 = off
    probe_crops: int = Field(8, ge=1)  # crops in the fixed probe batch


class PretrainConfig(StrictModel):
    seed: int = 0
    data: PretrainDataConfig = PretrainDataConfig()
    model: PretrainModelConfig = PretrainModelConfig()
    tasks: TasksConfig = TasksConfig()
    train: TrainConfig = TrainConfig()
    monitor: MonitorConfig = MonitorConfig()
