"""Label-efficiency sweep: labeled-case counts x seeds x arms (scratch, pretrained,
linear_probe), every run scored on the same held-out test cases.

Protocol (what makes a difference trustworthy):

- One split for the whole sweep (``data.split_seed``): fixed test and validation cases, a
  labeled pool; seed ``s`` draws the ``n`` labeled cases from the pool (nested across ``n``),
  the same for every arm.
- Pretraining (unless ``sweep.pretrained`` names a checkpoint) runs on
  ``sweep.pretrain_data`` (a folder or a manifest; default ``data.root``'s images) minus
  every scan that is a validation or test case or a pixel-identical twin of one (a DICOM
  series and its NIfTI conversion count once). ``OUT/splits.json`` lists where every case went.
- Both arms get the same fine-tune budget, validation schedule, early stopping and
  augmentation; they differ only in the initial weights.
- ``report.*`` is rewritten after each run and says ``partial`` until every arm holds every
  planned seed (see :mod:`medssl.evaluation.report`).
Runs already finished in ``OUT/runs/`` are reused, so an interrupted sweep continues.
``sweep.parallel`` runs that many fine-tunes at once in separate processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from medssl.atomic import atomic_path
from medssl.config import load_config
from medssl.data.datalist import load_cases
from medssl.data.feed import PretrainDataConfig, list_volumes
from medssl.data.phantom_io import synth_cohort
from medssl.data.twins import fingerprints, unique_by_pixels
from medssl.errors import ConfigError
from medssl.evaluation.probe import run_segmentation_probe
from medssl.evaluation.report import write_sweep_report
from medssl.training.finetune_config import FinetuneConfig, SweepConfig
from medssl.training.finetune_run import run_finetune
from medssl.training.pretrain import export_encoder, run_pretrain
from medssl.training.pretrain_config import PretrainConfig

log = logging.getLogger("medssl.sweep")


def plan_splits(cfg: SweepConfig) -> dict[str, Any]:
    """Test, validation and labeled-pool case ids, and each (n, seed)'s labeled cases."""
    d, s = cfg.data, cfg.sweep
    cases = load_cases(d)
    base = d.split(cases)
    subsets = {}
    for n in s.n_labeled:
        for seed in s.seeds:
            sp = d.split(cases, n_train=n, train_seed=seed)
            subsets[f"n{n}_seed{seed}"] = [c.case_id for c in sp.train]
    return {"test": [c.case_id for c in base.test], "val": [c.case_id for c in base.val],
            "labeled_pool": [c.case_id for c in base.train], "labeled_subsets": subsets,
            "_held_out_images": [c.image for c in base.test + base.val]}


def pretraining_pool(cfg: SweepConfig, held_out: list[Path]) -> tuple[list[Path], dict[str, Any]]:
    """The scans pretraining may see: the pool minus held-out cases and their twins."""
    s = cfg.sweep
    source = Path(s.pretrain_data or cfg.data.root)
    pcfg = PretrainDataConfig(manifest=source) if source.suffix == ".jsonl" else PretrainDataConfig(root=source)
    pool = list_volumes(pcfg)
    prints = fingerprints(pool)
    held = fingerprints([(p, None) for p in held_out]) if s.exclude_eval_from_pretraining else {}
    held_prints = {fp for fp in held.values() if fp is not None}
    held_paths = {p.resolve() for p in held_out} if s.exclude_eval_from_pretraining else set()
    excluded = [p for p, fp in prints.items() if p.resolve() in held_paths or (fp is not None and fp in held_prints)]
    unique, twins = unique_by_pixels({p: fp for p, fp in prints.items() if p not in excluded})
    if not unique:
        raise ConfigError("sweep: no scan left for pretraining once validation and test cases (and their twins) "
                          "are excluded; set sweep.pretrain_data to an unlabeled pool")
    info = {"source": source.name, "scans_found": len(pool), "used": len(unique),
            "excluded_as_held_out": sorted(p.name for p in excluded),
            "twins_counted_once": {p.name: k.name for p, k in twins.items()},
            "unreadable": sorted(p.name for p, fp in prints.items() if fp is None)}
    return unique, info


def pretrain_for_sweep(cfg: SweepConfig, out: Path, files: list[Path]) -> Path:
    """Run the configured pretraining on ``files`` (resumable) and export its encoder."""
    s = cfg.sweep
    if not s.pretrain_config:
        raise ConfigError("sweep: set sweep.pretrained (a checkpoint) or sweep.pretrain_config (to pretrain first)")
    pcfg = load_config(PretrainConfig, s.pretrain_config, s.pretrain_overrides)
    # the encoder must see the intensities it will be fine-tuned on, and only the pool's scans
    data = pcfg.data.model_copy(update={"root": None, "manifest": None, "files": files,
                                        "preprocessing": cfg.data.preprocessing.model_copy(deep=True)})
    pcfg = pcfg.model_copy(update={"data": data})
    pcfg = PretrainConfig.model_validate(pcfg.model_dump())  # re-validate the assembled config
    run_dir = out / "pretrain"
    encoder = run_dir / "encoder.pt"
    if not encoder.is_file():
        log.info("sweep: pretraining %s on %d scans for %d steps first", pcfg.model.encoder.name, len(files),
                 pcfg.train.max_steps)
        run_pretrain(pcfg, run_dir)
        export_encoder(run_dir, encoder)
    return encoder


def run_config(cfg: SweepConfig, arm: str, n: int, seed: int, pretrained: str | None) -> FinetuneConfig:
    run = FinetuneConfig.model_validate(cfg.model_dump(exclude={"sweep"}))
    run.data.n_train = n
    run.seed = seed
    run.model.pretrained = None if arm == "scratch" else pretrained
    run.model.mode = "linear_probe" if arm == "linear_probe" else cfg.model.mode
    if arm == "scratch":
        run.model.transfer = "encoder"
    return run


def _score(result: dict[str, Any], metric: str) -> tuple[float, list[float], list[str]]:
    """The run's mean test metric, its per-case values and the test case ids."""
    test = result.get("test")
    if not test:
        raise ConfigError("sweep: runs need test cases (set data.test_fraction > 0)")
    key = "mean_dice" if metric == "dice" else metric
    per_case = [float(r.get(key, float("nan"))) for r in test.get("per_case", [])]
    ids = [str(r.get("case")) for r in test.get("per_case", [])]
    summary = test["summary"].get(metric)
    mean = summary["mean"] if isinstance(summary, dict) else float(summary)
    return float(mean), per_case, ids


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))


def synth_data(cfg: SweepConfig, out: Path) -> SweepConfig:
    """Generate the sweep's own phantom cohorts (once) and point the config at them."""
    syn = cfg.sweep.synth
    if syn is None:
        return cfg
    roots = {"labeled": out / "data" / "labeled", "unlabeled": out / "data" / "unlabeled"}
    # cohort seeds differ, so no subject is in both pools
    for (name, root), n, seed in zip(roots.items(), (syn.labeled, syn.unlabeled), (2 * syn.seed, 2 * syn.seed + 1)):
        if not (root / "dataset.json").is_file():
            log.info("sweep: writing %d %s phantoms to %s", n, name, root)
            synth_cohort(root, n, fmt="nifti", seed=seed, shape=syn.shape, appearance=syn.appearance,
                         anatomy=syn.anatomy, lesions=syn.lesions, dose=syn.dose)
    cfg = cfg.model_copy(deep=True)
    cfg.data.root = str(roots["labeled"])
    cfg.sweep.pretrain_data = str(roots["unlabeled"])
    return cfg


def run_sweep(cfg: SweepConfig, out: str | Path) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.sweep.synth is not None:
        cfg = synth_data(cfg, out)
    s = cfg.sweep
    splits = plan_splits(cfg)
    held_out = splits.pop("_held_out_images")
    pretrained, pool_info = s.pretrained, None
    needs_pretraining = any(a != "scratch" for a in s.arms) and not pretrained
    if needs_pretraining:
        files, pool_info = pretraining_pool(cfg, held_out)
        splits["pretraining"] = pool_info
    _write_json(out / "splits.json", splits)  # before pretraining, so a crash still says where cases went
    if needs_pretraining:
        pretrained = str(pretrain_for_sweep(cfg, out, files))
    plan = {"n_labeled": list(s.n_labeled), "seeds": list(s.seeds), "arms": list(s.arms)}
    meta = {"pretrained": Path(pretrained).name if pretrained else None, "network": cfg.model.network,
            "transfer": cfg.model.transfer, "test_cases": len(splits["test"]), "val_cases": len(splits["val"]),
            "pretraining_scans": pool_info["used"] if pool_info else "given checkpoint",
            "budget": f"max {cfg.train.max_steps} steps, validation every {cfg.train.val_every}, "
                      f"patience {cfg.train.patience or 'off'}, augment {cfg.train.augment}"}
    extra: dict[str, Any] = {"splits": {k: v for k, v in splits.items() if k != "labeled_subsets"}}
    if s.probe and pretrained and cfg.target == "label_map":  # the probe segments voxels
        probe_path = out / "probe.json"
        if not probe_path.is_file():
            _write_json(probe_path, run_segmentation_probe(cfg, pretrained, n_train=max(s.n_labeled)))
        extra["probe"] = json.loads(probe_path.read_text())
    if s.parallel > 1:
        meta["parallel"] = f"{s.parallel} runs at once, {_threads(s.parallel)} torch thread(s) each"
    planned = [(arm, n, seed) for n in s.n_labeled for seed in s.seeds for arm in s.arms]
    done: dict[tuple[str, int, int], dict[str, Any]] = {}

    def collect(arm: str, n: int, seed: int) -> None:
        run_dir = _run_dir(out, arm, n, seed)
        result = json.loads((run_dir / "summary.json").read_text())
        value, per_case, ids = _score(result, s.metric)
        done[(arm, n, seed)] = {"arm": arm, "n_labeled": n, "seed": seed, "value": value, "per_case": per_case,
                                "test_cases": ids, "train_cases": result.get("train_cases"),
                                "best_step": result.get("best_step"), "seconds": result.get("seconds"),
                                "run": str(run_dir.relative_to(out))}

    def report() -> None:
        runs = [done[k] for k in planned if k in done]  # plan order, whichever finished first
        write_sweep_report(runs, out, metric=s.metric, n_boot=s.bootstrap, plan=plan, meta=meta, extra=extra)

    def finished(arm: str, n: int, seed: int) -> None:
        collect(arm, n, seed)
        report()

    todo = []
    for key in planned:
        if (_run_dir(out, *key) / "summary.json").is_file():
            collect(*key)  # kept from an earlier invocation
        else:
            todo.append(key)
    if done:
        report()  # once for everything kept, not once per kept run
    if s.parallel == 1 or len(todo) <= 1:
        for arm, n, seed in todo:
            log.info("sweep: %s, %d labeled, seed %d", arm, n, seed)
            run_finetune(run_config(cfg, arm, n, seed, pretrained), _run_dir(out, arm, n, seed))
            finished(arm, n, seed)
    else:
        _run_parallel(cfg, out, pretrained, todo, finished)
    return json.loads((out / "report.json").read_text())


def _run_dir(out: Path, arm: str, n: int, seed: int) -> Path:
    return out / "runs" / f"{arm}_n{n}_seed{seed}"


def _threads(parallel: int) -> int:
    return max(1, (os.cpu_count() or 1) // parallel)


def _worker_init(threads: int, level: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


def _worker_run(cfg: SweepConfig, arm: str, n: int, seed: int, pretrained: str | None, run_dir: Path) -> None:
    log.info("sweep: %s, %d labeled, seed %d (worker %d)", arm, n, seed, os.getpid())
    run_finetune(run_config(cfg, arm, n, seed, pretrained), run_dir)


def _run_parallel(cfg: SweepConfig, out: Path, pretrained: str | None, todo: list[tuple[str, int, int]],
                  finished) -> None:
    """Fine-tunes in ``sweep.parallel`` spawned processes; the report grows as each ends.
    A failed run stops the sweep once the others in flight are done (rerun to continue)."""
    s = cfg.sweep
    ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools or CUDA state
    level = logging.getLogger().getEffectiveLevel()
    with ProcessPoolExecutor(s.parallel, mp_context=ctx, initializer=_worker_init,
                             initargs=(_threads(s.parallel), level)) as pool:
        pending = {pool.submit(_worker_run, cfg, arm, n, seed, pretrained, _run_dir(out, arm, n, seed)): (arm, n, seed)
                   for arm, n, seed in todo}
        error: BaseException | None = None
        while pending:
            ended, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ended:
                key = pending.pop(fut)
                if fut.cancelled():
                    continue
                if fut.exception() is not None:
                    error = error or fut.exception()
                    for other in pending:
                        other.cancel()
                    continue
                finished(*key)
        if error is not None:
            raise error
