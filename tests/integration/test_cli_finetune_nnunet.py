"""A two-channel nnU-Net v2 raw dataset fine-tunes as it is, without conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medssl.artifacts.model import load_model_artifact
from medssl.cli import main
from medssl.data.phantom import make_phantom
from medssl.io import write_nifti

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "smoke_seg.yaml"


def _two_channel_dataset(root: Path, n: int = 5) -> Path:
    """Phantoms as Dataset001_Phantom: channel 0 the CT, channel 1 a contrast-like copy;
    labels liver/kidney/spleen (other phantom structures -> background)."""
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        image, label, affine = make_phantom(i, shape=(32, 32, 32))
        case = f"phantom_{i:03d}"
        write_nifti(image.astype(np.int16), affine, root / "imagesTr" / f"{case}_0000.nii.gz")
        write_nifti((0.5 * image + 40 * (label == 1)).astype(np.int16), affine, root / "imagesTr" / f"{case}_0001.nii.gz")
        write_nifti(np.where(label <= 3, label, 0).astype(np.uint8), affine, root / "labelsTr" / f"{case}.nii.gz")
    doc = {"channel_names": {"0": "CT", "1": "CT_contrast"}, "labels": {"background": 0, "liver": 1, "kidney": 2,
           "spleen": 3}, "numTraining": n, "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(doc, indent=1))
    return root


def test_two_channel_v2_dataset_finetunes_without_conversion(tmp_path):
    data = _two_channel_dataset(tmp_path / "Dataset001_Phantom")
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"].update(root=str(data), labels=None, label_map=None)  # names and values from dataset.json
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["-q", "finetune", "--config", str(config), "--out", str(run), "train.max_steps=4",
                 "train.val_every=4", "train.log_every=2", "train.device=cpu"]) == 0  # fmt: skip
    art = load_model_artifact(run)
    assert art.network["in_channels"] == 2
    assert art.labels == {"0": "background", "1": "liver", "2": "kidney", "3": "spleen"}
    assert [json.loads(line)["step"] for line in (run / "val.jsonl").read_text().splitlines()] == [4]
