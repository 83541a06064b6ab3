"""The two fine-tune tasks as objects. Each owns what differs between segmentation and
classification: the network argument that sets the number of outputs, the loss module
and its class weights, training batches, prediction, scoring and the metric that picks
the best checkpoint. Callers take ``task_kind(cfg.task)`` instead of branching on the name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medssl.data.labeled import PreparedCase, Target, sample_crops, whole_volume
from medssl.errors import ConfigError
from medssl.models.sliding import InferenceSettings
from medssl.tasks.finetune import ClassificationTask, SegmentationTask, balanced_class_weights, voxel_class_weights
from medssl.tasks.scoring import Scorer, classify_case, score_classification, score_segmentation, segment_case

Batches = Callable[[np.random.Generator], dict[str, torch.Tensor]]


class FinetuneKind(ABC):
    name: ClassVar[str]
    metric: ClassVar[str]  # summary key that validation maximises and sweeps report
    output_arg: ClassVar[str]  # network argument for the number of outputs
    output_type: ClassVar[str]  # what one prediction is: a label "image" or class "probabilities"
    target: ClassVar[Target]  # what the data layer prepares as each case's target
    classes_note: ClassVar[str] = ""  # how classes are counted, for error messages

    def module(self, network: nn.Module, train: Sequence[PreparedCase], n_classes: int,
               class_weights: Sequence[float] | str | None) -> nn.Module:
        """The network wrapped with this task's loss (``forward(batch) -> {"loss": ...}``);
        ``class_weights`` "balanced" is computed from ``train``."""
        weights = self.balanced_weights(train, n_classes) if class_weights == "balanced" else class_weights
        if weights is not None and len(weights) != n_classes:
            raise ConfigError(f"train.class_weights: {len(weights)} values for {n_classes} classes{self.classes_note}")
        return self._loss_module(network, weights)  # type: ignore[arg-type]

    def metric_value(self, result: dict[str, Any]) -> float:
        """This task's metric from a ``score`` result, 0 when undefined (an empty validation)."""
        value = result["summary"][self.metric]
        value = value["mean"] if isinstance(value, dict) else value
        return float(value) if np.isfinite(value) else 0.0

    @abstractmethod
    def balanced_weights(self, train: Sequence[PreparedCase], n_classes: int) -> list[float]: ...

    @abstractmethod
    def _loss_module(self, network: nn.Module, weights: Sequence[float] | None) -> nn.Module: ...

    @abstractmethod
    def batches(self, train: list[PreparedCase], *, batch_size: int, crop_size: Sequence[int], pos_fraction: float,
                augment: bool, roi: Sequence[int]) -> Batches:
        """A function from a generator to one training batch (the same generator, the same batch)."""

    @abstractmethod
    def predict(self, network: nn.Module, case: PreparedCase, inference: InferenceSettings,
                device: torch.device) -> np.ndarray: ...

    @abstractmethod
    def score(self, network: nn.Module, cases: list[PreparedCase], labels: dict[str, str],
              inference: InferenceSettings, device: torch.device, *, distances: bool = True,
              n_boot: int = 1000, scorer: Scorer | None = None) -> dict[str, Any]:
        """{"per_case": [...], "summary": {metric: ...}}; ``scorer`` (``Predictor.scores``)
        predicts as deployment does, else the network through MONAI's sliding window."""


class Segmentation(FinetuneKind):
    name, metric, output_arg, output_type, target = "segmentation", "dice", "out_channels", "image", "label_map"
    classes_note = " (background included)"

    def balanced_weights(self, train, n_classes):
        return voxel_class_weights([c.label for c in train], n_classes)

    def _loss_module(self, network, weights):
        return SegmentationTask(network, weights)

    def batches(self, train, *, batch_size, crop_size, pos_fraction, augment, roi):
        def batch(rng: np.random.Generator) -> dict[str, torch.Tensor]:
            image, label = sample_crops(train, batch_size, tuple(crop_size), pos_fraction, rng)
            if augment:  # intensity only: flips would swap left and right organs (liver / spleen)
                scale = torch.from_numpy(rng.uniform(0.9, 1.1, (len(image), 1, 1, 1, 1)).astype(np.float32))
                shift = torch.from_numpy(rng.uniform(-0.1, 0.1, (len(image), 1, 1, 1, 1)).astype(np.float32))
                image = image * scale + shift
            return {"image": image, "label": label}
        return batch

    def predict(self, network, case, inference, device):
        return segment_case(network, case, inference, device)

    def score(self, network, cases, labels, inference, device, *, distances=True, n_boot=1000, scorer=None):
        return score_segmentation(network, cases, labels, inference, device, distances=distances, n_boot=n_boot,
                                  scorer=scorer)


class Classification(FinetuneKind):
    name, metric, output_arg, output_type, target = (
        "classification", "balanced_accuracy", "num_classes", "probabilities", "class")

    def balanced_weights(self, train, n_classes):
        return balanced_class_weights([c.cls for c in train], n_classes)  # type: ignore[misc]

    def _loss_module(self, network, weights):
        return ClassificationTask(network, weights)

    def batches(self, train, *, batch_size, crop_size, pos_fraction, augment, roi):
        volumes = [whole_volume(c, tuple(roi))[0] for c in train]

        def batch(rng: np.random.Generator) -> dict[str, torch.Tensor]:
            idx = rng.integers(0, len(train), size=batch_size)
            image = torch.stack([volumes[i] for i in idx])
            dims = [d + 2 for d in range(3) if rng.random() < 0.5] if augment else []  # axis flips
            return {"image": torch.flip(image, dims) if dims else image,
                    "label": torch.as_tensor([train[i].cls for i in idx], dtype=torch.long)}
        return batch

    def predict(self, network, case, inference, device):
        return classify_case(network, case, inference, device)

    def score(self, network, cases, labels, inference, device, *, distances=True, n_boot=1000, scorer=None):
        return score_classification(network, cases, labels, inference, device, n_boot=n_boot, scorer=scorer)


TASK_KINDS: dict[str, FinetuneKind] = {k.name: k for k in (Segmentation(), Classification())}


def task_kind(name: str) -> FinetuneKind:
    try:
        return TASK_KINDS[name]
    except KeyError:
        raise ConfigError(f"task must be one of {', '.join(TASK_KINDS)}, got {name!r}") from None
