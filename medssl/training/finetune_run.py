"""One fine-tuning run: data -> network (+ pretrained encoder, with a load report) ->
training with validation -> ``RUN/model.pt`` (the best checkpoint as a model artifact).

Run folder: ``config.yaml`` (resolved), ``metrics.jsonl``, ``val.jsonl``, ``load_report.json``
(when pretrained; with ``preprocess_check``, the pretraining's preprocessing compared), ``summary.json``, ``model.pt``; ``ckpt_*.pt`` and ``best.pt``, from which
the same command resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medssl.artifacts.domain import training_domain
from medssl.artifacts.model import ModelArtifact, save_model_artifact
from medssl.artifacts.weights import (
    UNET_HEADS,
    check_preprocess,
    encoder_scope,
    load_decoder,
    load_pretrained,
    open_weights,
)
from medssl.config import config_to_dict, save_config
from medssl.data.datalist import Splits, dataset_label_codes, load_cases
from medssl.data.labeled import PreparedCase, prepare_case, resolve_labels
from medssl.data.labels import LabelVocabulary
from medssl.errors import CheckpointError, ConfigError
from medssl.models import build_network
from medssl.tasks.kinds import task_kind
from medssl.training.checkpoint import checkpoint_paths, read_best, save_torch_file, set_aside_file
from medssl.training.checkpoint_checks import state_dict_mismatch
from medssl.training.config import TrainConfig
from medssl.training.distributed import DistInfo, setup_distributed
from medssl.training.finetune_config import FinetuneConfig
from medssl.training.trainer import fit

log = logging.getLogger("medssl.finetune")


@dataclass
class FinetuneResult:
    run_dir: Path
    metric_name: str
    best_metric: float
    best_step: int
    test: dict[str, Any] | None = None  # evaluation on the test split with the best weights
    load_report: dict[str, Any] | None = None
    train_cases: list[str] = field(default_factory=list)
    seconds: float = 0.0


def network_spec(cfg: FinetuneConfig, in_channels: int, n_out: int) -> dict[str, Any]:
    spec = {**cfg.model.network_spec(), "in_channels": in_channels}
    spec[task_kind(cfg.task).output_arg] = n_out
    if cfg.model.network == "swin_unetr":
        for what, size in (("train.crop_size", cfg.train.crop_size), ("inference.roi_size", cfg.inference.roi_size)):
            if any(int(s) % 32 for s in size):
                raise ConfigError(f"{what} {list(size)}: swin_unetr needs multiples of 32")
    return spec


def encoder_stages(encoder: nn.Module) -> list[list[nn.Parameter]]:
    """Encoder parameters grouped by stage, shallowest first (first child, or child.index)."""
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in encoder.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        groups.setdefault(key, []).append(param)
    return list(groups.values())


def param_groups(network: nn.Module, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Freeze encoder stages per ``model.mode``; the trainable parameters as optimizer groups
    for the trainer (``lr_mult`` scales ``train.lr``, see ``optim.build_optimizer``).

    Head: ``lr_mult`` 1. Decoder: 1, or ``pretrained_lr_mult`` when it was transferred
    (``model.transfer: encoder_decoder`` with a checkpoint). Encoder stage at depth d
    (0 = deepest): ``encoder_lr_mult * layer_decay ** (d + 1)``, times ``pretrained_lr_mult``
    with a checkpoint (no decay factor without ``layer_decay``). With a checkpoint, the
    transferred groups also carry ``hold_steps`` (``train.head_warmup_steps``).
    Biases and norm weights (1-D) get no weight decay, as in the trainer's default groups."""
    scope = encoder_scope(network)
    if not scope:
        return _split_decay(list(network.parameters()), 1.0)
    m, t = cfg.model, cfg.train
    transferred = t.pretrained_lr_mult if m.pretrained else 1.0
    hold = t.head_warmup_steps if m.pretrained else 0
    encoder = getattr(network, scope[:-1])
    enc_ids = {id(p) for p in encoder.parameters()}
    stages = encoder_stages(encoder)
    trainable = 0 if m.mode == "linear_probe" else len(stages) if m.mode == "full" else m.trainable_stages
    rest = [(n, p) for n, p in network.named_parameters() if id(p) not in enc_ids]
    if m.pretrained and m.transfer == "encoder_decoder":
        heads = [p for n, p in rest if n.startswith(UNET_HEADS)]
        decoder = [p for n, p in rest if not n.startswith(UNET_HEADS)]
        groups = _split_decay(heads, 1.0) + _split_decay(decoder, transferred, hold)
    else:
        groups = _split_decay([p for _, p in rest], 1.0)
    for depth, params in enumerate(reversed(stages)):  # depth 0 = deepest stage
        if depth >= trainable:
            for p in params:
                p.requires_grad_(False)
            continue
        decay = m.layer_decay ** (depth + 1) if m.layer_decay else 1.0
        groups += _split_decay(params, t.encoder_lr_mult * decay * transferred, hold)
    return groups


def _split_decay(params: list[nn.Parameter], lr_mult: float, hold: int = 0) -> list[dict[str, Any]]:
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "lr_mult": lr_mult}, {"params": no_decay, "lr_mult": lr_mult, "weight_decay": 0.0}]
    if hold:
        for g in groups:
            g["hold_steps"] = hold
    return [g for g in groups if g["params"]]


def data_hash(cases) -> str:
    h = hashlib.sha256()
    for c in cases:
        for p in (c.image, c.label):
            if p is not None:
                h.update(f"{c.case_id}|{p.name}|{p.stat().st_size}|{c.cls}".encode())
    return h.hexdigest()[:16]


def run_finetune(cfg: FinetuneConfig, out: str | Path, pretrained: str | None = None,
                 restart: bool = False) -> FinetuneResult:
    """``restart`` (``--restart``): checkpoints and ``best.pt`` that do not fit the configured
    network are set aside and training starts again (otherwise a ``CheckpointError``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pretrained = pretrained or cfg.model.pretrained
    if pretrained:
        cfg = cfg.model_copy(deep=True)
        cfg.model.pretrained = str(pretrained)
    resuming = bool(checkpoint_paths(out))  # keep the run's config.yaml until the resume has worked
    if not resuming:
        save_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed)
    names = resolve_labels(cfg)
    all_cases = load_cases(cfg.data)
    d = cfg.data
    splits = d.split(all_cases, n_train=d.n_train, train_seed=cfg.seed if d.n_train else None)
    train = [prepare_case(c, cfg, names) for c in splits.train]
    val = [prepare_case(c, cfg, names) for c in splits.val] or train
    info = setup_distributed(cfg.train.device)  # the trainer runs on the same (rank-local) device
    device = info.device
    spec = network_spec(cfg, train[0].image.shape[0], len(names))
    network = build_network(spec).to(device)
    report = None
    if pretrained:
        weights = open_weights(pretrained)  # read once for the encoder, the decoder and the check
        rep = load_pretrained(network, weights, cfg.model.encoder.name, cfg.model.min_loaded_fraction)
        report = rep.to_dict()
        if cfg.model.transfer == "encoder_decoder":
            report["decoder"] = load_decoder(network, weights, cfg.model.min_loaded_fraction).to_dict()
        report["preprocess_check"] = check_preprocess(weights, cfg.data.preprocessing, cfg.data.modality)
        (out / "load_report.json").write_text(json.dumps(report, indent=1))
    kind = task_kind(cfg.task)
    task = kind.module(network, train, len(names), cfg.train.class_weights).to(device)
    inference = cfg.inference
    metric_name = kind.metric

    def validate(net: nn.Module) -> float:
        was_training = net.training
        res = kind.score(net, val, names, inference, device, distances=False, n_boot=10)
        net.train(was_training)
        return kind.metric_value(res)

    best = _train(cfg, task, network, train, validate, out, info, restart)
    if resuming:
        save_config(cfg, out / "config.yaml")
    network.load_state_dict(best["state_dict"])
    test = None
    if splits.test:
        test_cases = [prepare_case(c, cfg, names) for c in splits.test]
        test = kind.score(network, test_cases, names, inference, device, distances=True)
    domain = training_domain(train, names, cfg.data.modality)
    _save_artifact(cfg, out, spec, network, names, splits, data_hash(all_cases), best, test, report, domain)
    result = FinetuneResult(out, metric_name, best["metric"], best["step"], test, report,
                            [c.case_id for c in splits.train], best["seconds"])
    summary = {k: v for k, v in result.__dict__.items() if k not in ("run_dir",)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log.info("fine-tuned %s: best val %s %.4f at step %d (%.0f s) -> %s", cfg.model.network, metric_name,
             best["metric"], best["step"], best["seconds"], out / "model.pt")
    return result


def _save_artifact(cfg: FinetuneConfig, out: Path, spec: dict[str, Any], network: nn.Module, names: dict[str, str],
                   splits: Splits, data_id: str, best: dict[str, Any], test: dict[str, Any] | None,
                   report: dict[str, Any] | None, domain: dict[str, Any] | None = None) -> Path:
    metric_name = task_kind(cfg.task).metric
    pretrained = None
    if report and cfg.model.pretrained:
        pretrained = {"file": Path(cfg.model.pretrained).name,
                      **{k: report[k] for k in ("loaded", "total", "source_format")}}
    meta = {
        "run_id": uuid.uuid4().hex[:12], "data_hash": data_id, "best_step": best["step"],
        "metrics": {f"val_{metric_name}": best["metric"], **({"test": test["summary"]} if test else {})},
        "train_cases": [c.case_id for c in splits.train], "val_cases": [c.case_id for c in splits.val],
        "test_cases": [c.case_id for c in splits.test], "mode": cfg.model.mode, "pretrained": pretrained,
        "config": config_to_dict(cfg), "training_domain": domain, "label_codes": _label_codes(cfg),
    }
    art = ModelArtifact(task=cfg.task, network=spec, state_dict={k: v.cpu() for k, v in network.state_dict().items()},
                        labels=names, modality=cfg.data.modality, preprocessing=cfg.data.preprocessing.model_copy(deep=True),
                        inference=cfg.inference.model_copy(deep=True), meta=meta)
    return save_model_artifact(art, out)


def _label_codes(cfg: FinetuneConfig) -> dict[str, Any] | None:
    """The DICOM SEG codes the artifact carries: ``data.label_codes``, else dataset.json's
    ``label_codes`` (validated now, so a bad map fails the fine-tune, not a later predict)."""
    if cfg.data.label_codes is not None:
        return LabelVocabulary.from_dict(cfg.data.label_codes, "data.label_codes").to_dict()
    root = Path(cfg.data.root)
    found = dataset_label_codes(root if root.is_dir() else root.parent)
    return found.to_dict() if found is not None else None


def _load_best(path: Path, network: nn.Module, restart: bool) -> dict[str, Any]:
    """``best.pt`` when there is one and it fits ``network``; a fresh record otherwise (with
    ``restart`` a file that does not fit is set aside, without it that is a ``CheckpointError``)."""
    fresh = {"metric": float("-inf"), "step": 0, "state_dict": {}}
    if not path.is_file():
        return fresh
    best = read_best(path)
    problem = state_dict_mismatch(network.state_dict(), best["state_dict"])
    if problem is None:
        return best
    if not restart:
        raise CheckpointError(f"{path}: {problem}; resume with the run's original config, or pass --restart to "
                              "set it aside", code="checkpoint_mismatch")  # fmt: skip
    log.warning("--restart: %s does not fit the model; set aside as %s", path.name, set_aside_file(path.parent, path))
    return fresh


def _train(cfg: FinetuneConfig, task: nn.Module, network: nn.Module, train: list[PreparedCase],
           validate, out: Path, info: DistInfo, restart: bool = False) -> dict[str, Any]:
    """Train with the shared trainer (resumable, DDP-ready); best weights by validation in ``best.pt``."""
    t = cfg.train
    make = task_kind(cfg.task).batches(train, batch_size=t.batch_size, crop_size=t.crop_size,
                                       pos_fraction=t.pos_fraction, augment=t.augment, roi=cfg.inference.roi_size)
    start = time.perf_counter()
    groups = param_groups(network, cfg)  # also freezes encoder stages per model.mode
    # Same LR everywhere: the trainer's default groups, which optimise identically and keep the
    # optimizer-state layout of checkpoints written before per-stage groups went through it.
    per_stage_lr = any(g["lr_mult"] != 1.0 or g.get("hold_steps") for g in groups)
    best_path = out / "best.pt"
    best = _load_best(best_path, network, restart)

    def val_hook(state) -> None:
        if not state.info.is_main or (state.step % t.val_every and state.step != t.max_steps):
            return
        metric = validate(network)
        log.info("step %d validation %.4f", state.step, metric)
        if state.tensorboard is not None:
            state.tensorboard.scalars(state.step, {"val_metric": metric})
        with (out / "val.jsonl").open("a") as fh:
            fh.write(json.dumps({"step": state.step, "val_metric": metric}) + "\n")
        if metric > best["metric"] or not best["state_dict"]:
            best.update(metric=metric, step=state.step,
                        state_dict={k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()})
            save_torch_file(best, best_path)
        elif t.patience and state.step - best["step"] >= t.patience * t.val_every:
            log.info("step %d: no validation gain for %d checks, stopping early (best at step %d)",
                     state.step, t.patience, best["step"])
            state.stop = True

    def batches(position: int):
        while True:
            yield make(_rng(cfg.seed, position, info.rank))
            position += 1

    trainer_cfg = TrainConfig(**{k: getattr(t, k) for k in TrainConfig.model_fields})
    fit(task, batches, trainer_cfg, out, config=config_to_dict(cfg), hooks=[val_hook],
        param_groups=groups if per_stage_lr else None, info=info, restart=restart, run_files=("val.jsonl",))
    if not best["state_dict"]:
        raise CheckpointError(f"{out.name}: training finished without a validated checkpoint")
    return {**best, "seconds": time.perf_counter() - start}


def _rng(seed: int, position: int, rank: int) -> np.random.Generator:
    """One generator per batch position and DDP rank: the same batches after a resume."""
    return np.random.default_rng([seed, position, rank])
