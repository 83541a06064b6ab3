import pytest
import torch

from medssl.errors import ConfigError
from medssl.tasks import SSLTask, TasksConfig

SPEC = {"name": "cnn", "channels": [4, 8, 16]}


def _batch(seed=3):
    return {"image": torch.rand(2, 1, 20, 20, 20, generator=torch.Generator().manual_seed(0)), "seed": seed}


def test_ssl_task_returns_named_losses_and_is_seeded():
    task = SSLTask(SPEC, TasksConfig(views={"max_shift": 4}, rotation={"weight": 0.5}), 16)
    out = task(_batch())
    assert set(out) == {"loss", "inpaint_l1", "contrastive", "rotation"}
    expected = out["inpaint_l1"] + out["contrastive"] + 0.5 * out["rotation"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert task(_batch())["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-6)
    assert task(_batch(4))["loss"].item() != pytest.approx(out["loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert task.encoder.stages[0][0].conv1.weight.grad is not None
    prev = task.preview(_batch())
    assert set(prev) == {"input", "masked", "recon"} and prev["recon"].shape == (16, 16, 16)


def test_weights_select_tasks_and_validation():
    only = SSLTask(SPEC, TasksConfig(views={"max_shift": 4}, contrastive={"weight": 0}, inpaint={"loss": "mse"}), 16)
    assert set(only(_batch())) == {"loss", "inpaint_mse"}
    with pytest.raises(ConfigError, match="weight 0"):
        SSLTask(SPEC, TasksConfig(inpaint={"weight": 0}, contrastive={"weight": 0}), 16)
    with pytest.raises(ConfigError, match="divisible"):
        SSLTask(SPEC, TasksConfig(), 20)


def test_ssl_task_loss_falls_on_fixed_batch():
    torch.manual_seed(0)
    task = SSLTask(SPEC, TasksConfig(views={"max_shift": 4, "flip_prob": 0}), 16)
    opt = torch.optim.AdamW(task.parameters(), 3e-3)
    losses = []
    for _ in range(15):
        out = task(_batch())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
