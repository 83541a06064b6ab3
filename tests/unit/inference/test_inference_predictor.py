"""Predictor: results land on the input grid at the right world position, whatever the
input orientation, spacing or the model's preprocessing grid; TTA, classification, OOM fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medssl.artifacts.model import ModelArtifact, save_model_artifact
from medssl.inference import Predictor
from medssl.inference.window import (
    InferenceOOMError,
    WindowConfig,
    WindowRunner,
    fallback_plan,
)
from medssl.models.registry import NETWORKS
from tests.unit.inference.test_inference_fixtures import (
    grid_affine,
    sphere_scan,
    threshold_artifact,
    unet_artifact,
    world_centroid,
)

SHAPE = (40, 36, 16)
RADIUS = 9.0


class TinyClassifier(nn.Module):
    """Mean intensity -> two logits (dark, bright)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-20.0], [20.0]]))
            self.fc.bias.copy_(torch.tensor([10.0, -10.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3, 4)))


if "test_classifier" not in NETWORKS:
    NETWORKS.register("test_classifier")(TinyClassifier)


@pytest.fixture(scope="module")
def resampling_predictor(tmp_path_factory) -> Predictor:
    """Model grid differs from every input grid: RAS, 1.5 mm isotropic."""
    path = threshold_artifact(tmp_path_factory.mktemp("m") / "model.pt",
                              preprocessing={"orientation": "RAS", "spacing": [1.5, 1.5, 1.5], "intensity": "ct_window"})  # fmt: skip
    return Predictor.from_artifact(path, device="cpu")


@pytest.mark.parametrize(
    "codes, rotate, spacing",
    [("RAS", 0, (1.0, 1.0, 1.0)), ("LPS", 0, (1.0, 1.2, 2.5)), ("LAS", 0, (0.9, 1.1, 2.0)), ("LPS", 20, (1.0, 1.2, 2.5))],
)
def test_sphere_comes_back_at_its_world_position(resampling_predictor, codes, rotate, spacing):
    affine = grid_affine(spacing, codes, rotate, origin=(-20.0, 10.0, 5.0))
    centre = affine[:3, :3] @ np.array([20.0, 17.0, 8.0]) + affine[:3, 3]
    scan = sphere_scan(affine, SHAPE, centre, RADIUS)
    pred = resampling_predictor.predict(scan)
    assert pred.label.shape == SHAPE and pred.label.dtype == np.uint8
    assert np.allclose(pred.affine, affine)
    assert np.linalg.norm(world_centroid(pred.label, affine) - centre) < 0.5
    truth = scan.array > 0
    dice = 2 * np.sum((pred.label > 0) & truth) / (pred.label.sum() + truth.sum())
    assert dice > 0.85


def test_a_flipped_axis_would_be_caught(resampling_predictor):
    """Guard on the test itself: a sphere off-centre moves with the world, not the index."""
    affine = grid_affine((1.0, 1.0, 2.0), "LPS")
    centre = affine[:3, :3] @ np.array([10.0, 25.0, 5.0]) + affine[:3, 3]
    pred = resampling_predictor.predict(sphere_scan(affine, SHAPE, centre, 6.0))
    ijk = np.argwhere(pred.label > 0).mean(0)
    assert abs(ijk[0] - 10) < 0.5 and abs(ijk[1] - 25) < 0.5 and abs(ijk[2] - 5) < 0.5


def test_crop_foreground_grid_maps_back(tmp_path):
    path = threshold_artifact(tmp_path / "m.pt", preprocessing={"orientation": "RAS", "crop_foreground": True})
    affine = grid_affine((1.0, 1.0, 2.0), "LPS")
    centre = affine[:3, :3] @ np.array([12.0, 20.0, 7.0]) + affine[:3, 3]
    scan = sphere_scan(affine, SHAPE, centre, 6.0, outside=-1000.0)
    scan.array[25:35, 2:8, 2:6] = 0.0  # a second blob (soft tissue, below the model's threshold)
    pred = Predictor.from_artifact(path, device="cpu").predict(scan)
    assert np.array_equal(pred.label > 0, scan.array > 100)


def test_tta_gives_uncertainty_and_probabilities(tmp_path):
    path = threshold_artifact(tmp_path / "m.pt")
    affine = grid_affine((1.0, 1.0, 2.0), "RAS")
    scan = sphere_scan(affine, SHAPE, affine[:3, :3] @ np.array([20.0, 18.0, 8.0]), 7.0)
    pred = Predictor.from_artifact(path, device="cpu", tta=True).predict(scan, keep_probabilities=True)
    assert pred.uncertainty.shape == SHAPE and 0.0 <= pred.uncertainty.min() and pred.uncertainty.max() <= 1.0
    assert pred.uncertainty.max() < 1e-3  # a voxelwise model agrees with itself under flips
    assert pred.probabilities.shape == (2, *SHAPE)
    assert np.allclose(pred.probabilities.sum(0), 1.0, atol=1e-4)
    assert np.array_equal(pred.label, pred.probabilities.argmax(0))
    assert 0.5 <= pred.confidence.min() and pred.confidence.max() <= 1.0 + 1e-6


def test_unet_artifact_predicts_on_the_input_grid(tmp_path):
    pred = Predictor.from_artifact(unet_artifact(tmp_path), device="cpu", overlap=0.25).predict(
        sphere_scan(grid_affine((1.0, 1.3, 2.5), "LPS"), SHAPE, (0.0, 0.0, 0.0), 5.0))
    assert pred.label.shape == SHAPE and set(np.unique(pred.label)) <= {0, 1}
    assert pred.info["device"] == "cpu" and pred.info["fallbacks"] == []


def test_classification_gives_class_probabilities(tmp_path):
    art = ModelArtifact(task="classification", network={"name": "test_classifier"}, state_dict=TinyClassifier().state_dict(),
                        labels={"0": "dark", "1": "bright"}, inference={"roi_size": [16, 16, 8]})  # fmt: skip
    predictor = Predictor.from_artifact(save_model_artifact(art, tmp_path / "c.pt"), device="cpu", tta=True)
    affine = grid_affine((1.0, 1.0, 2.0))
    bright = predictor.predict(sphere_scan(affine, SHAPE, (20.0, 18.0, 16.0), 30.0, inside=900.0))
    dark = predictor.predict(sphere_scan(affine, SHAPE, (20.0, 18.0, 16.0), 3.0, inside=900.0, outside=-900.0))
    assert set(bright.class_probs) == {"dark", "bright"}
    assert abs(sum(bright.class_probs.values()) - 1.0) < 1e-5
    assert bright.class_probs["bright"] > 0.9 and dark.class_probs["dark"] > 0.9
    assert bright.label is None


class OOMUnlessSmall(nn.Module):
    """Raises CUDA out-of-memory for window batches above ``limit`` (CI has no GPU)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.cat([-x, x], dim=1)


def test_out_of_memory_falls_back_to_smaller_window_batches():
    x = torch.rand(1, 1, 24, 24, 12)
    net = OOMUnlessSmall(limit=1)
    runner = WindowRunner(net, WindowConfig(roi_size=(8, 8, 8), overlap=0.25, sw_batch_size=4, mode="gaussian"), torch.device("cpu"))
    out = runner(x)
    reference = WindowRunner(OOMUnlessSmall(limit=99), WindowConfig((8, 8, 8), 0.25, 1, "gaussian"), torch.device("cpu"))(x)
    assert torch.allclose(out, reference, atol=1e-5)
    assert runner.last_plan == (1, "cpu") and len(runner.fallbacks) == 2  # 4 -> 2 -> 1
    assert all("out of memory" in f for f in runner.fallbacks)


def test_out_of_memory_everywhere_is_a_typed_error():
    runner = WindowRunner(OOMUnlessSmall(limit=0), WindowConfig((8, 8, 8), 0.25, 2, "gaussian"), torch.device("cpu"))
    with pytest.raises(InferenceOOMError) as info:
        runner(torch.rand(1, 1, 16, 16, 8))
    assert info.value.code == "out_of_memory"


def test_fallback_plan_stitches_on_cpu_before_shrinking_batches():
    plan = [(b, d.type) for b, d in fallback_plan(4, torch.device("cuda"))]
    assert plan == [(4, "cuda"), (4, "cpu"), (2, "cpu"), (1, "cpu")]
    assert [(b, d.type) for b, d in fallback_plan(1, torch.device("cpu"))] == [(1, "cpu")]


@pytest.mark.parametrize("tta", [False, True])
def test_reoriented_grid_reduces_before_moving_with_the_same_values(tmp_path, monkeypatch, tta):
    """On a grid that is the model's reoriented (here LPS vs RAS, same spacing), class
    reduction happens before the voxels move: label, confidence, probabilities and
    uncertainty equal those of moving every class first (the general path)."""
    import medssl.inference.predictor as predictor_module
    import medssl.inference.resample
    from medssl.artifacts.model import load_model_artifact

    art = load_model_artifact(unet_artifact(tmp_path / "m.pt"))
    art.preprocessing.spacing = None  # the model grid is the scan's, reoriented to RAS
    scan = sphere_scan(grid_affine((2.0, 2.0, 2.0), "LPS", origin=(5.0, -3.0, 1.0)), (20, 18, 9), (0.0, 0.0, 8.0), 6.0)
    predictor = Predictor(art, device="cpu", tta=tta)
    exact = []
    monkeypatch.setattr(predictor_module, "is_exact_regrid",
                        lambda *a: exact.append(medssl.inference.resample.is_exact_regrid(*a)) or exact[-1])  # fmt: skip
    fast = predictor.predict(scan, keep_probabilities=True)
    assert exact == [True]
    monkeypatch.setattr(predictor_module, "is_exact_regrid", lambda *a: False)
    general = predictor.predict(scan, keep_probabilities=True)
    assert np.array_equal(fast.label, general.label) and fast.label.shape == scan.shape
    assert np.array_equal(fast.confidence, general.confidence)
    assert np.array_equal(fast.probabilities, general.probabilities)
    if tta:
        assert np.array_equal(fast.uncertainty, general.uncertainty)
