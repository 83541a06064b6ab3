"""`medssl pretrain` / `medssl finetune` under faults: all checkpoints unreadable (exit 5
naming them, `--restart` sets them aside), disk full and read-only run folders (exit 5 with
the path and the OS message), a truncated best.pt on fine-tune resume."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import medssl.atomic as atomic_mod
from medssl.cli import main
from medssl.data.phantom_io import synth_cohort
from medssl.training.checkpoint import checkpoint_paths

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "pretrain" / "smoke.yaml")
FT_SMOKE = str(REPO / "configs" / "finetune" / "smoke_seg.yaml")
FT_FAST = ["model.network=cnn_unet", "model.encoder={name: cnn, channels: [4, 8, 16]}", "model.kwargs={}",
           "train.crop_size=[16,16,16]", "train.warmup_steps=1", "train.checkpoint_every=2",
           "train.val_every=2", "train.log_every=2"]  # fmt: skip


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    synth_cohort(root, 6, fmt="nifti", shape=(32, 32, 32), seed=0)
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.replace("\r", "\n").splitlines() if "medssl: " in x]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def _pretrain(phantoms: Path, run: Path, steps: int, *extra: str) -> int:
    return main(["pretrain", "--config", SMOKE, "--out", str(run), *extra, f"data.root={phantoms / 'nifti'}",
                 f"data.cache_dir={phantoms / 'cache'}", f"train.max_steps={steps}", "train.checkpoint_every=2",
                 "train.preview_every=0", "train.warmup_steps=1", "train.device=cpu", "data.batch_size=2"])  # fmt: skip


def test_pretrain_unreadable_checkpoints_exit_5_then_restart(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    assert _pretrain(phantoms, run, 4) == 0
    for path in checkpoint_paths(run):
        path.write_bytes(path.read_bytes()[:500])
    history = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert _pretrain(phantoms, run, 6) == 5
    err = _error_line(capsys)
    assert "[no_readable_checkpoint]" in err and "ckpt_00000004.pt" in err and "--restart" in err
    assert (run / "metrics.jsonl").read_bytes() == history
    assert _pretrain(phantoms, run, 2, "--restart") == 0
    assert (run / "checkpoints" / "unreadable" / "metrics.jsonl").read_bytes() == history
    assert [p.name for p in checkpoint_paths(run)] == ["ckpt_00000002.pt"]


def test_pretrain_disk_full_and_read_only_exit_5_with_path(phantoms, tmp_path, capsys, monkeypatch):
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith(".pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic_mod.os, "replace", full)
    assert _pretrain(phantoms, tmp_path / "full", 2) == 5
    err = _error_line(capsys)
    assert "[disk_full]" in err and "No space left on device" in err and "ckpt_00000002.pt" in err
    monkeypatch.undo()

    def read_only(self, target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "replace", read_only)  # config.yaml is the first file written
    assert _pretrain(phantoms, tmp_path / "ro", 2) == 5
    err = _error_line(capsys)
    assert "[read_only]" in err and "Read-only file system" in err and str(tmp_path / "ro") in err


def test_finetune_truncated_best_pt_exit_5_naming_it_then_restart(phantoms, tmp_path, capsys):
    run = tmp_path / "ft"
    args = ["finetune", "--config", FT_SMOKE, "--out", str(run), f"data.root={phantoms}", *FT_FAST]
    assert main([*args, "train.max_steps=2"]) == 0
    best = run / "best.pt"
    best.write_bytes(best.read_bytes()[:300])
    capsys.readouterr()
    assert main([*args, "train.max_steps=4"]) == 5
    err = _error_line(capsys)
    assert "[bad_checkpoint]" in err and str(best) in err and "internal error" not in err
    assert main([*args, "train.max_steps=4", "--restart"]) == 0
    assert (run / "checkpoints" / "unreadable" / "best.pt").is_file() and best.is_file()
