"""The self-describing model artifact: everything batch prediction and the viewer need.

A model artifact is one file (``model.pt``) holding a plain dict, loaded with
``weights_only=True``:

    format: "medssl.model", format_version: 1
    task: "segmentation" | "classification"
    network: {"name": <NETWORKS name>, **kwargs}     # rebuilt with build_network
    state_dict: {...}
    labels: {"0": "background", "1": "liver", ...}   # segmentation labels or class names
    modality: "CT" | "MR" | ...
    preprocessing: PreprocessConfig as a dict (typed ``PreprocessConfig`` once loaded)
    inference: InferenceSettings as a dict (typed once loaded)
    versions: {"medssl": ..., "torch": ..., "monai": ...}
    meta: free PHI-free extras (training run id, metrics, ...)

The hash of the file identifies the model in prediction records (`--continue`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import medssl
from medssl.atomic import atomic_path
from medssl.config import validate_config
from medssl.data.preprocess import PreprocessConfig
from medssl.errors import CheckpointError, ConfigError
from medssl.models import build_network
from medssl.models.sliding import InferenceSettings

FORMAT = "medssl.model"
FORMAT_VERSION = 1
ARTIFACT_NAME = "model.pt"


@dataclass
class ModelArtifact:
    task: str
    network: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    labels: dict[str, str]
    modality: str = "CT"
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    versions: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # of the file it was loaded from

    def __post_init__(self) -> None:
        # plain dicts (hand-built artifacts, tests) become the typed sections, validated
        if not isinstance(self.preprocessing, PreprocessConfig):
            self.preprocessing = validate_config(PreprocessConfig, dict(self.preprocessing or {}), "preprocessing")
        if not isinstance(self.inference, InferenceSettings):
            self.inference = validate_config(InferenceSettings, dict(self.inference or {}), "inference")

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The network with its weights, in eval mode."""
        net = build_network(self.network)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"weights do not fit network '{self.network.get('name')}': {str(err)[:300]}") from err
        return net.to(device).eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "network": self.network,
            "state_dict": self.state_dict,
            "labels": {str(k): str(v) for k, v in self.labels.items()},
            "modality": self.modality,
            "preprocessing": self.preprocessing.model_dump(mode="json"),
            "inference": self.inference.model_dump(mode="json"),
            "versions": self.versions or current_versions(),
            "meta": self.meta,
        }


def current_versions() -> dict[str, str]:
    import monai

    return {"medssl": str(medssl.__version__), "torch": str(torch.__version__), "monai": str(monai.__version__)}


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through ``medssl.atomic.atomic_path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model_artifact(artifact: ModelArtifact, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".pt":
        path = path / ARTIFACT_NAME
    atomic_torch_save(artifact.to_dict(), path)
    return path


def resolve_artifact_path(path: str | Path) -> Path:
    """Accept the file itself or a run folder holding ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / ARTIFACT_NAME
    if not path.is_file():
        raise CheckpointError(f"no model artifact at {path} (expected a model.pt or a run folder holding one)")
    return path


def load_model_artifact(path: str | Path) -> ModelArtifact:
    path = resolve_artifact_path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"{path.name}: cannot be read as a model artifact ({err.__class__.__name__})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a medssl model artifact (missing format '{FORMAT}')")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name}: artifact format {data['format_version']} is newer than this medssl reads ({FORMAT_VERSION})"
        )
    fields = {k: data[k] for k in ("task", "network", "state_dict", "labels") if k in data}
    if len(fields) < 4:
        raise CheckpointError(f"{path.name}: model artifact lacks task/network/state_dict/labels")
    try:  # the typed sections are validated by ModelArtifact itself
        return ModelArtifact(
            **fields,
            modality=data.get("modality", "CT"),
            preprocessing=data.get("preprocessing") or {},
            inference=data.get("inference") or {},
            versions=data.get("versions", {}),
            meta=data.get("meta", {}),
            sha256=file_sha256(path),
        )
    except ConfigError as err:
        raise CheckpointError(f"{path.name}: artifact {err.reason}") from err
