"""Fine-tuning and sweep configs (``configs/finetune/*.yaml``); defaults live here."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from medssl.config import CropSize, StrictModel
from medssl.data.labeled import ClassFromLabel, DataConfig, Target  # noqa: F401  (part of this config)
from medssl.models.input_check import check_network_input
from medssl.models.sliding import InferenceSettings
from medssl.models.spec import SWIN_INLINE_KEYS, EncoderSpec, network_spec
from medssl.tasks.kinds import task_kind
from medssl.training.config import TrainConfig

_MOVED_TO_ENCODER = ("encoder", "encoder_kwargs", *SWIN_INLINE_KEYS)


class ModelConfig(StrictModel):
    network: str = "swin_unetr"  # NETWORKS name
    encoder: EncoderSpec = EncoderSpec()  # {name, **arguments}: the same spec pretraining uses
    kwargs: dict[str, Any] = Field(default_factory=dict)  # the network's own arguments (decoder, norm, ...)
    pretrained: str | None = None  # encoder weights (exported encoder, pretrain run, release file)
    transfer: Literal["encoder", "encoder_decoder"] = "encoder"  # encoder_decoder: also the U-Net decoder
    min_loaded_fraction: float = Field(0.9, gt=0, le=1)
    mode: Literal["full", "partial", "linear_probe"] = "full"
    trainable_stages: int = Field(1, ge=0)  # partial: how many of the deepest encoder stages train
    layer_decay: float | None = Field(None, gt=0, le=1)  # layer-wise LR decay over encoder stages

    @model_validator(mode="before")
    @classmethod
    def _old_encoder_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("encoder"), str):
            raise ValueError(f"'encoder: {data['encoder']}' was renamed to 'encoder: {{name: {data['encoder']}}}' "
                             "(its arguments sit beside the name)")
        moved = [k for k in (data.get("kwargs") or {}) if k in _MOVED_TO_ENCODER]
        if moved:
            raise ValueError(f"'kwargs.{moved[0]}' was renamed: the encoder and its arguments are 'model.encoder' "
                             "({name: cnn, channels: [...]})")
        return data

    def network_spec(self) -> dict[str, Any]:
        """The artifact's network spec (without in/out channels)."""
        return network_spec(self.network, self.encoder, self.kwargs)


class FinetuneTrainConfig(TrainConfig):
    """The shared trainer's settings plus what fine-tuning samples and validates."""

    renamed: ClassVar[dict[str, str]] = {"seed": "seed (top level, as in pretraining)"}

    max_steps: int = Field(200, ge=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-5, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    tensorboard: bool = False
    progress: bool = False
    batch_size: int = Field(2, ge=1)
    crop_size: CropSize = (96, 96, 96)
    pos_fraction: float = Field(0.67, ge=0, le=1)  # crops centred on a foreground voxel
    encoder_lr_mult: float = Field(1.0, gt=0)  # encoder LR = lr * this (* layer decay)
    # LR multiplier for what model.pretrained loads (the encoder, and the decoder with transfer
    # encoder_decoder), on top of encoder_lr_mult; no effect without a checkpoint, so both sweep
    # arms can share one config
    pretrained_lr_mult: float = Field(1.0, gt=0)
    # steps during which only the new head (and decoder when not transferred) trains and the
    # transferred weights hold still, then join (linear probe, then fine-tune: LP-FT); no
    # effect without a checkpoint
    head_warmup_steps: int = Field(0, ge=0)
    val_every: int = Field(50, ge=1)
    patience: int = Field(0, ge=0)  # stop after this many validations without improvement; 0 = never
    augment: bool = True  # random flips and intensity scale/shift of training crops (same in every arm)
    # balanced: classification, inverse class frequency; segmentation, cross-entropy weights
    # 1/sqrt(voxel frequency) over the training labels. A list: one weight per class.
    class_weights: list[float] | Literal["balanced"] | None = "balanced"


InferenceConfig = InferenceSettings  # the artifact's own section: one set of sliding-window defaults


class FinetuneConfig(StrictModel):
    seed: int = 0  # weights init, crops, and which data.n_train cases are drawn
    task: Literal["segmentation", "classification"] = "segmentation"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    inference: InferenceConfig = InferenceConfig()

    @property
    def target(self) -> Target:
        """What each labeled case is prepared with (the data layer's ``LabeledTask``)."""
        return task_kind(self.task).target

    def encoder_spec(self) -> dict[str, Any]:
        """``{"name", **kwargs}`` of the encoder inside ``model.network``."""
        return self.model.encoder.spec()


    @model_validator(mode="after")
    def _network_fits_input(self) -> FinetuneConfig:
        """Impossible network / crop combinations are config errors naming the keys."""
        sizes = {"train.crop_size": self.train.crop_size, "inference.roi_size": self.inference.roi_size}
        spec = {k: v for k, v in self.model.network_spec().items() if k != "name"}
        check_network_input(self.model.network, spec, sizes, batch_size=self.train.batch_size)
        return self


class SweepSynth(StrictModel):
    """Phantom cohorts the sweep generates itself (OUT/data/labeled and OUT/data/unlabeled,
    disjoint subjects), so the benchmark needs no data: ``data.root`` and
    ``sweep.pretrain_data`` then point at them."""

    labeled: int = Field(22, ge=4)  # test + validation + labeled pool
    unlabeled: int = Field(64, ge=1)  # the pretraining pool
    shape: tuple[int, int, int] = (64, 64, 40)
    seed: int = 0
    # multiphase: each subject in one contrast phase (native / arterial / portal / delayed),
    # as a hospital archive mixes them, so that a few labeled cases cannot cover them all
    appearance: Literal["uniform", "multiphase"] = "uniform"
    anatomy: Literal["regular", "varied"] = "regular"  # varied: the body deformed per subject
    lesions: Literal["small", "large"] = "small"  # lesion radius 4-15 mm or 8-25 mm
    dose: Literal["standard", "low"] = "standard"  # low: noise 30-60 HU instead of 6-22


class SweepSection(StrictModel):
    n_labeled: list[int] = Field(default_factory=lambda: [2, 5, 10])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    arms: list[Literal["scratch", "pretrained", "linear_probe"]] = Field(default_factory=lambda: ["scratch", "pretrained"])
    pretrained: str | None = None  # checkpoint for the pretrained arms; None: pretrain first
    pretrain_config: str | None = None  # pretrain config run when no checkpoint is given
    pretrain_overrides: list[str] = Field(default_factory=list)  # key=value on the pretrain config
    pretrain_data: str | None = None  # unlabeled pool (folder or manifest.jsonl); default data.root
    synth: SweepSynth | None = None  # generate phantom cohorts instead of reading data.root
    exclude_eval_from_pretraining: bool = True  # keep val/test cases and their twins out of pretraining
    probe: bool = True  # frozen-feature segmentation probe of the pretrained vs a random encoder
    metric: str = "dice"
    bootstrap: int = Field(2000, ge=10)
    # fine-tune runs at once, each in its own process with (CPU cores / parallel) torch
    # threads: small networks gain nothing from a second thread, and two runs on two cores
    # finish in about half the time of one after the other
    parallel: int = Field(1, ge=1)


class SweepConfig(FinetuneConfig):
    sweep: SweepSection = SweepSection()
