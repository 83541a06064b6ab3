"""Network / input-size combinations that cannot run, found before any tensor is built.

``check_network_input`` raises :class:`ConfigError` naming the config keys involved
(``model.kwargs.feature_size``, ``train.crop_size``, ...) instead of letting a network fail
deep inside its forward pass (exit 4, not a ValueError traceback with exit 1):

- ``swin_unetr``: every crop / window side a multiple of 32 (five 2x stages);
  ``feature_size`` a multiple of 12; each stage's width ``feature_size * 2**i`` divisible by
  ``num_heads[i]``; a 1-voxel bottleneck (side 32) with ``instance`` norm, or with ``batch``
  norm and ``batch_size`` 1, cannot normalise during training.
- ``unet``: every crop / window side a multiple of ``prod(strides)``; the same bottleneck
  rule (MONAI's UNet normalises with instance norm).

Defaults come from the network factory's own signature (medssl's defaults, not MONAI's)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from medssl.errors import ConfigError
from medssl.models import NETWORKS

SWIN_DOWNSAMPLING = 32


def network_kwargs(network: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` over the registered factory's defaults."""
    params = inspect.signature(NETWORKS.get(network)).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {**defaults, **kwargs}


def check_network_input(network: str, kwargs: Mapping[str, Any], sizes: Mapping[str, Sequence[int]],
                        batch_size: int = 2, prefix: str = "model") -> None:
    """``sizes``: config key -> (X, Y, Z) input size (``train.crop_size``, ``inference.roi_size``);
    the first is the training crop. Raises ConfigError naming the keys; unknown networks pass."""
    if network not in ("swin_unetr", "unet"):
        return
    kw = network_kwargs(network, kwargs)
    at = f"{prefix}.kwargs"
    if network == "swin_unetr":
        factor, norm, norm_key = SWIN_DOWNSAMPLING, str(kw.get("norm_name", "instance")), f"{at}.norm_name"
        _check_swin_widths(kw, f"{prefix}.encoder")
    else:
        factor, norm, norm_key = math.prod(int(s) for s in kw.get("strides", ())), "instance", f"{prefix}.network"
    for key, size in sizes.items():
        bad = [int(s) for s in size if int(s) % factor]
        if bad:
            raise ConfigError(f"{key} {list(size)} does not fit {prefix}.network {network}: every side must be a "
                              f"multiple of {factor} ({'the five 2x stages' if network == 'swin_unetr' else f'{at}.strides'})")
    crop_key, crop = next(iter(sizes.items()), (None, None))
    if crop is None:
        return
    bottleneck = math.prod(int(s) // factor for s in crop)
    if bottleneck == 1 and (norm.lower() == "instance" or (norm.lower() == "batch" and batch_size == 1)):
        fix = "use a larger crop (e.g. 64) or norm_name: batch with batch_size >= 2" if network == "swin_unetr" \
            else "use a larger crop or fewer strides"
        raise ConfigError(f"{crop_key} {list(crop)} leaves one voxel at the {network} bottleneck (1/{factor}), which "
                          f"{norm} norm cannot normalise ({norm_key}: {norm}); {fix}")


def _check_swin_widths(kw: Mapping[str, Any], at: str) -> None:
    feature = int(kw.get("feature_size", 48))
    if feature % 12:
        raise ConfigError(f"{at}.feature_size {feature} must be a multiple of 12 (SwinUNETR)")
    heads = list(kw.get("num_heads", ()))
    for i, h in enumerate(heads):
        width = feature * 2**i
        if int(h) <= 0 or width % int(h):
            raise ConfigError(f"{at}.num_heads[{i}] = {h} does not divide stage {i + 1}'s width {width} "
                              f"({at}.feature_size {feature} * 2**{i})")
