"""Label-efficiency sweep: numbers of labeled cases x seeds x arms (scratch, pretrained,
linear_probe), every run scored on the same held-out test cases.

The pretrained arms use ``sweep.pretrained`` when given; otherwise the sweep first runs
``medssl pretrain`` with ``sweep.pretrain_config`` on ``data.root`` (images only; labels
are never read by pretraining), with the fine-tune's ``data.preprocessing`` as its
``data.preprocess``, and exports its encoder to ``OUT/pretrain/encoder.pt``.
Runs already finished in ``OUT/runs/`` are reused, so an interrupted sweep continues."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medssl.errors import ConfigError
from medssl.evaluation.report import write_sweep_report
from medssl.training.finetune_config import FinetuneConfig, SweepConfig
from medssl.training.finetune_run import run_finetune

log = logging.getLogger("medssl.sweep")


def pretrain_for_sweep(cfg: SweepConfig, out: Path) -> Path:
    """Run the configured pretraining (resumable) and export its encoder."""
    from medssl.config import config_to_dict, load_config
    from medssl.training.pretrain import export_encoder, run_pretrain
    from medssl.training.pretrain_config import PretrainConfig

    if not cfg.sweep.pretrain_config:
        raise ConfigError("sweep: set sweep.pretrained (a checkpoint) or sweep.pretrain_config (to pretrain first)")
    # the encoder must see the intensities it will be fine-tuned on; explicit overrides still win
    preprocess = json.dumps(config_to_dict(cfg.data.preprocessing))
    overrides = [f"data.root={cfg.data.root}", f"data.preprocess={preprocess}", *cfg.sweep.pretrain_overrides]
    pcfg = load_config(PretrainConfig, cfg.sweep.pretrain_config, overrides)
    run_dir = out / "pretrain"
    encoder = run_dir / "encoder.pt"
    if not encoder.is_file():
        log.info("sweep: pretraining %s for %d steps first", pcfg.model.name, pcfg.train.max_steps)
        run_pretrain(pcfg, run_dir)
        export_encoder(run_dir, encoder)
    return encoder


def run_config(cfg: SweepConfig, arm: str, n: int, seed: int, pretrained: str | None) -> FinetuneConfig:
    data = cfg.model_dump(exclude={"sweep"})
    run = FinetuneConfig.model_validate(data)
    run.data.n_train = n
    run.train.seed = seed
    run.model.pretrained = None if arm == "scratch" else pretrained
    run.model.mode = "linear_probe" if arm == "linear_probe" else cfg.model.mode
    return run


def _score(result: dict[str, Any], metric: str) -> tuple[float, list[float]]:
    """The run's mean test metric and its per-case values (validation when no test split)."""
    test = result.get("test")
    if test:
        key = "mean_dice" if metric == "dice" else metric
        per_case = [float(r.get(key, float("nan"))) for r in test["per_case"]] if "per_case" in test else []
        summary = test["summary"].get(metric)
        mean = summary["mean"] if isinstance(summary, dict) else float(summary)
        return float(mean), per_case
    return float(result["best_metric"]), []


def run_sweep(cfg: SweepConfig, out: str | Path) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = cfg.sweep
    if cfg.data.test_fraction <= 0:
        log.warning("sweep: data.test_fraction is 0, runs are compared on validation cases")
    pretrained = None
    if any(a != "scratch" for a in s.arms):
        pretrained = s.pretrained or str(pretrain_for_sweep(cfg, out))
    runs: list[dict[str, Any]] = []
    for n in s.n_labeled:
        for seed in s.seeds:
            for arm in s.arms:
                run_dir = out / "runs" / f"{arm}_n{n}_seed{seed}"
                summary_path = run_dir / "summary.json"
                if summary_path.is_file():
                    result = json.loads(summary_path.read_text())
                else:
                    log.info("sweep: %s, %d labeled, seed %d", arm, n, seed)
                    res = run_finetune(run_config(cfg, arm, n, seed, pretrained), run_dir)
                    result = json.loads((res.run_dir / "summary.json").read_text())
                value, per_case = _score(result, s.metric)
                runs.append({"arm": arm, "n_labeled": n, "seed": seed, "value": value, "per_case": per_case,
                             "best_step": result.get("best_step"), "seconds": result.get("seconds"),
                             "run": str(run_dir.relative_to(out))})
                write_sweep_report(runs, out, metric=s.metric, n_boot=s.bootstrap,
                                   meta={"pretrained": Path(pretrained).name if pretrained else None,
                                         "network": cfg.model.network})
    return json.loads((out / "report.json").read_text())
