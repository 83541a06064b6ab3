import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from medssl.errors import MedsslError
from medssl.training.checkpoint import capture_rng, checkpoint_paths, read_checkpoint, restore_rng
from medssl.training.config import TrainConfig
from medssl.training.optim import warmup_cosine
from medssl.training.trainer import fit


class Toy(nn.Module):
    """Linear regression with dropout, so the torch RNG matters for exact resume."""

    def __init__(self, poison_after: int | None = None):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.2)
        self.poison_after = poison_after

    def forward(self, batch):
        pred = self.lin(self.drop(batch["x"]))
        loss = (pred - batch["y"]).square().mean()
        if self.poison_after is not None and batch["i"] >= self.poison_after:
            loss = loss * float("nan")
        return {"loss": loss, "mse": loss.detach()}


def batches(start):
    def gen():
        i = start
        while True:
            g = torch.Generator().manual_seed(i)
            x = torch.randn(8, 4, generator=g)
            yield {"x": x, "y": x.sum(1, keepdim=True) * 0.5, "i": i}
            i += 1

    return gen()


def cfg(**kw):
    base = dict(max_steps=12, lr=0.05, warmup_steps=2, checkpoint_every=4, log_every=2, device="cpu",
                tensorboard=False, progress=False, accum_steps=2)
    return TrainConfig(**{**base, **kw})


def test_fit_logs_checkpoints_and_loss_falls(tmp_path):
    torch.manual_seed(0)
    state = fit(Toy(), batches, cfg(), tmp_path, config={"k": 1})
    assert state.step == 12
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert {"loss", "mse", "lr", "data_wait", "it_s"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt_00000012.pt", "ckpt_00000008.pt"]
    ckpt = read_checkpoint(checkpoint_paths(tmp_path)[0])  # weights_only=True inside
    assert ckpt["config"] == {"k": 1} and ckpt["data_position"] == 24


def test_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    full = fit(Toy(), batches, cfg(ema=0.9), tmp_path / "a", config={})
    torch.manual_seed(0)

    def crash(state):
        if state.step == 10:
            raise KeyboardInterrupt  # killed after the step-8 checkpoint, step 10 logged

    with pytest.raises(KeyboardInterrupt):
        fit(Toy(), batches, cfg(ema=0.9), tmp_path / "b", config={}, hooks=[crash])
    random.random(), np.random.rand(), torch.rand(3)  # disturb every RNG between the runs
    torch.manual_seed(0)
    resumed = fit(Toy(), batches, cfg(ema=0.9), tmp_path / "b", config={})
    for k, v in full.task.state_dict().items():
        assert torch.equal(v, resumed.task.state_dict()[k]), k
    for k, v in full.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_non_finite_guard_skips_then_stops(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(MedsslError, match="not finite for 3 steps") as err:
        fit(Toy(poison_after=6), batches, cfg(max_bad_steps=3, accum_steps=1), tmp_path, config={})
    assert err.value.code == "non_finite_loss"
    torch.manual_seed(0)
    state = fit(Toy(poison_after=10), batches, cfg(max_steps=11, max_bad_steps=3, accum_steps=1), tmp_path / "b", config={})
    assert state.bad_steps == 1 and all(torch.isfinite(p).all() for p in state.task.parameters())


class OneNan(Toy):
    def forward(self, batch):
        out = super().forward(batch)
        if batch["i"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_fp16_scaler_survives_one_non_finite_step(tmp_path):
    torch.manual_seed(0)
    state = fit(OneNan(), batches, cfg(amp="fp16", max_steps=8, accum_steps=1), tmp_path, config={})
    assert state.step == 8 and state.bad_steps == 1
    assert all(torch.isfinite(p).all() for p in state.task.parameters())
    scaler = read_checkpoint(checkpoint_paths(tmp_path)[0])["scaler"]
    assert 0 < scaler["scale"] < 2.0**16  # the skipped step (and any fp16 overflow) lowered it


def test_rng_state_roundtrip_weights_only(tmp_path):
    state = capture_rng()
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(loaded)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect


def test_warmup_cosine_shape():
    c = TrainConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert warmup_cosine(0, c) == pytest.approx(0.1)
    assert warmup_cosine(9, c) == pytest.approx(1.0)
    assert warmup_cosine(10, c) == pytest.approx(1.0)
    assert warmup_cosine(100, c) == pytest.approx(0.1)
    assert warmup_cosine(55, c) == pytest.approx(0.55)


def test_pretrain_config_rejects_typos():
    from medssl.config import load_config
    from medssl.errors import ConfigError
    from medssl.training.pretrain_config import PretrainConfig

    with pytest.raises(ConfigError, match="did you mean 'swin'"):
        load_config(PretrainConfig, None, ["model.encoder.name=swim"])
    with pytest.raises(ConfigError, match="unknown key 'tasks.inpaint.ratoi'"):
        load_config(PretrainConfig, None, ["tasks.inpaint.ratoi=0.3"])
    cfg = load_config(PretrainConfig, None, ["data.root=/x", "train.max_steps=40", "seed=11"])
    assert (cfg.train.max_steps, cfg.seed, str(cfg.data.root)) == (40, 11, "/x")


def test_custom_param_groups_lr_mult(tmp_path):
    torch.manual_seed(0)
    toy = Toy()
    groups = [{"params": [toy.lin.weight], "lr_mult": 0.1}, {"params": [toy.lin.bias], "weight_decay": 0.0}]
    state = fit(toy, batches, cfg(max_steps=2, warmup_steps=0), tmp_path, config={}, param_groups=groups)
    lrs = [g["lr"] for g in state.optimizer.param_groups]
    assert lrs[0] == pytest.approx(0.1 * lrs[1])
    assert state.optimizer.param_groups[1]["weight_decay"] == 0.0
