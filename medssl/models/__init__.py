"""Encoders and whole networks by name. Importing this package registers them all."""

from medssl.models import encoders  # noqa: F401  (registers "swin", "cnn")
from medssl.models import unet  # noqa: F401  (registers "unet")
from medssl.models import segmentation  # noqa: F401  (registers "swin_unetr", "cnn_unet")
from medssl.models import classification  # noqa: F401  (registers "classifier")
from medssl.models.registry import ENCODERS, NETWORKS, build_network

__all__ = ["ENCODERS", "NETWORKS", "build_network"]
