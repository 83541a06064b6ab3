"""The one way configs name an encoder, in pretraining and fine-tuning alike:
``model.encoder: {name: cnn, channels: [16, 32, 64, 128]}`` (the encoder's arguments beside
its name), and how a fine-tuning network is built around it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from medssl.errors import ConfigError
from medssl.models.registry import ENCODERS  # filled as the package medssl.models imports

# network -> how its factory takes the encoder: "wrapped" (encoder= + encoder_kwargs=) or
# "inline" (the Swin arguments are the network's own, as MONAI's SwinUNETR takes them)
_NETWORK_ENCODER = {"cnn_unet": "wrapped", "classifier": "wrapped", "swin_unetr": "inline"}
SWIN_INLINE_KEYS = ("feature_size", "depths", "num_heads")


class EncoderSpec(BaseModel):
    """``name`` (a registered encoder: swin | cnn | vit) and its keyword arguments."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "swin"

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        ENCODERS.get(name)  # ConfigError with a "did you mean" on a typo
        return name

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def spec(self) -> dict[str, Any]:
        """``{"name", **kwargs}`` as ``build_encoder`` takes it."""
        return {"name": self.name, **self.kwargs}


def network_spec(network: str, encoder: EncoderSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The artifact's network spec ``{"name", **factory kwargs}`` for ``network`` over ``encoder``.

    Networks without an encoder (e.g. "unet") take ``kwargs`` alone."""
    mode = _NETWORK_ENCODER.get(network)
    spec: dict[str, Any] = {"name": network, **kwargs}
    if mode == "wrapped":
        spec.update(encoder=encoder.name, encoder_kwargs=encoder.kwargs)
    elif mode == "inline":
        if encoder.name != "swin":
            raise ConfigError(f"model.network {network} needs model.encoder.name swin, got '{encoder.name}'")
        extra = set(encoder.kwargs) - set(SWIN_INLINE_KEYS)
        if extra:
            raise ConfigError(f"model.encoder: {network} takes only {', '.join(SWIN_INLINE_KEYS)}; "
                              f"not {', '.join(sorted(extra))}")
        spec.update(encoder.kwargs)
    return spec
