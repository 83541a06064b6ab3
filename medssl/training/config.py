"""Config of the shared training loop (pretraining and fine-tuning both use it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medssl.config import StrictModel


class TrainConfig(StrictModel):
    max_steps: int = Field(1000, ge=1)  # optimizer steps
    lr: float = Field(1e-4, gt=0)  # peak learning rate (AdamW)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)  # cosine floor, as a fraction of lr
    warmup_steps: int = Field(100, ge=0)  # linear warm-up, then cosine decay to max_steps
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    accum_steps: int = Field(1, ge=1)  # micro-batches per optimizer step
    clip: float = Field(1.0, ge=0)  # max global grad norm; 0 = no clipping
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 on CUDA, off (fp32) on CPU
    ema: float = Field(0.0, ge=0, lt=1)  # EMA decay of the weights; 0 = off
    checkpoint_every: int = Field(500, ge=1)  # steps; the last two checkpoints are kept
    log_every: int = Field(10, ge=1)  # steps per metrics.jsonl line / TensorBoard point
    preview_every: int = Field(0, ge=0)  # steps per reconstruction preview PNG; 0 = off
    max_bad_steps: int = Field(5, ge=1)  # consecutive non-finite losses before stopping
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False  # torch.compile the task (CUDA)
    tensorboard: bool = True
    progress: bool = True  # tqdm bar with ETA on rank 0
