"""Bundle export details that need no MONAI subprocess: offline metadata verification,
medssl's network defaults in network_def, classification bundles without a run workflow."""

from __future__ import annotations

import json

import torch
from monai.bundle import ConfigParser, verify_metadata

from medssl.artifacts.bundle import SCHEMA_NAME, export_bundle, load_bundle_network
from medssl.artifacts.model import ModelArtifact
from medssl.models import build_network


def _artifact(task: str, spec: dict) -> ModelArtifact:
    torch.manual_seed(0)
    labels = {"0": "background", "1": "kidney"} if task == "segmentation" else {"0": "absent", "1": "present"}
    return ModelArtifact(task, spec, build_network(spec).state_dict(), labels, "CT",
                         {"orientation": "RAS", "spacing": [2.0, 2.0, 2.0]}, {"roi_size": [16, 16, 16]})  # fmt: skip


def test_unet_bundle_uses_medssl_defaults_and_verifies_offline(tmp_path, monkeypatch):
    import monai.apps.utils

    def no_download(*args, **kwargs):
        raise AssertionError("verify_metadata tried to download the schema")

    out = export_bundle(_artifact("segmentation", {"name": "unet", "channels": [4, 8], "strides": [2]}), tmp_path / "b")
    network_def = json.loads((out / "configs" / "inference.json").read_text())["network_def"]
    assert network_def["num_res_units"] == 1 and network_def["_target_"] == "monai.networks.nets.UNet"
    assert type(load_bundle_network(out)).__name__ == "UNet"  # the state dict fits
    schema = out / "docs" / SCHEMA_NAME
    monkeypatch.setattr(monai.apps.utils, "_download_with_progress", no_download)
    verify_metadata(meta_file=str(out / "configs" / "metadata.json"), filepath=str(schema))


def test_classification_bundle_has_no_run_workflow(tmp_path):
    spec = {"name": "classifier", "num_classes": 2}
    out = export_bundle(_artifact("classification", spec), tmp_path / "b")
    parser = ConfigParser()
    parser.read_config(out / "configs" / "inference.json")
    assert "run" not in parser.config and "network_def" in parser.config
    steps = [t["_target_"] for t in parser.config["postprocessing"]["transforms"]]
    assert steps == ["Activationsd"]
