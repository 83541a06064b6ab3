"""What ``medssl viewer`` passes to the app: folders, through environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_DATA = "MEDSSL_VIEWER_DATA_DIR"
ENV_RESULTS = "MEDSSL_VIEWER_RESULTS_DIR"
ENV_MODELS = "MEDSSL_VIEWER_MODELS_DIR"


@dataclass(frozen=True)
class Settings:
    data_dir: Path | None
    results_dir: Path | None
    models_dir: Path | None


def _dir(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else None


def from_env() -> Settings:
    return Settings(data_dir=_dir(ENV_DATA), results_dir=_dir(ENV_RESULTS), models_dir=_dir(ENV_MODELS))
