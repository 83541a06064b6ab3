"""Weight loading with a report: release layout, wrong names, channel adaptation, formats."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch
from monai.networks.nets import SwinUNETR

from medssl.artifacts.weights import load_pretrained, plan_load, read_weights
from medssl.errors import CheckpointError
from medssl.models import ENCODERS, build_network

FS = 12
TINY = {"depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)}


def release_layout(swin_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A SwinViT state dict renamed like the public model_swinvit.pt, plus its SSL heads."""
    sd = {"module." + k.replace("mlp.linear1", "mlp.fc1").replace("mlp.linear2", "mlp.fc2"): v.clone()
          for k, v in swin_state.items()}
    sd["module.rotation_head.weight"] = torch.zeros(4, 8 * FS)
    sd["module.contrastive_head.weight"] = torch.zeros(512, 16 * FS)
    sd["module.convTrans3d.weight"] = torch.zeros(16 * FS, 1, 1, 1, 1)
    sd["module.norm.weight"] = torch.zeros(16 * FS)
    return sd


@pytest.fixture(scope="module")
def source() -> SwinUNETR:
    torch.manual_seed(1)
    return SwinUNETR(in_channels=1, out_channels=2, feature_size=FS, **TINY)


@pytest.fixture()
def release_file(tmp_path, source):
    path = tmp_path / "model_swinvit.pt"
    torch.save({"state_dict": release_layout(source.swinViT.state_dict()), "epoch": 10}, path)
    return path


def test_release_layout_loads_every_backbone_tensor(release_file, source):
    net = build_network({"name": "swin_unetr", "feature_size": FS, **TINY})
    report = load_pretrained(net, release_file, "swin")
    assert report.source_format == "swinvit_release"
    assert report.loaded == report.total == len(source.swinViT.state_dict())
    assert not report.missing and not report.unexpected and not report.mismatched
    assert len(report.ignored) == 4
    for k, v in source.swinViT.state_dict().items():
        assert torch.equal(net.swinViT.state_dict()[k], v), k


def test_release_layout_loads_into_the_medssl_swin_encoder(release_file, source):
    enc = ENCODERS.build("swin", in_channels=1, feature_size=FS, **TINY)
    report = load_pretrained(enc, release_file)
    assert report.fraction == 1.0 and report.mapping == {"strip": "", "add": ""}
    w = source.swinViT.layers1[0].blocks[0].mlp.linear1.weight
    assert torch.equal(enc.layers1[0].blocks[0].mlp.linear1.weight, w)


def test_common_recipe_without_swinvit_prefix_is_mapped_not_silently_skipped(tmp_path, source):
    # research-contributions #268: strip "module." and load_state_dict(strict=False) loads nothing
    path = tmp_path / "stripped.pt"
    torch.save({k: v for k, v in source.swinViT.state_dict().items()}, path)
    net = build_network({"name": "swin_unetr", "feature_size": FS, **TINY})
    report = load_pretrained(net, path)
    assert report.loaded == report.total and report.mapping["add"] == "swinViT."


def test_wrong_key_names_fail_with_counts_and_leave_model_untouched(tmp_path, source):
    sd = {k.replace("layers", "stage").replace("patch_embed", "stem"): v
          for k, v in release_layout(source.swinViT.state_dict()).items()}
    path = tmp_path / "renamed.pt"
    torch.save({"state_dict": sd}, path)
    net = build_network({"name": "swin_unetr", "feature_size": FS, **TINY})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_pretrained(net, path)
    assert "would load" in str(err.value) and f"of {len(source.swinViT.state_dict())}" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_input_channel_mismatch_adapts_first_layer_with_notice(release_file, source, caplog):
    enc = ENCODERS.build("swin", in_channels=3, feature_size=FS, **TINY)
    with caplog.at_level(logging.WARNING, logger="medssl.weights"):
        report = load_pretrained(enc, release_file)
    assert report.adapted == ["patch_embed.proj.weight"] and report.loaded == report.total
    assert "adapted to 3 input channels" in caplog.text
    w1 = source.swinViT.patch_embed.proj.weight
    w3 = enc.patch_embed.proj.weight
    # an input with equal channels gives the same response as the 1-channel original
    assert torch.allclose(w3.sum(1, keepdim=True), w1, atol=1e-6)


def test_other_shape_mismatch_is_reported(tmp_path, source):
    path = tmp_path / "fs24.pt"
    torch.save(SwinUNETR(in_channels=1, out_channels=2, feature_size=24, **TINY).state_dict(), path)
    enc = ENCODERS.build("swin", in_channels=1, feature_size=FS, **TINY)
    report, _ = plan_load(enc, *read_weights(path))
    assert report.mismatched and report.fraction < 0.9


def test_exported_encoder_and_checkpoint_formats(tmp_path):
    enc = ENCODERS.build("cnn", in_channels=1, channels=(4, 8))
    exported = tmp_path / "encoder.pt"
    torch.save({"format": "medssl.encoder", "encoder": {"name": "cnn", "channels": [4, 8]},
                "state_dict": enc.state_dict()}, exported)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"format": "medssl.checkpoint", "model": {**{"encoder." + k: v for k, v in enc.state_dict().items()},
                                                         "decoder.w": torch.zeros(2)}}, ckpt)
    for path, fmt in ((exported, "medssl.encoder"), (ckpt, "medssl.checkpoint")):
        net = build_network({"name": "cnn_unet", "encoder_kwargs": {"channels": [4, 8]}})
        report = load_pretrained(net, path, "cnn")
        assert report.source_format == fmt and report.loaded == report.total


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_weights(path)


def test_feature_size_48_release_has_126_backbone_tensors():
    enc = ENCODERS.build("swin", in_channels=1, feature_size=48)
    sd = release_layout(enc.state_dict())
    report, _ = plan_load(enc, sd, "swinvit_release")
    assert report.total == 126 and report.loaded == 126 and len(report.ignored) == 4


def test_preprocess_mismatch_with_pretraining_is_warned_and_reported(tmp_path, caplog):
    from medssl.artifacts.weights import check_preprocess
    from medssl.data.preprocess import PreprocessConfig

    enc = ENCODERS.build("cnn", in_channels=1, channels=(4, 8))
    path = tmp_path / "encoder.pt"
    pretrain_data = {"root": "D", "preprocessing": PreprocessConfig().model_dump(mode="json")}  # auto: -1000..1000
    torch.save({"format": "medssl.encoder", "encoder": {"name": "cnn", "channels": [4, 8]},
                "state_dict": enc.state_dict(), "config": {"data": pretrain_data}}, path)
    narrow = PreprocessConfig(intensity="ct_window", ct_window={"a_min": -200, "a_max": 300})
    with caplog.at_level(logging.WARNING, logger="medssl.weights"):
        check = check_preprocess(path, narrow, "CT")
    assert check["checked"] and not check["match"]
    assert check["differences"] == {"ct_window.a_max": {"pretrain": 1000.0, "finetune": 300.0},
                                    "ct_window.a_min": {"pretrain": -1000.0, "finetune": -200.0}}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "ct_window.a_min -1000.0 vs -200.0" in warned and "data.preprocessing" in warned
    caplog.clear()
    same = PreprocessConfig(intensity="ct_window")  # auto resolves to the same window for CT
    with caplog.at_level(logging.WARNING, logger="medssl.weights"):
        assert check_preprocess(path, same, "CT") == {"checked": True, "match": True, "differences": {}}
    assert not caplog.records
    plain = tmp_path / "plain.pt"
    torch.save(enc.state_dict(), plain)
    assert check_preprocess(plain, narrow, "CT")["checked"] is False


def tutorial_layout(swin_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The MONAI tutorial SSL checkpoint's model dict: ``encoder.`` prefix, stages one
    Sequential deeper (``layersN.0.0.``), a mask token and decoder tensors."""
    import re

    sd = {"encoder." + re.sub(r"^(layers\d+)\.0\.", r"\1.0.0.", k): v.clone() for k, v in swin_state.items()}
    sd["encoder.mask_token"] = torch.zeros(1, 1, 8 * FS)
    sd["decoder.conv.weight"] = torch.zeros(4, 4, 3, 3, 3)
    return sd


@pytest.mark.parametrize("fs", [FS, 48])
def test_monai_tutorial_checkpoint_layout_loads_every_backbone_tensor(tmp_path, fs):
    torch.manual_seed(2)
    enc_src = SwinUNETR(in_channels=1, out_channels=2, feature_size=fs).swinViT
    sd = tutorial_layout(enc_src.state_dict())
    assert any(".layers1.0.0.blocks." in k for k in sd)
    path = tmp_path / "ssl_pretrained_weights.pth"
    torch.save({"model": sd, "optimizer": {}, "epoch": 3}, path)
    net = build_network({"name": "swin_unetr", "feature_size": fs})
    report = load_pretrained(net, path, "swin")
    assert report.source_format == "monai_tutorial"
    assert report.loaded == report.total == len(enc_src.state_dict())
    assert (fs != 48) or report.total == 126
    assert "encoder.mask_token" in report.ignored and report.unexpected == ["decoder.conv.weight"]
    key = "layers2.0.blocks.1.attn.qkv.weight"
    assert torch.equal(net.swinViT.state_dict()[key], enc_src.state_dict()[key])
