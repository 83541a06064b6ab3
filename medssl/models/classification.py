"""Classification network: a registered encoder, global average pooling, a linear head."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from medssl.models.registry import ENCODERS, NETWORKS


class Classifier(nn.Module):
    """(B, C, X, Y, Z) -> class logits (B, num_classes), from the encoder's coarsest features."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.out_channels[-1]), num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled coarsest encoder features (B, F)."""
        return self.pool(self.encoder(x)[-1]).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


@NETWORKS.register("classifier")
def build_classifier(
    in_channels: int = 1,
    num_classes: int = 2,
    encoder: str = "cnn",
    encoder_kwargs: dict[str, Any] | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    enc = ENCODERS.build(encoder, in_channels=in_channels, **(encoder_kwargs or {}))
    return Classifier(enc, num_classes, dropout)
