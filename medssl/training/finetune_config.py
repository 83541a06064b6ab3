"""Fine-tuning and sweep configs (``configs/finetune/*.yaml``); defaults live here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medssl.config import StrictModel
from medssl.data.preprocess import PreprocessConfig
from medssl.training.config import TrainConfig


class ClassFromLabel(StrictModel):
    """Derive a binary class from a label map: 1 when ``value`` covers >= ``min_voxels``."""

    value: int = 6
    min_voxels: int = 1
    names: dict[str, str] = Field(default_factory=lambda: {"0": "absent", "1": "present"})


class DataConfig(StrictModel):
    root: str = ""  # dataset.json, CSV, or a folder of image/label pairs
    modality: str = "CT"
    labels: dict[str, str] | None = None  # target index -> name; None: from dataset.json/labels.json
    label_map: dict[int, int] | None = None  # source label value -> target index; others -> 0
    class_from_label: ClassFromLabel | None = None  # classification targets derived from labels
    preprocessing: PreprocessConfig = PreprocessConfig()
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    n_val: int | None = Field(None, ge=0)
    n_train: int | None = Field(None, ge=1)  # keep only this many labeled training cases
    split_seed: int = 0


class ModelConfig(StrictModel):
    network: str = "swin_unetr"  # NETWORKS name
    kwargs: dict[str, Any] = Field(default_factory=dict)  # network arguments (in/out channels are filled in)
    encoder: str = "swin"  # encoder family, for weight loading and reports
    pretrained: str | None = None  # encoder weights (exported encoder, pretrain run, release file)
    min_loaded_fraction: float = Field(0.9, gt=0, le=1)
    mode: Literal["full", "partial", "linear_probe"] = "full"
    trainable_stages: int = Field(1, ge=0)  # partial: how many of the deepest encoder stages train
    layer_decay: float | None = Field(None, gt=0, le=1)  # layer-wise LR decay over encoder stages


class FinetuneTrainConfig(TrainConfig):
    """The shared trainer's settings plus what fine-tuning samples and validates."""

    max_steps: int = Field(200, ge=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-5, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    tensorboard: bool = False
    progress: bool = False
    batch_size: int = Field(2, ge=1)
    crop_size: tuple[int, int, int] = (96, 96, 96)
    pos_fraction: float = Field(0.67, ge=0, le=1)  # crops centred on a foreground voxel
    encoder_lr_mult: float = Field(1.0, gt=0)  # encoder LR = lr * this (* layer decay)
    val_every: int = Field(50, ge=1)
    seed: int = 0  # weights init, crops, and which n_train cases are drawn
    class_weights: list[float] | Literal["balanced"] | None = "balanced"


class InferenceConfig(StrictModel):
    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(4, ge=1)


class FinetuneConfig(StrictModel):
    task: Literal["segmentation", "classification"] = "segmentation"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    inference: InferenceConfig = InferenceConfig()

    @model_validator(mode="after")
    def _network_fits_input(self) -> FinetuneConfig:
        """Impossible network / crop combinations are config errors naming the keys."""
        from medssl.models.input_check import check_network_input

        sizes = {"train.crop_size": self.train.crop_size, "inference.roi_size": self.inference.roi_size}
        check_network_input(self.model.network, self.model.kwargs, sizes, batch_size=self.train.batch_size)
        return self


class SweepSection(StrictModel):
    n_labeled: list[int] = Field(default_factory=lambda: [2, 5, 10])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    arms: list[Literal["scratch", "pretrained", "linear_probe"]] = Field(default_factory=lambda: ["scratch", "pretrained"])
    pretrained: str | None = None  # checkpoint for the pretrained arms; None: pretrain first
    pretrain_config: str | None = None  # pretrain config run when no checkpoint is given
    pretrain_overrides: list[str] = Field(default_factory=list)
    metric: str = "dice"
    bootstrap: int = Field(1000, ge=10)


class SweepConfig(FinetuneConfig):
    sweep: SweepSection = SweepSection()
