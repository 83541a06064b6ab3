"""The pretraining config: ``configs/pretrain/*.yaml`` validate against ``PretrainConfig``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from medssl.config import StrictModel
from medssl.data.feed import PretrainDataConfig
from medssl.tasks.config import TasksConfig
from medssl.training.config import TrainConfig


class EncoderConfig(StrictModel):
    name: str = "swin"  # a name in medssl.models.ENCODERS: swin | cnn
    kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to the encoder factory

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from medssl.models import ENCODERS

        ENCODERS.get(name)  # ConfigError with a "did you mean" on a typo
        return name

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


class PretrainConfig(StrictModel):
    seed: int = 0
    data: PretrainDataConfig = PretrainDataConfig()
    model: EncoderConfig = EncoderConfig()
    tasks: TasksConfig = TasksConfig()
    train: TrainConfig = TrainConfig()
