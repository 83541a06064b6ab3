"""Encoders and whole networks by name. Importing this package registers them all."""

from medssl.models import unet  # noqa: F401  (registers "unet")
from medssl.models.registry import ENCODERS, NETWORKS, build_network

__all__ = ["ENCODERS", "NETWORKS", "build_network"]
