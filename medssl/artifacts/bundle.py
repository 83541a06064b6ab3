"""Export a model artifact as a MONAI bundle folder that MONAI's own tools accept:

    DIR/configs/metadata.json   versions, task, input/output description, labels, medssl meta
    DIR/configs/inference.json  a complete inference workflow (``monai.bundle run``)
    DIR/models/model.pt         the network's state dict
    DIR/docs/meta_schema_20240725.json  MONAI's metadata schema, so verifying needs no download

Check and run it with MONAI alone (``fire`` and ``jsonschema`` installed)::

    python -m monai.bundle verify_metadata --meta_file DIR/configs/metadata.json \
        --filepath DIR/docs/meta_schema_20240725.json
    python -m monai.bundle run --config_file DIR/configs/inference.json --bundle_root DIR \
        --dataset_dir SCANS --output_dir OUT

``run`` writes ``OUT/CASE.nii.gz`` for every ``SCANS/CASE.nii.gz``: the label map on the
scan's own grid, as ``medssl predict`` writes it. The preprocessing is the artifact's own
(``PreprocessConfig`` resolved for its modality: orientation, spacing, foreground crop, CT
window or clipped MR percentiles); the inferer is a Gaussian-blended sliding window with the
artifact's window settings; softmax probabilities are resampled onto the scan's grid
(``ResampleToMatchd``, see ``_postprocessing``) before the argmax, as medssl resamples
probabilities, not labels. Weights load with
``torch.load(weights_only=True)``.

``swin_unetr`` and ``unet`` are written as the MONAI classes themselves; medssl networks
(``cnn_unet``, ``classifier``) as ``medssl.models.registry.build_network`` with their spec,
so loading those needs medssl installed."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import torch

import medssl
from medssl.artifacts.model import ModelArtifact, atomic_torch_save, load_model_artifact
from medssl.data.preprocess import CROP_MARGIN, FOREGROUND_HU, RAS_LABELS, intensity_mode
from medssl.errors import CheckpointError
from medssl.models.registry import NETWORKS
from medssl.tasks.kinds import task_kind

BUNDLE_VERSION = "0.1.0"
SCHEMA_NAME = "meta_schema_20240725.json"
SCHEMA_URL = f"https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/{SCHEMA_NAME}"
SCHEMA_FILE = Path(__file__).with_name("schema") / SCHEMA_NAME  # shipped: verifying needs no network


def _network_def(spec: dict[str, Any]) -> dict[str, Any]:
    """The MONAI class with medssl's factory defaults filled in (they differ from MONAI's own,
    e.g. ``num_res_units``), so the state dict fits; other networks through medssl."""
    if spec["name"] in _MONAI_CLASSES:
        params = inspect.signature(NETWORKS.get(spec["name"])).parameters.values()
        defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in {**defaults, **spec}.items() if k != "name"}
        return {"_target_": _MONAI_CLASSES[spec["name"]], **kwargs, "spatial_dims": 3}
    return {"_target_": "medssl.models.registry.build_network", "spec": dict(spec)}


_MONAI_CLASSES = {"swin_unetr": "monai.networks.nets.SwinUNETR", "unet": "monai.networks.nets.UNet"}


def _preprocessing(art: ModelArtifact) -> list[dict[str, Any]]:
    """The artifact's typed preprocessing as MONAI dict transforms (``medssl.data.preprocess``)."""
    cfg = art.preprocessing
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": True, "dtype": "$np.float32"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "CopyItemsd", "keys": "image", "names": "source"},  # the scan's own grid, for the output
        {"_target_": "Orientationd", "keys": "image", "axcodes": cfg.orientation,
         "labels": [list(pair) for pair in RAS_LABELS]},
    ]  # fmt: skip
    if cfg.spacing is not None:
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(cfg.spacing), "mode": "bilinear",
                      "dtype": "$np.float32"})  # fmt: skip
    if cfg.crop_foreground:
        select = f"$lambda x: x > {FOREGROUND_HU}" if art.modality.upper() == "CT" else "$lambda x: x > 0.1 * x.float().mean()"
        steps.append({"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "select_fn": select,
                      "margin": CROP_MARGIN, "allow_smaller": True})  # fmt: skip
    mode = intensity_mode(cfg, art.modality)
    if mode == "ct_window":
        w = cfg.ct_window
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": w.a_min, "a_max": w.a_max,
                      "b_min": 0.0, "b_max": 1.0, "clip": w.clip})  # fmt: skip
    elif mode == "mr_percentile":
        p = cfg.mr_percentiles
        steps.append({"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": p.lower,
                      "upper": p.upper, "b_min": 0.0, "b_max": 1.0, "clip": True})  # fmt: skip
    steps.append({"_target_": "EnsureTyped", "keys": "image"})
    return steps


def _postprocessing(art: ModelArtifact) -> list[dict[str, Any]]:
    """Probabilities (softmax; sigmoid for one channel) resampled onto the scan's own grid,
    the share outside the model's field of view given to background, argmax, saved.

    The resampling is ``ResampleToMatchd`` onto the loaded scan (kept as ``source``): the
    same ``SpatialResample`` (bilinear, zero padding) that ``medssl predict`` runs, so the
    masks are equal. ``Invertd`` would undo each preprocessing step with the forward
    transforms' border padding instead, which differs from medssl at the scan's edge
    wherever the model's grid ends inside the outermost voxels (1289 of 17,280 voxels on an
    8 mm phantom resampled to 2 mm)."""
    single = int(art.network.get("out_channels", len(art.labels))) == 1
    activation = {"sigmoid": True} if single else {"softmax": True}
    to_two = [{"_target_": "Lambdad", "keys": "pred", "func": "$lambda p: torch.cat([1 - p, p])"}] if single else []
    return [
        {"_target_": "Activationsd", "keys": "pred", **activation},
        *to_two,
        {"_target_": "ResampleToMatchd", "keys": "pred", "key_dst": "source", "mode": "bilinear",
         "padding_mode": "zeros", "dtype": "$torch.float32"},
        {"_target_": "Lambdad", "keys": "pred",
         "func": "$lambda p: torch.cat([p[:1] + (1 - p.sum(0, keepdim=True)).clamp_min(0), p[1:]])"},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "",
         "separate_folder": False, "resample": False, "output_dtype": "$np.uint8", "print_log": False},
    ]  # fmt: skip


def inference_config(art: ModelArtifact) -> dict[str, Any]:
    """The bundle's inference.json. Segmentation bundles carry a full ``monai.bundle run``
    workflow; classification bundles the network, preprocessing and softmax only (medssl
    classifies the whole resized volume, which MONAI's bundle runner has no saver for)."""
    inf = art.inference
    config = {
        "imports": ["$import collections", "$import glob", "$import numpy as np", "$import torch"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        "datalist": "$sorted(glob.glob(@dataset_dir + '/*.nii.gz') + glob.glob(@dataset_dir + '/*.nii'))",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": _network_def(art.network),
        "network": "$@network_def.to(@device)",
        "load_weights": "$@network_def.load_state_dict(torch.load(@bundle_root + '/models/model.pt', "
                        "map_location='cpu', weights_only=True))",
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(art)},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]", "transform": "@preprocessing"},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(inf.roi_size),
                    "sw_batch_size": inf.sw_batch_size, "overlap": inf.overlap, "mode": inf.mode},
        "postprocessing": {"_target_": "Compose", "transforms": _postprocessing(art)},
        # One scan at a time through MONAI core only (no ignite engine needed): predict, post-process, save.
        "predict": "$lambda d: @postprocessing({**d, 'pred': @inferer(d['image'][None].to(@device), @network)[0].cpu()})",
        "initialize": ["$torch.set_grad_enabled(False)", "@load_weights", "$@network.eval()"],
        "run": ["$collections.deque(map(@predict, @dataset), maxlen=0)"],
    }  # fmt: skip
    if task_kind(art.task).output_type != "image":  # class probabilities: no label image to write
        for key in ("output_dir", "inferer", "predict", "initialize", "run"):
            del config[key]
        config["postprocessing"]["transforms"] = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]
    return config


def metadata(art: ModelArtifact) -> dict[str, Any]:
    import numpy as np

    n_out = len(art.labels)
    roi = list(art.inference.roi_size)
    n_in = int(art.network.get("in_channels", 1))
    medssl_net = _network_def(art.network)["_target_"].startswith("medssl.")
    labels = {str(k): v for k, v in art.labels.items()}
    return {
        "schema": SCHEMA_URL,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by medssl {medssl.__version__}"},
        "monai_version": art.versions.get("monai", ""),
        "pytorch_version": art.versions.get("torch", ""),
        "numpy_version": str(np.__version__),
        "required_packages_version": {"nibabel": _version("nibabel"),
                                      **({"medssl": str(medssl.__version__)} if medssl_net else {})},
        "optional_packages_version": {"fire": _version("fire"), "jsonschema": _version("jsonschema")},
        "name": f"medssl {art.task} ({art.network.get('name')})",
        "task": art.task,
        "description": "Exported by medssl export-bundle from a medssl model artifact.",
        "authors": "medssl",
        "copyright": "Copyright (c) the medssl authors; weights trained by the artifact's owner",
        "data_type": "nibabel",
        "intended_use": "Research use only; not for clinical decisions.",
        "pred_classes": ", ".join(f"{k}: {v}" for k, v in labels.items()),
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield" if art.modality == "CT" else "magnitude",
                                 "modality": art.modality, "num_channels": n_in, "spatial_shape": roi,
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": {str(i): art.modality for i in range(n_in)}}},
            "outputs": {"pred": {"type": task_kind(art.task).output_type,
                                 "format": art.task, "num_channels": n_out, "spatial_shape": roi,
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": labels}},
        },
        "medssl": {"network": art.network, "preprocessing": art.preprocessing.model_dump(mode="json"),
                   "inference": art.inference.model_dump(mode="json"),
                   "versions": art.versions, "sha256": art.sha256,
                   "meta": {k: v for k, v in art.meta.items() if k != "config"}},
    }  # fmt: skip


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def export_bundle(artifact: str | Path | ModelArtifact, out: str | Path) -> Path:
    art = artifact if isinstance(artifact, ModelArtifact) else load_model_artifact(artifact)
    out = Path(out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "docs").mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.cpu() for k, v in art.state_dict.items()}, out / "models" / "model.pt")
    for name, content in (("metadata.json", metadata(art)), ("inference.json", inference_config(art))):
        tmp = out / "configs" / f".{name}.tmp"
        tmp.write_text(json.dumps(content, indent=2, default=str))
        tmp.replace(out / "configs" / name)
    shutil.copyfile(SCHEMA_FILE, out / "docs" / SCHEMA_NAME)
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
    ``untrusted_bundle``) and nothing of it runs. ``trusted=True`` hands
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
                              "untrusted bundle; call load_bundle_network(..., trusted=True) only for a bundle "
                              "you trust",
                              code="untrusted_bundle")  # fmt: skip
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    where = _expression_in(kwargs, "network_def")
    if where:
        raise CheckpointError(f"{name}: {where} holds a ConfigParser expression, reference or component; "
                              "refused (call load_bundle_network(..., trusted=True) only for a bundle you trust)",
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
