"""Small on-disk fixtures for the viewer tests: a CT phantom with labels (stored LPS so the
viewer must reorient it), a batch results folder, a tiny U-Net model artifact, zips."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = {"0": "background", "1": "liver", "2": "lesion"}
# Stored L->R flipped and P->A flipped (LPS, as DICOM-derived NIfTIs often are), 2.5 mm slices.
PHANTOM_AFFINE = np.diag([-1.0, -1.0, 2.5, 1.0])
PHANTOM_SHAPE = (48, 40, 20)


def make_phantom() -> tuple[np.ndarray, np.ndarray]:
    """(image HU float32, label uint8) on PHANTOM_AFFINE. The liver lies at the patient's
    right, i.e. at LOW stored i (stored axis points Left)."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in PHANTOM_SHAPE), indexing="ij")
    cx, cy, cz = (np.array(PHANTOM_SHAPE) - 1) / 2
    image = np.full(PHANTOM_SHAPE, -1000.0, np.float32)
    body = ((x - cx) / 21) ** 2 + ((y - cy) / 16) ** 2 <= 1
    image[body] = 20.0
    liver = ((x - 13) / 8) ** 2 + ((y - cy) / 8) ** 2 + ((z - cz) / 6) ** 2 <= 1
    lesion = ((x - 12) / 3) ** 2 + ((y - cy) / 3) ** 2 + ((z - cz) / 2) ** 2 <= 1
    image[liver] = 90.0
    image[lesion] = 40.0
    image[(np.abs(x - cx) < 3) & (y > cy + 9) & (y < cy + 14)] = 700.0  # spine, posterior
    label = np.zeros(PHANTOM_SHAPE, np.uint8)
    label[liver] = 1
    label[lesion] = 2
    return image, label


def write_phantom(folder: Path, name: str = "phantom_000") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image, label = make_phantom()
    img_path, lab_path = folder / f"{name}.nii.gz", folder / f"{name}_label.nii.gz"
    nib.save(nib.Nifti1Image(image, PHANTOM_AFFINE), img_path)
    nib.save(nib.Nifti1Image(label, PHANTOM_AFFINE), lab_path)
    return img_path, lab_path


def write_results(results: Path, image: Path, label: Path) -> Path:
    """A batch results folder as ``medssl predict`` writes it: one ok case with its mask and
    record (label_stats form, mean confidence 0.9 liver / 0.5 lesion), one failed case.
    Sources are relative to the input folder's parent."""
    from medssl.inference.stats import label_stats
    from medssl.io import read_scan

    results.mkdir(parents=True, exist_ok=True)
    (results / "phantom_000.nii.gz").write_bytes(label.read_bytes())
    _, lab = make_phantom()
    confidence = np.where(lab == 2, 0.5, 0.9).astype(np.float32)
    stats = label_stats(lab, read_scan(image), LABELS, confidence)
    (results / "phantom_000.json").write_text(json.dumps({"case_id": "phantom_000", **stats}))
    source = f"{image.parent.name}/{image.name}"
    with (results / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "source", "status", "code", "reason", "seconds"])
        writer.writeheader()
        writer.writerow({"case_id": "phantom_000", "source": source, "status": "ok", "code": "", "reason": "", "seconds": "0.4"})
        writer.writerow({"case_id": "broken_001", "source": "missing.nii.gz", "status": "failed",
                         "code": "corrupt_file", "reason": "truncated gzip stream", "seconds": "0.0"})
    return results


def write_tiny_model(folder: Path, spacing: float = 4.0) -> Path:
    """A random-weight 'unet' artifact small enough to run on a head CT in about a second."""
    import torch

    from medssl.artifacts.model import ModelArtifact, save_model_artifact
    from medssl.models import build_network

    torch.manual_seed(0)
    spec = {"name": "unet", "out_channels": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0}
    net = build_network(spec)
    art = ModelArtifact(
        task="segmentation",
        network=spec,
        state_dict={k: v.detach().clone() for k, v in net.state_dict().items()},
        labels=LABELS,
        modality="CT",
        preprocessing={"spacing": [spacing, spacing, spacing]},
        inference={"roi_size": [64, 64, 64], "overlap": 0.0, "sw_batch_size": 1},
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "tiny_unet.pt"
    save_model_artifact(art, out)
    return out


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
