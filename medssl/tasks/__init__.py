"""Pretext tasks: nn.Modules returning a dict of named losses ("loss" is the total)."""

from medssl.tasks.config import TasksConfig
from medssl.tasks.ssl import SSLTask

__all__ = ["SSLTask", "TasksConfig"]
