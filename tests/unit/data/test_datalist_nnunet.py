"""nnU-Net v2 raw datasets read as they are: v2 dataset.json, channels grouped by naming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medssl.data.datalist import (
    dataset_label_codes,
    dataset_labels,
    load_datalist,
    nnunet_test_cases,
    read_labeled_case,
)
from medssl.errors import ConfigError, GeometryError
from medssl.io import write_nifti

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _v2(root, cases=("pros_001", "pros_002"), channels=2, dataset_json=True, **extra):
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for case in cases:
        for c in range(channels):
            write_nifti(rng.normal(size=(8, 7, 6)).astype(np.float32) + 10 * c, AFFINE, root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        write_nifti((rng.random((8, 7, 6)) > 0.7).astype(np.uint8), AFFINE, root / "labelsTr" / f"{case}.nii.gz")
    for c in range(channels):
        write_nifti(np.zeros((8, 7, 6), np.float32), AFFINE, root / "imagesTs" / f"test_001_{c:04d}.nii.gz")
    if dataset_json:
        doc = {"channel_names": {str(c): f"ch{c}" for c in range(channels)},
               "labels": {"background": 0, "prostate": 1}, "numTraining": len(cases), "file_ending": ".nii.gz", **extra}
        (root / "dataset.json").write_text(json.dumps(doc))
    return root


def test_v2_dataset_groups_channels_of_one_case(tmp_path):
    cases = load_datalist(_v2(tmp_path))
    assert [c.case_id for c in cases] == ["pros_001", "pros_002"]
    assert [p.name for p in cases[0].channels] == ["pros_001_0000.nii.gz", "pros_001_0001.nii.gz"]
    assert cases[0].label.name == "pros_001.nii.gz"
    image, label, affine, _ = read_labeled_case(cases[0])
    assert image.shape == (2, 8, 7, 6) and label.shape == (8, 7, 6)
    assert image[1].mean() > image[0].mean() + 5  # channel order kept
    assert np.allclose(affine, AFFINE)
    assert load_datalist(tmp_path / "dataset.json")[0].case_id == "pros_001"  # the file itself works too
    (test,) = nnunet_test_cases(tmp_path)
    assert test.case_id == "test_001" and test.label is None and len(test.channels) == 2


def test_v2_labels_and_codes(tmp_path):
    _v2(tmp_path, label_codes={"prostate": {"type": "SCT:41216001:Prostate"}})
    assert dataset_labels(tmp_path) == {"0": "background", "1": "prostate"}
    assert dataset_label_codes(tmp_path).code_for("prostate", 1).type.value == "41216001"


def test_layout_without_dataset_json_is_found_by_naming(tmp_path):
    cases = load_datalist(_v2(tmp_path, channels=1, dataset_json=False))
    assert len(cases) == 2 and cases[0].more_channels == ()


def test_missing_channel_and_label_are_named(tmp_path):
    _v2(tmp_path)
    (tmp_path / "imagesTr" / "pros_002_0001.nii.gz").unlink()
    with pytest.raises(ConfigError, match="pros_002_0001.nii.gz"):
        load_datalist(tmp_path)
    _v2(tmp_path)
    (tmp_path / "labelsTr" / "pros_001.nii.gz").unlink()
    with pytest.raises(ConfigError, match="labelsTr/pros_001.nii.gz"):
        load_datalist(tmp_path)


def test_channel_on_another_grid_is_a_geometry_error(tmp_path):
    _v2(tmp_path)
    write_nifti(np.zeros((8, 7, 5), np.float32), AFFINE, tmp_path / "imagesTr" / "pros_001_0001.nii.gz")
    with pytest.raises(GeometryError, match="share one grid"):
        read_labeled_case(load_datalist(tmp_path)[0])


def test_region_labels_are_refused(tmp_path):
    _v2(tmp_path)
    doc = json.loads((tmp_path / "dataset.json").read_text())
    doc["labels"] = {"background": 0, "whole": [1, 2]}
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="region-based"):
        dataset_labels(tmp_path)
