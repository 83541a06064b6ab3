"""Training files under faults: unreadable checkpoints, pruning by readability, metrics kept
behind the resume point, disk full and read-only run folders, a broken best.pt."""

import errno
import io
import json
import os
import pickle

import pytest
import torch

import medssl.atomic as atomic_mod
from medssl.errors import CheckpointError
from medssl.training import checkpoint as ckpt_mod
from medssl.training.checkpoint import (
    checkpoint_paths,
    read_best,
    read_checkpoint,
    run_folder_writes,
    set_aside_unreadable,
    set_aside_unreadable_best,
)
from medssl.training.trainer import fit
from tests.unit.training.test_trainer import Toy, batches, cfg


def _steps(run):
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def _corrupt(path, how="truncate"):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncate" else b"not a checkpoint")


def _trained(run, **kw):
    torch.manual_seed(0)
    return fit(Toy(), batches, cfg(**kw), run, config={})


def test_all_unreadable_is_a_typed_error_naming_files_and_history_is_kept(tmp_path):
    _trained(tmp_path)
    for p in checkpoint_paths(tmp_path):
        _corrupt(p)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError) as info:
        _trained(tmp_path, max_steps=16)
    err = info.value
    assert err.exit_status == 5 and err.code == "no_readable_checkpoint"
    assert "ckpt_00000012.pt" in str(err) and "ckpt_00000008.pt" in str(err) and "--restart" in str(err)
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics  # nothing overwritten
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000012.pt", "ckpt_00000008.pt"]


def test_restart_sets_unreadable_files_aside_then_trains_from_zero(tmp_path):
    _trained(tmp_path)
    for p in checkpoint_paths(tmp_path):
        _corrupt(p, "garbage")
    old_metrics = (tmp_path / "metrics.jsonl").read_text()
    moved = set_aside_unreadable(tmp_path)
    assert sorted(p.name for p in moved) == ["ckpt_00000008.pt", "ckpt_00000012.pt", "metrics.jsonl"]
    aside = tmp_path / "checkpoints" / "unreadable"
    assert (aside / "metrics.jsonl").read_text() == old_metrics
    state = _trained(tmp_path, max_steps=8)
    assert state.step == 8 and _steps(tmp_path) == [2, 4, 6, 8]
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000008.pt", "ckpt_00000004.pt"]
    assert set_aside_unreadable(tmp_path) == []  # readable now: nothing moves


def test_pruning_keeps_readable_checkpoints_over_unreadable_higher_steps(tmp_path):
    _trained(tmp_path, max_steps=4)  # one readable checkpoint at step 4
    good = checkpoint_paths(tmp_path)[0].read_bytes()
    for step in (100, 104):  # corrupt leftovers with higher steps
        (tmp_path / "checkpoints" / f"ckpt_{step:08d}.pt").write_bytes(good[:200])
    state = _trained(tmp_path, max_steps=12)
    assert state.step == 12
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000012.pt", "ckpt_00000008.pt"]
    assert all(read_checkpoint(p)["step"] in (8, 12) for p in checkpoint_paths(tmp_path))


def test_resume_from_older_checkpoint_keeps_metrics_up_to_it(tmp_path):
    _trained(tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text().splitlines()
    _corrupt(checkpoint_paths(tmp_path)[0])  # step 12 lost: resume from step 8
    state = _trained(tmp_path, max_steps=12)
    after = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert state.step == 12 and _steps(tmp_path) == [2, 4, 6, 8, 10, 12]
    assert after[:4] == before[:4]  # lines up to the resumed step untouched


def _fail_on_second(monkeypatch, target, name, exc):
    real = getattr(target, name)
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fake)


def _disk_full_error(tmp_path) -> CheckpointError:
    """The error of a training run whose step-8 checkpoint meets a full disk."""
    with pytest.raises(CheckpointError) as info:
        _trained(tmp_path)
    err = info.value
    assert err.code == "disk_full" and err.exit_status == 5
    assert "No space left on device" in str(err) and "ckpt_00000008.pt" in str(err)
    return err


@pytest.mark.parametrize("where", ["os.replace", "torch.save"])
def test_disk_full_is_a_typed_error_with_path_and_os_message(tmp_path, monkeypatch, where):
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "os.replace":
        _fail_on_second(monkeypatch, atomic_mod.os, "replace", exc)
    else:
        _fail_on_second(monkeypatch, ckpt_mod.torch, "save", exc)
    err = _disk_full_error(tmp_path)
    monkeypatch.undo()
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000004.pt"]  # the older one survives
    assert read_checkpoint(checkpoint_paths(tmp_path)[0])["step"] == 4
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files


class _FullDisk(io.FileIO):
    """A file on a disk that is full after 200 bytes: ``write`` raises ENOSPC, as the OS does."""

    def write(self, data):
        if self.tell() + len(data) > 200:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.mark.parametrize("chain", ["__context__", "__cause__"])
def test_disk_full_inside_torch_save_runtime_error_is_disk_full(tmp_path, monkeypatch, chain):
    """torch's zip writer turns a failed write into RuntimeError("unexpected pos ...") with the
    OSError as its __context__: the error reports the OSError, not the RuntimeError."""
    if chain == "__context__":  # the real torch.save, writing the step-8 checkpoint onto a full disk
        monkeypatch.setattr(ckpt_mod, "open", lambda p, mode: (_FullDisk if "ckpt_00000008" in str(p) else io.open)(
            p, mode), raising=False)  # fmt: skip
    else:
        exc = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 297 vs 244")
        exc.__cause__ = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _fail_on_second(monkeypatch, ckpt_mod.torch, "save", exc)
    err = _disk_full_error(tmp_path)
    assert "RuntimeError" not in str(err)
    monkeypatch.undo()
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000004.pt"]  # the older one survives
    assert read_checkpoint(checkpoint_paths(tmp_path)[0])["step"] == 4
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files


def test_read_only_run_folder_is_a_typed_error(tmp_path, monkeypatch):
    # Tests run as root, which chmod does not stop: the OS refusal is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "checkpoints" / "x.tmp"))

    monkeypatch.setattr(atomic_mod.tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError) as info:
        _trained(tmp_path, max_steps=4)
    assert info.value.code == "read_only" and "Read-only file system" in str(info.value)
    assert str(tmp_path / "checkpoints") in str(info.value)


def test_torch_writer_runtime_error_is_typed(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken)
    with pytest.raises(CheckpointError, match="ckpt_00000004.pt") as info:
        _trained(tmp_path, max_steps=4)
    assert info.value.code == "write_failed"


def test_run_folder_writes_maps_os_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No space left") as info:
        with run_folder_writes(tmp_path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "metrics.jsonl"))
    assert info.value.code == "disk_full" and "metrics.jsonl" in str(info.value)
    with pytest.raises(CheckpointError, match="Permission denied"):
        with run_folder_writes(tmp_path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "config.yaml"))
    with pytest.raises(PermissionError):  # a refused read elsewhere is not the run folder's fault
        with run_folder_writes(tmp_path / "run"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/scan.nii.gz")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/medssl-pwned-best",))


@pytest.mark.parametrize("content", ["truncated", "crafted", "foreign"])
def test_broken_best_pt_is_a_typed_error_naming_it(tmp_path, content):
    best = tmp_path / "best.pt"
    if content == "truncated":
        torch.save({"metric": 0.5, "step": 4, "state_dict": {"w": torch.zeros(100)}}, best)
        best.write_bytes(best.read_bytes()[:150])
    elif content == "crafted":
        best.write_bytes(pickle.dumps({"metric": 0.5, "step": 4, "state_dict": _Boom()}))
    else:
        torch.save({"weights": torch.zeros(3)}, best)
    with pytest.raises(CheckpointError) as info:
        read_best(best)
    assert str(best) in str(info.value) and info.value.exit_status == 5
    assert not os.path.exists("/tmp/medssl-pwned-best")
    assert set_aside_unreadable_best(tmp_path) == tmp_path / "checkpoints" / "unreadable" / "best.pt"
    assert not best.exists()
