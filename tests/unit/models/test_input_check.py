"""Impossible network / crop combinations are ConfigErrors (exit 4) naming the keys."""

from __future__ import annotations

import pytest

from medssl.cli import main
from medssl.config import validate_config
from medssl.errors import EXIT_CONFIG, ConfigError
from medssl.models.input_check import check_network_input
from medssl.training.finetune_config import FinetuneConfig

CROP = {"train.crop_size": (32, 32, 32)}


@pytest.mark.parametrize(("network", "kwargs", "sizes", "needles"), [
    ("swin_unetr", {"feature_size": 48}, CROP, ["train.crop_size", "model.kwargs.norm_name", "instance"]),
    ("swin_unetr", {"norm_name": "batch"}, {"train.crop_size": (48, 32, 32)}, ["train.crop_size", "multiple of 32"]),
    ("swin_unetr", {"norm_name": "batch"}, {"train.crop_size": (64, 64, 64), "inference.roi_size": (96, 96, 80)},
     ["inference.roi_size"]),
    ("swin_unetr", {"feature_size": 20, "norm_name": "batch"}, CROP, ["model.encoder.feature_size", "12"]),
    ("swin_unetr", {"feature_size": 12, "num_heads": [1, 5, 2, 2], "norm_name": "batch"}, CROP,
     ["model.encoder.num_heads[1]", "24"]),
    ("unet", {"strides": [2, 2, 2]}, {"train.crop_size": (20, 16, 16)}, ["train.crop_size", "multiple of 8"]),
    ("unet", {"strides": [2, 2]}, {"train.crop_size": (4, 4, 4)}, ["one voxel"]),
])  # fmt: skip
def test_impossible_combinations_name_the_keys(network, kwargs, sizes, needles):
    with pytest.raises(ConfigError) as err:
        check_network_input(network, kwargs, sizes)
    for needle in needles:
        assert needle in str(err.value)


def test_possible_combinations_pass():
    check_network_input("swin_unetr", {"norm_name": "batch"}, CROP, batch_size=2)
    check_network_input("swin_unetr", {}, {"train.crop_size": (64, 32, 32)})  # 2 voxels at 1/32
    check_network_input("unet", {"strides": [2, 2]}, {"train.crop_size": (16, 16, 16)})
    check_network_input("cnn_unet", {}, {"train.crop_size": (17, 5, 3)})  # not checked here
    with pytest.raises(ConfigError, match="batch_size"):
        check_network_input("swin_unetr", {"norm_name": "batch"}, CROP, batch_size=1)


def test_finetune_config_rejects_at_load_time():
    data = {"model": {"network": "swin_unetr", "encoder": {"name": "swin", "feature_size": 48}},
            "train": {"crop_size": [32, 32, 32]}, "inference": {"roi_size": [32, 32, 32]}}  # fmt: skip
    with pytest.raises(ConfigError, match="train.crop_size"):
        validate_config(FinetuneConfig, data)
    validate_config(FinetuneConfig, {})  # the defaults fit


def test_cli_exit_code_is_config(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[3] / "configs" / "finetune" / "smoke_seg.yaml"
    rc = main(["finetune", "--config", str(config), "--out", str(tmp_path / "run"), f"data.root={tmp_path}",
               "model.encoder.feature_size=48", "model.kwargs.norm_name=instance", "model.encoder.num_heads=[3,6,12,24]"])
    assert rc == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "train.crop_size" in err and "model.kwargs.norm_name" in err and "Traceback" not in err
