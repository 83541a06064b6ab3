"""TensorBoard event files of a tiny SSL run, read back with TensorBoard's EventAccumulator:
grouped scalar tags, preview images (input, masked view, reconstruction) and hparams."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from medssl.tasks import SSLTask, TasksConfig
from medssl.training.config import TrainConfig
from medssl.training.tensorboard import TensorBoardWriter, flatten_hparams, mid_slice, tag_for
from medssl.training.trainer import fit


def _batches(start):
    def gen():
        i = start
        while True:
            yield {"image": torch.rand(2, 1, 20, 20, 20, generator=torch.Generator().manual_seed(i)), "seed": i}
            i += 1

    return gen()


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize(("key", "tag"), [("loss", "train/loss"), ("lr", "train/lr"), ("val_dice", "val/dice"),
                                          ("contrastive", "ssl/contrastive"), ("val/x", "val/x")])  # fmt: skip
def test_tags_are_grouped(key, tag):
    assert tag_for(key, "ssl") == tag


def test_ssl_run_writes_grouped_scalars_images_and_hparams(tmp_path):
    torch.manual_seed(0)
    task = SSLTask({"name": "cnn", "channels": [4, 8, 16]}, TasksConfig(views={"max_shift": 4}), 16)
    cfg = TrainConfig(max_steps=4, lr=1e-3, warmup_steps=1, checkpoint_every=4, log_every=2, preview_every=2,
                      device="cpu", tensorboard=True, progress=False)  # fmt: skip
    config = {"train": {"lr": 1e-3, "max_steps": 4, "amp": "auto"}, "model": {"channels": [4, 8, 16]}}
    state = fit(task, _batches, cfg, tmp_path, config=config)
    state.tensorboard.scalars(4, {"val_metric": 0.5})  # as the fine-tune validation hook does
    state.tensorboard.flush()

    acc = _events(tmp_path / "tb")
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/it_s", "ssl/inpaint_l1", "ssl/contrastive", "val/metric"} <= scalars
    assert all(t.split("/")[0] in ("train", "ssl", "val") for t in scalars)
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert set(acc.Tags()["images"]) == {"images/input", "images/masked", "images/recon"}
    image = acc.Images("images/recon")[-1]
    assert (image.step, image.width, image.height) == (4, 16, 16)
    content = acc.PluginTagToContent("hparams")
    start = next(plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()
                 if plugin_data_pb2.HParamsPluginData.FromString(v).HasField("session_start_info"))  # fmt: skip
    hp = start.session_start_info.hparams
    assert hp["train.lr"].number_value == pytest.approx(1e-3) and hp["train.amp"].string_value == "auto"
    assert hp["model.channels"].string_value == "[4, 8, 16]"


def test_mid_slice_is_axial_with_anterior_up():
    vol = torch.zeros(4, 6, 5)
    vol[1, 5, 2] = 2.0  # highest y (anterior in RAS), mid z
    img = mid_slice(vol)
    assert img.shape == (1, 6, 4) and img[0, 0, 1] == 1.0  # clamped to [0, 1], top row


def test_flatten_hparams_keeps_scalar_leaves():
    flat = flatten_hparams({"a": {"b": 1, "c": [1, 2], "d": None, "e": {"f": "x"}}, "g": True})
    assert flat == {"a.b": 1, "a.c": "[1, 2]", "a.e.f": "x", "g": True}


def test_writer_skips_non_numbers(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.scalars(1, {"loss": 1.0, "note": "text", "flag": True})
    writer.close()
    assert set(_events(tmp_path).Tags()["scalars"]) == {"train/loss"}
