"""Export a model artifact as a MONAI bundle folder, for MONAI tools:

    DIR/configs/metadata.json   versions, task, input/output description, labels, medssl meta
    DIR/configs/inference.json  network_def, preprocessing, sliding-window inferer, postprocessing
    DIR/models/model.pt         the network's state dict

``swin_unetr`` and ``unet`` are written as the MONAI classes themselves; medssl networks
(``cnn_unet``, ``classifier``) as ``medssl.models.registry.build_network`` with their spec,
so loading those needs medssl installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medssl.artifacts.model import ModelArtifact, atomic_torch_save, load_model_artifact
from medssl.errors import CheckpointError

BUNDLE_VERSION = "0.1.0"


def _network_def(spec: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "swin_unetr":
        return {"_target_": "monai.networks.nets.SwinUNETR", "spatial_dims": 3, **kwargs}
    if spec["name"] == "unet":
        return {"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, **kwargs}
    return {"_target_": "medssl.models.registry.build_network", "spec": dict(spec)}


def _preprocessing(pp: dict[str, Any], modality: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": False},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": pp.get("orientation", "RAS")},
    ]
    if pp.get("spacing"):
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(pp["spacing"]), "mode": "bilinear"})
    intensity = pp.get("intensity", "auto")
    if intensity == "auto":
        intensity = "ct_window" if modality == "CT" else "mr_percentile"
    if intensity == "ct_window":
        w = pp.get("ct_window", {})
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": w.get("a_min", -1000.0),
                      "a_max": w.get("a_max", 1000.0), "b_min": 0.0, "b_max": 1.0, "clip": w.get("clip", True)})
    elif intensity == "mr_percentile":
        p = pp.get("mr_percentiles", {})
        steps.append({"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": p.get("lower", 0.5),
                      "upper": p.get("upper", 99.5), "b_min": 0.0, "b_max": 1.0, "clip": False})
    steps.append({"_target_": "EnsureTyped", "keys": "image"})
    return steps


def inference_config(art: ModelArtifact) -> dict[str, Any]:
    inf = art.inference
    return {
        "imports": ["$import torch"],
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": _network_def(art.network),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(art.preprocessing, art.modality)},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(inf.get("roi_size", [96, 96, 96])),
                    "sw_batch_size": int(inf.get("sw_batch_size", 4)), "overlap": float(inf.get("overlap", 0.5))},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        ]},
    }


def metadata(art: ModelArtifact) -> dict[str, Any]:
    n_out = len(art.labels)
    roi = list(art.inference.get("roi_size", [96, 96, 96]))
    return {
        "version": BUNDLE_VERSION,
        "monai_version": art.versions.get("monai", ""),
        "pytorch_version": art.versions.get("torch", ""),
        "name": f"medssl {art.task} ({art.network.get('name')})",
        "task": art.task,
        "description": "Exported by medssl export-bundle from a medssl model artifact.",
        "authors": "medssl",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield" if art.modality == "CT" else "magnitude",
                                 "modality": art.modality, "num_channels": int(art.network.get("in_channels", 1)),
                                 "spatial_shape": roi, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": art.task == "segmentation"}},
            "outputs": {"pred": {"type": "image" if art.task == "segmentation" else "probabilities",
                                 "format": art.task, "num_channels": n_out, "dtype": "float32",
                                 "channel_def": {str(k): v for k, v in art.labels.items()}}},
        },
        "medssl": {"network": art.network, "preprocessing": art.preprocessing, "inference": art.inference,
                   "versions": art.versions, "sha256": art.sha256,
                   "meta": {k: v for k, v in art.meta.items() if k != "config"}},
    }


def export_bundle(artifact: str | Path | ModelArtifact, out: str | Path) -> Path:
    art = artifact if isinstance(artifact, ModelArtifact) else load_model_artifact(artifact)
    out = Path(out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.cpu() for k, v in art.state_dict.items()}, out / "models" / "model.pt")
    for name, content in (("metadata.json", metadata(art)), ("inference.json", inference_config(art))):
        tmp = out / "configs" / f".{name}.tmp"
        tmp.write_text(json.dumps(content, indent=2, default=str))
        tmp.replace(out / "configs" / name)
    return out


# What an untrusted bundle's ``network_def`` may name: the classes ``export_bundle`` writes.
_SAFE_TARGETS = {
    "monai.networks.nets.SwinUNETR": ("monai.networks.nets", "SwinUNETR"),
    "monai.networks.nets.UNet": ("monai.networks.nets", "UNet"),
    "medssl.models.registry.build_network": ("medssl.models.registry", "build_network"),
}
_EXPRESSION_MARKS = ("$", "@", "%")  # MONAI ConfigParser: expression, reference, macro


def load_bundle_network(bundle: str | Path, device: str = "cpu", *, trusted: bool = False) -> torch.nn.Module:
    """Rebuild the network from ``configs/inference.json`` and load ``models/model.pt``
    (weights_only): the check that MONAI tools can use the bundle.

    A bundle's config is a program for MONAI's ConfigParser (``$`` expressions are Python
    ``eval``, ``_target_`` imports and calls anything). Untrusted (the default), only a
    ``network_def`` naming a class that ``export_bundle`` writes, with plain JSON arguments, is
    built, without ConfigParser; anything else raises ``CheckpointError`` (code
    ``untrusted_bundle``) and nothing of it runs. ``trusted=True`` (``--trust-bundle``) hands
    the whole config to ConfigParser."""
    bundle = Path(bundle)
    config_path = bundle / "configs" / "inference.json"
    if trusted:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(config_path)
        net = parser.get_parsed_content("network_def")
    else:
        net = _build_untrusted(config_path)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location=device, weights_only=True))
    return net.to(device).eval()


def _build_untrusted(config_path: Path) -> torch.nn.Module:
    import importlib

    name = f"{config_path.parent.parent.name}/configs/{config_path.name}"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{name}: cannot be read as JSON ({err.__class__.__name__})",
                              code="bad_bundle") from err  # fmt: skip
    spec = config.get("network_def") if isinstance(config, dict) else None
    if not isinstance(spec, dict) or spec.get("_target_") not in _SAFE_TARGETS:
        target = spec.get("_target_") if isinstance(spec, dict) else spec
        raise CheckpointError(f"{name}: network_def {str(target)[:60]!r} is not a network medssl builds from an "
                              "untrusted bundle; pass --trust-bundle (trusted=True) only for a bundle you trust",
                              code="untrusted_bundle")  # fmt: skip
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    where = _expression_in(kwargs, "network_def")
    if where:
        raise CheckpointError(f"{name}: {where} holds a ConfigParser expression, reference or component; "
                              "refused (pass --trust-bundle, trusted=True, only for a bundle you trust)",
                              code="untrusted_bundle")  # fmt: skip
    module, attr = _SAFE_TARGETS[spec["_target_"]]
    try:
        return getattr(importlib.import_module(module), attr)(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{name}: network_def arguments do not build {attr} ({err.__class__.__name__})",
                              code="bad_bundle") from err  # fmt: skip


def _expression_in(value: Any, where: str) -> str:
    """The dotted key of the first string that ConfigParser would evaluate or resolve, or a
    nested component (``_target_``), else ''."""
    if isinstance(value, str):
        return where if value.startswith(_EXPRESSION_MARKS) else ""
    if isinstance(value, dict):
        if "_target_" in value:
            return where
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return ""
    for key, item in items:
        if isinstance(key, str) and key.startswith(_EXPRESSION_MARKS):
            return f"{where}.{key}"
        found = _expression_in(item, f"{where}.{key}")
        if found:
            return found
    return ""
