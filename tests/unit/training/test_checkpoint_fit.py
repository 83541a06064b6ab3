"""Checkpoints that load but cannot be resumed from: malformed ones count as unreadable (an
older good one is used, with one warning); well-formed ones that do not fit the model are a
typed error that keeps them (``--restart`` sets them aside); the all-unreadable error is one
line with no warnings before it; a best.pt that does not fit the network."""

import logging

import pytest
import torch
from torch import nn

from medssl.errors import CheckpointError
from medssl.training.checkpoint import checkpoint_paths, read_best
from medssl.training.checkpoint_checks import config_diff, state_dict_mismatch
from medssl.training.finetune_run import _load_best
from medssl.training.trainer import fit
from tests.unit.training.test_trainer import Toy, batches, cfg


class Wide(Toy):
    """Toy with two outputs: ``lin`` shaped [2, 4] instead of [1, 4]."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, batch):
        pred = self.lin(self.drop(batch["x"])).mean(1, keepdim=True)
        loss = (pred - batch["y"]).square().mean()
        return {"loss": loss}


def _fit(run, task=None, config=None, **kw):
    torch.manual_seed(0)
    fit_kw = {k: kw.pop(k) for k in ("restart", "param_groups") if k in kw}
    task = task or Toy()
    return fit(task, batches, cfg(**kw), run, config=config or {"model": {"width": 1}}, **fit_kw)


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _rewrite(path, **changes):
    data = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    torch.save(data, path)


MALFORMED = {
    "no optimizer": ({"optimizer": None}, "no 'optimizer' entry"),
    "no step": ({"step": None}, "no 'step' entry"),
    "model a list": ({"model": [1, 2, 3]}, "'model' is list, not dict"),
    "model of ints": ({"model": {"lin.weight": 3}}, "'model' is not a state dict of tensors"),
    "no rng": ({"rng": []}, "'rng' holds no RNG states"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_newest_checkpoint_falls_back_with_one_warning(tmp_path, caplog, case):
    _fit(tmp_path)  # checkpoints at 12 and 8
    changes, why = MALFORMED[case]
    _rewrite(checkpoint_paths(tmp_path)[0], **changes)
    with caplog.at_level(logging.WARNING, logger="medssl.training"):
        state = _fit(tmp_path, max_steps=16)
    assert state.step == 16
    [warning] = _warnings(caplog)
    assert "ckpt_00000012.pt" in warning.getMessage() and why in warning.getMessage()
    assert "resuming from ckpt_00000008.pt" in warning.getMessage()
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000016.pt", "ckpt_00000012.pt"]


def test_all_malformed_is_one_error_line_without_warnings(tmp_path, caplog):
    _fit(tmp_path)
    for p in checkpoint_paths(tmp_path):
        _rewrite(p, optimizer=None)
    with caplog.at_level(logging.DEBUG, logger="medssl.training"), pytest.raises(CheckpointError) as info:
        _fit(tmp_path, max_steps=16)
    assert info.value.code == "no_readable_checkpoint" and info.value.exit_status == 5
    assert "ckpt_00000012.pt: malformed checkpoint (no 'optimizer' entry)" in str(info.value)
    assert "ckpt_00000008.pt" in str(info.value) and "\n" not in str(info.value)
    assert _warnings(caplog) == []  # the CLI prints the error alone: one line
    assert len(checkpoint_paths(tmp_path)) == 2  # nothing deleted


def test_checkpoint_of_another_model_is_a_typed_error_that_keeps_it(tmp_path, caplog):
    _fit(tmp_path)  # Toy at 12 and 8; the older one does not fit either, and is not tried
    before = {p.name: p.read_bytes() for p in checkpoint_paths(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="medssl.training"), pytest.raises(CheckpointError) as info:
        _fit(tmp_path, task=Wide(), config={"model": {"width": 2}}, max_steps=16)
    err = info.value
    assert err.code == "checkpoint_mismatch" and err.exit_status == 5
    assert str(checkpoint_paths(tmp_path)[0]) in str(err)
    assert ("state dict does not match the model: 0 missing, 0 unexpected, 2 shape mismatches "
            "(first: lin.weight [1,4] in the file vs [2,4] in the model)") in str(err)
    assert "another config (changed: model.width)" in str(err) and "--restart" in str(err)
    assert _warnings(caplog) == []  # no "config differs" warning before the error line
    assert {p.name: p.read_bytes() for p in checkpoint_paths(tmp_path)} == before


def test_restart_sets_a_checkpoint_of_another_model_aside(tmp_path):
    _fit(tmp_path)
    state = _fit(tmp_path, task=Wide(), config={"model": {"width": 2}}, max_steps=8, restart=True)
    assert state.step == 8
    aside = sorted(p.name for p in (tmp_path / "checkpoints" / "unreadable").iterdir())
    assert aside == ["ckpt_00000008.pt", "ckpt_00000012.pt", "metrics.jsonl"]
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000008.pt", "ckpt_00000004.pt"]


def test_other_optimizer_groups_are_a_typed_error(tmp_path):
    _fit(tmp_path, max_steps=4)  # default groups: [weight], [bias]
    task = Toy()
    with pytest.raises(CheckpointError, match=r"parameter groups do not match.*\[1, 1\].*\[2\]") as info:
        _fit(tmp_path, task=task, max_steps=8, param_groups=[{"params": list(task.parameters())}])
    assert info.value.code == "checkpoint_mismatch"


def test_config_change_that_fits_resumes_with_a_warning_naming_the_keys(tmp_path, caplog):
    _fit(tmp_path, max_steps=4)
    with caplog.at_level(logging.WARNING, logger="medssl.training"):
        state = _fit(tmp_path, config={"model": {"width": 1}, "lr": 2}, max_steps=8)
    assert state.step == 8
    [warning] = _warnings(caplog)
    assert "differs from the checkpoint's (lr)" in warning.getMessage()


def test_state_dict_mismatch_counts_and_config_diff_keys():
    model = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert state_dict_mismatch(model, dict(model)) is None
    assert state_dict_mismatch(model, {"a": torch.zeros(2), "c": torch.zeros(1), "d": torch.zeros(1)}) == (
        "state dict does not match the model: 1 missing, 2 unexpected, 0 shape mismatches (first: b)")
    saved = {"model": {"encoder": {"channels": [8, 16]}, "name": "cnn"}, "seed": 0}
    now = {"model": {"encoder": {"channels": [4, 8]}, "name": "cnn"}, "seed": 0, "extra": 1}
    assert config_diff(saved, now) == ["extra", "model.encoder.channels"]


def _best(path, state_dict):
    torch.save({"metric": 1.0, "step": 2, "state_dict": state_dict}, path)
    return path


def test_best_pt_that_does_not_fit_the_network_is_a_typed_error(tmp_path):
    best = _best(tmp_path / "best.pt", {"w": torch.zeros(3)})  # loads fine, fits nothing
    with pytest.raises(CheckpointError) as info:
        _load_best(best, nn.Linear(4, 1), restart=False)
    assert info.value.code == "checkpoint_mismatch" and info.value.exit_status == 5
    assert str(best) in str(info.value) and "2 missing, 1 unexpected" in str(info.value)
    assert best.is_file()
    assert _load_best(best, nn.Linear(4, 1), restart=True)["state_dict"] == {}
    assert not best.exists() and (tmp_path / "checkpoints" / "unreadable" / "best.pt").is_file()


def test_best_pt_that_fits_is_returned_and_wrong_value_types_are_unreadable(tmp_path):
    net = nn.Linear(4, 1)
    best = _best(tmp_path / "best.pt", {k: v.clone() for k, v in net.state_dict().items()})
    assert _load_best(best, net, restart=False)["step"] == 2
    _best(best, {"weight": 3, "bias": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not a medssl best-weights file") as info:
        read_best(best)
    assert info.value.code == "bad_checkpoint"
