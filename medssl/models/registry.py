"""Registries of model parts. Factories register themselves when their module is imported;
``medssl.models`` imports them all."""

from __future__ import annotations

from torch import nn

from medssl.errors import ConfigError
from medssl.registry import Registry

# name -> factory(in_channels=..., **kwargs) -> encoder nn.Module (see medssl.models.encoders)
ENCODERS: Registry[nn.Module] = Registry("encoder")
# name -> factory(**kwargs) -> whole network used by fine-tuning / inference
NETWORKS: Registry[nn.Module] = Registry("network")


def build_network(spec: dict) -> nn.Module:
    """Build a whole network from its spec ``{"name": ..., **kwargs}`` (as stored in artifacts)."""
    spec = dict(spec)
    name = spec.pop("name")
    try:
        return NETWORKS.build(name, **spec)
    except TypeError as err:  # an argument the network does not take (model.kwargs / model.encoder)
        raise ConfigError(f"network '{name}': {err}; check model.kwargs and model.encoder") from err
