"""Fine-tune networks, tasks, freezing modes, crop sampling and the MONAI bundle export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.artifacts.bundle import export_bundle, load_bundle_network
from medssl.artifacts.model import ModelArtifact
from medssl.models import build_network
from medssl.tasks.finetune import ClassificationTask, SegmentationTask, balanced_class_weights, voxel_class_weights
from medssl.training.finetune_config import FinetuneConfig
from medssl.data.labeled import PreparedCase, sample_crops
from medssl.training.config import TrainConfig
from medssl.training.finetune_run import encoder_stages, param_groups
from medssl.training.optim import build_optimizer, build_scheduler

CNN = {"encoder": "cnn", "encoder_kwargs": {"channels": [4, 8, 16]}}


def test_networks_shapes():
    x = torch.randn(2, 1, 16, 16, 16)
    assert build_network({"name": "cnn_unet", "out_channels": 3, **CNN})(x).shape == (2, 3, 16, 16, 16)
    assert build_network({"name": "classifier", "num_classes": 4, **CNN})(x).shape == (2, 4)
    swin = build_network({"name": "swin_unetr", "feature_size": 12, "depths": [1, 1, 1, 1],
                          "num_heads": [1, 1, 2, 2], "norm_name": "batch"})
    assert swin(torch.randn(2, 1, 32, 32, 32)).shape == (2, 2, 32, 32, 32)


def _blob_batch(n: int = 2) -> dict[str, torch.Tensor]:
    label = torch.zeros(n, 1, 16, 16, 16, dtype=torch.long)
    label[:, :, 4:10, 4:10, 4:10] = 1
    return {"image": label.float() + 0.1 * torch.randn(n, 1, 16, 16, 16), "label": label}


def test_segmentation_loss_falls():
    torch.manual_seed(0)
    task = SegmentationTask(build_network({"name": "cnn_unet", "out_channels": 2, **CNN}))
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    batch = _blob_batch()
    losses = []
    for _ in range(30):
        out = task(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert set(out) >= {"loss", "dice_ce"} and losses[-1] < 0.7 * losses[0]


def test_voxel_class_weights_by_hand():
    label = np.zeros((10, 10, 10), dtype=np.uint8)
    label[:1] = 1  # 10 % of voxels
    label[1, 0, :4] = 2  # 0.4 %
    w = voxel_class_weights([label], 4)  # class 3 absent
    raw = np.array([1 / np.sqrt(0.896), 1 / np.sqrt(0.1), 1 / np.sqrt(0.004), 1 / np.sqrt(0.004)])
    assert w == pytest.approx(list(raw / raw.mean()))
    assert voxel_class_weights([np.zeros((2, 2, 2))], 3) == pytest.approx([1.0, 1.0, 1.0])


@torch.no_grad()
def test_segmentation_weights_only_the_cross_entropy():
    torch.manual_seed(0)
    net = build_network({"name": "cnn_unet", "out_channels": 2, **CNN})
    batch = _blob_batch()
    weights = [0.5, 2.0]
    got = SegmentationTask(net, weights)(batch)["loss"]
    logits = net(batch["image"])
    dice = SegmentationTask(net).dice(logits, batch["label"])
    ce = torch.nn.functional.cross_entropy(logits, batch["label"][:, 0], weight=torch.tensor(weights))
    assert float(got) == pytest.approx(float(dice + ce), rel=1e-5)


@torch.no_grad()
def test_classification_task_uses_class_weights():
    torch.manual_seed(0)
    net = build_network({"name": "classifier", "num_classes": 2, **CNN})
    batch = {"image": torch.randn(4, 1, 16, 16, 16), "label": torch.tensor([0, 0, 0, 1])}
    plain = ClassificationTask(net)(batch)["loss"]
    weights = balanced_class_weights([0, 0, 0, 1], 2)
    assert weights == pytest.approx([4 / 6, 4 / 2])
    weighted = ClassificationTask(net, weights)(batch)["loss"]
    logits = net(batch["image"])
    expected = torch.nn.functional.cross_entropy(logits, batch["label"], weight=torch.tensor(weights))
    assert float(weighted) == pytest.approx(float(expected), rel=1e-5) and float(weighted) != float(plain)


@pytest.mark.parametrize("mode,trainable", [("linear_probe", 0), ("partial", 1), ("full", 3)])
def test_modes_freeze_encoder_stages(mode, trainable):
    cfg = FinetuneConfig.model_validate({"model": {"mode": mode, "trainable_stages": 1, "layer_decay": 0.5},
                                         "train": {"lr": 1.0}})
    net = build_network({"name": "cnn_unet", "out_channels": 2, **CNN})
    groups = param_groups(net, cfg)
    stages = encoder_stages(net.encoder)
    assert len(stages) == 3
    trained = [all(p.requires_grad for p in s) for s in stages]
    assert trained == [False] * (3 - trainable) + [True] * trainable
    assert all(p.requires_grad for p in net.blocks.parameters())
    assert sorted({g["lr_mult"] for g in groups}) == sorted({1.0, *[0.5 ** (d + 1) for d in range(trainable)]})
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(p.requires_grad for p in net.parameters())
    assert all((g.get("weight_decay") == 0.0) == all(p.ndim == 1 for p in g["params"]) for g in groups)


@pytest.mark.parametrize("pretrained,transfer", [(None, "encoder_decoder"), ("enc.pt", "encoder"),
                                                  ("enc.pt", "encoder_decoder")])
def test_pretrained_lr_mult_scales_only_what_the_checkpoint_loads(pretrained, transfer):
    cfg = FinetuneConfig.model_validate({"model": {"pretrained": pretrained, "transfer": transfer},
                                         "train": {"encoder_lr_mult": 0.5, "pretrained_lr_mult": 0.1}})
    net = build_network({"name": "cnn_unet", "out_channels": 2, **CNN})
    mult = {id(p): g["lr_mult"] for g in param_groups(net, cfg) for p in g["params"]}
    transferred = 0.1 if pretrained else 1.0
    assert [mult[id(p)] for p in net.encoder.parameters()] == pytest.approx([0.5 * transferred] * len(list(net.encoder.parameters())))
    heads = {n: p for n, p in net.named_parameters() if n.startswith(("head.", "out."))}
    assert heads and {mult[id(p)] for p in heads.values()} == {1.0}
    decoder = [p for n, p in net.named_parameters() if not n.startswith("encoder.") and n not in heads]
    assert decoder and {mult[id(p)] for p in decoder} == {0.1 if pretrained and transfer == "encoder_decoder" else 1.0}


def test_sample_crops_shapes_padding_and_foreground():
    img = np.zeros((1, 10, 40, 40), np.float32)
    lab = np.zeros((10, 40, 40), np.int64)
    lab[2:4, 30:33, 30:33] = 1
    case = PreparedCase("c", img, np.eye(4), lab, foreground={1: np.argwhere(lab > 0)})
    x, y = sample_crops([case], 6, (16, 16, 16), 1.0, np.random.default_rng(0))
    assert x.shape == (6, 1, 16, 16, 16) and y.shape == (6, 1, 16, 16, 16) and y.dtype == torch.int64
    assert all(y[i].sum() > 0 for i in range(6))


def test_foreground_crops_see_small_classes_as_often_as_large_ones():
    img = np.zeros((1, 64, 64, 64), np.float32)
    lab = np.zeros((64, 64, 64), np.int64)
    lab[:32] = 1  # a large organ filling half the volume
    lab[56:60, 56:60, 56:60] = 2  # a small one in the far corner
    fg = np.argwhere(lab > 0)
    case = PreparedCase("c", img, np.eye(4), lab, foreground={v: fg[lab[tuple(fg.T)] == v] for v in (1, 2)})
    _, y = sample_crops([case], 200, (8, 8, 8), 1.0, np.random.default_rng(0))
    with_small = sum(bool((y[i] == 2).any()) for i in range(200))
    assert 70 < with_small < 130  # about half, although it holds 0.1 % of the foreground


def test_bundle_export_rebuilds_with_monai(tmp_path):
    spec = {"name": "swin_unetr", "in_channels": 1, "out_channels": 3, "feature_size": 12,
            "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "norm_name": "batch"}
    net = build_network(spec)
    art = ModelArtifact("segmentation", spec, net.state_dict(), {"0": "bg", "1": "a", "2": "b"}, "CT",
                        {"orientation": "RAS", "spacing": [2.0, 2.0, 2.0], "intensity": "ct_window"},
                        {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 1})
    out = export_bundle(art, tmp_path / "bundle")
    assert {p.name for p in (out / "configs").iterdir()} == {"metadata.json", "inference.json"}
    rebuilt = load_bundle_network(out)
    assert type(rebuilt).__name__ == "SwinUNETR"
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net.eval()(x), atol=1e-5)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(out / "configs" / "inference.json")
    assert type(parser.get_parsed_content("preprocessing")).__name__ == "Compose"
    assert list(parser.get_parsed_content("inferer").roi_size) == [32, 32, 32]


def test_head_warmup_holds_the_transferred_weights_then_warms_them_up():
    cfg = FinetuneConfig.model_validate({"model": {"pretrained": "enc.pt", "transfer": "encoder_decoder"},
                                         "train": {"head_warmup_steps": 5, "warmup_steps": 2, "max_steps": 20}})
    net = build_network({"name": "cnn_unet", "out_channels": 2, **CNN})
    groups = param_groups(net, cfg)
    tc = TrainConfig(lr=1.0, warmup_steps=2, max_steps=20)
    opt = build_optimizer(net, tc, torch.device("cpu"), groups)
    sched = build_scheduler(opt, tc)
    held = [g.get("hold_steps", 0) == 5 for g in opt.param_groups]
    assert any(held) and not all(held)  # the heads train from step 0
    lrs = []
    for _ in range(8):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for k, is_held in enumerate(held):
        seen = [step[k] for step in lrs]
        if is_held:
            assert seen[:5] == [0.0] * 5 and 0 < seen[5] < seen[6]  # joins at step 5, warmed up again
        else:
            assert seen[0] > 0
    scratch = FinetuneConfig.model_validate({"train": {"head_warmup_steps": 5}})
    assert not any(g.get("hold_steps") for g in param_groups(net, scratch))  # nothing transferred, nothing held
