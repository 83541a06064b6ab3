"""An exported MONAI bundle is accepted by MONAI's own tools: ``verify_metadata`` passes
against the schema shipped with medssl (no download), and ``monai.bundle run`` on a folder
of scans writes the same masks, on the same grid, as ``medssl predict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.artifacts.bundle import SCHEMA_NAME, export_bundle
from medssl.artifacts.model import load_model_artifact, save_model_artifact
from medssl.cli import main
from medssl.data.phantom import make_phantom
from medssl.io import write_nifti
from tests.unit.inference.test_inference_fixtures import unet_artifact

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _monai_bundle(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _scans(folder: Path, kind: str) -> list[str]:
    """Two phantoms; for MR shifted to positive values and named ``_mr`` (medssl guesses a
    NIfTI's modality from its values and name, the bundle takes the artifact's)."""
    folder.mkdir()
    cases = [f"case{i}" if kind == "ct" else f"case{i}_mr" for i in range(2)]
    for i, case in enumerate(cases):
        image, _, affine = make_phantom(i, shape=(40, 36, 12))
        write_nifti((image if kind == "ct" else image + 1024).astype(np.int16), affine, folder / f"{case}.nii.gz")
    return cases


@pytest.mark.parametrize("kind", ["ct", "mr_crop"])
def test_bundle_verifies_and_runs_like_medssl_predict(tmp_path, kind):
    scans = tmp_path / "scans"
    cases = _scans(scans, kind)
    model = unet_artifact(tmp_path / "model.pt", roi=(16, 16, 16))
    if kind == "mr_crop":  # MR percentiles (clipped, as medssl clips) and a foreground crop
        art = load_model_artifact(model)
        pp = {"orientation": "LPS", "spacing": [3.0, 2.5, 4.0], "crop_foreground": True,
              "mr_percentiles": {"lower": 2.0, "upper": 90.0}}  # fmt: skip
        save_model_artifact(replace(art, modality="MR", preprocessing=pp), model)
    bundle = export_bundle(model, tmp_path / "bundle")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["schema"].endswith(SCHEMA_NAME) and meta["numpy_version"]
    _monai_bundle("verify_metadata", "--meta_file", str(bundle / "configs" / "metadata.json"),
                  "--filepath", str(bundle / "docs" / SCHEMA_NAME))  # fmt: skip

    assert main(["-q", "predict", "--model", str(model), "--input", str(scans), "--output", str(tmp_path / "medssl"),
                 "--no-preview", "--no-progress"]) == 0  # fmt: skip
    _monai_bundle("run", "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
                  "--dataset_dir", str(scans), "--output_dir", str(tmp_path / "monai"))  # fmt: skip
    for case in cases:
        ours, theirs = nib.load(tmp_path / "medssl" / f"{case}.nii.gz"), nib.load(tmp_path / "monai" / f"{case}.nii.gz")
        source = nib.load(scans / f"{case}.nii.gz")
        assert theirs.shape == ours.shape == source.shape
        assert np.allclose(theirs.affine, source.affine, atol=1e-5)
        a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
        assert 0 < a.sum() < a.size  # a real mask, not all one class
        assert np.array_equal(a, b), f"{case}: {(a != b).sum()} voxels differ"
