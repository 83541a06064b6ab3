"""Helpers shared by the inference tests: a fixed-weight threshold "model" (exact, so
geometry errors cannot hide behind a model's errors), sphere scans on arbitrary grids,
and model artifacts built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from medssl.artifacts.model import ModelArtifact, save_model_artifact
from medssl.io.scan import Scan
from medssl.models.registry import NETWORKS


class ThresholdNet(nn.Module):
    """Voxelwise logits (background, foreground) = (-s (x - t), s (x - t)): a 1x1x1 convolution."""

    def __init__(self, threshold: float = 0.55, sharpness: float = 40.0):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-sharpness, sharpness]).view(2, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([sharpness * threshold, -sharpness * threshold]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


if "test_threshold" not in NETWORKS:
    NETWORKS.register("test_threshold")(ThresholdNet)


def threshold_artifact(
    path: Path,
    hu_threshold: float = 100.0,
    preprocessing: dict | None = None,
    roi: tuple[int, int, int] = (16, 16, 16),
    labels: dict[str, str] | None = None,
) -> Path:
    """A model marking voxels brighter than ``hu_threshold`` HU (CT window -1000..1000 -> 0..1)."""
    t = (hu_threshold + 1000.0) / 2000.0
    net = ThresholdNet(t)
    art = ModelArtifact(
        task="segmentation",
        network={"name": "test_threshold", "threshold": t},
        state_dict=net.state_dict(),
        labels=labels or {"0": "background", "1": "sphere"},
        modality="CT",
        preprocessing=preprocessing or {"orientation": "RAS", "spacing": None, "intensity": "ct_window"},
        inference={"roi_size": list(roi), "overlap": 0.25, "sw_batch_size": 2},
    )
    return save_model_artifact(art, path)


def unet_artifact(path: Path, roi: tuple[int, int, int] = (16, 16, 16), task: str = "segmentation") -> Path:
    spec = {"name": "unet", "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}
    torch.manual_seed(0)
    from medssl.models import build_network

    net = build_network(spec)
    art = ModelArtifact(
        task=task, network=spec, state_dict=net.state_dict(), labels={"0": "background", "1": "thing"},
        preprocessing={"orientation": "RAS", "spacing": [2.0, 2.0, 2.0]},
        inference={"roi_size": list(roi), "overlap": 0.5, "sw_batch_size": 2},
    )
    return save_model_artifact(art, path)


def grid_affine(spacing=(1.0, 1.0, 1.0), codes: str = "RAS", rotate_deg: float = 0.0,
                origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxel -> RAS+ affine with the given axis codes (RAS/LPS), optionally rotated about z."""
    signs = {"RAS": (1, 1, 1), "LPS": (-1, -1, 1), "LAS": (-1, 1, 1)}[codes]
    a = np.diag([*(s * d for s, d in zip(signs, spacing)), 1.0])
    th = np.deg2rad(rotate_deg)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    a[:3, :3] = rot @ a[:3, :3]
    a[:3, 3] = origin
    return a


def sphere_scan(affine: np.ndarray, shape, centre_world, radius_mm: float, inside=400.0, outside=0.0,
                case_id: str = "sphere") -> Scan:
    """A CT scan with a bright sphere at ``centre_world`` (RAS+ mm)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inside_mask = (np.linalg.norm(world - np.asarray(centre_world), axis=1) <= radius_mm).reshape(shape)
    array = np.where(inside_mask, inside, outside).astype(np.float32)
    return Scan(array=array, affine=affine, modality="CT", source=f"{case_id}.nii.gz", case_id=case_id)


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask > 0).mean(0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_threshold_net_is_a_threshold():
    net = ThresholdNet(0.5)
    x = torch.tensor([0.4, 0.6]).view(1, 1, 2, 1, 1)
    assert net(x).argmax(1).flatten().tolist() == [0, 1]
