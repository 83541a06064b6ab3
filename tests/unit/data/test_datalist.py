"""Labeled datalists: formats, splits by case, label geometry checks."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from medssl.data.datalist import check_label_geometry, load_datalist, pseudonymized, read_labeled_case, split_cases
from medssl.errors import ConfigError, GeometryError, InputError

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _pair(folder, name, shape=(8, 8, 6), label_affine=None, label_suffix="_label"):
    folder.mkdir(parents=True, exist_ok=True)
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    lab = np.zeros(shape, np.uint8)
    lab[2:5, 2:5, 1:4] = 1
    nib.save(nib.Nifti1Image(img, AFFINE), folder / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(lab, AFFINE if label_affine is None else label_affine), folder / f"{name}{label_suffix}.nii.gz")
    return folder / f"{name}.nii.gz", folder / f"{name}{label_suffix}.nii.gz"


def test_folder_pairs_and_phantom_layout(tmp_path):
    for i in range(3):
        _pair(tmp_path / "flat", f"case{i}")
        _pair(tmp_path / "ph" / "nifti", f"phantom_{i:03d}")
    (tmp_path / "flat" / "unlabeled.nii.gz").write_bytes(b"")  # no label: not a labeled case
    flat = load_datalist(tmp_path / "flat")
    assert [c.case_id for c in flat] == ["case0", "case1", "case2"]
    assert flat[0].label.name == "case0_label.nii.gz"
    ph = load_datalist(tmp_path / "ph")
    assert [c.case_id for c in ph] == ["phantom_000", "phantom_001", "phantom_002"]


def test_msd_dataset_json(tmp_path):
    _, lab = _pair(tmp_path / "imagesTr", "a")
    (tmp_path / "labelsTr").mkdir()
    lab.rename(tmp_path / "labelsTr" / "a.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": {"0": "bg", "1": "x"}, "training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]}))
    cases = load_datalist(tmp_path)
    assert len(cases) == 1 and cases[0].case_id == "a" and cases[0].label.parent.name == "labelsTr"
    (tmp_path / "bad.json").write_text(json.dumps({"training": [{"image": "missing.nii.gz"}]}))
    with pytest.raises(ConfigError, match="not found"):
        load_datalist(tmp_path / "bad.json")


def test_csv_label_and_class(tmp_path):
    img, lab = _pair(tmp_path, "c1")
    (tmp_path / "seg.csv").write_text(f"image,label\n{img.name},{lab.name}\n")
    (tmp_path / "cls.csv").write_text(f"image,class\n{img.name},tumour\n")
    assert load_datalist(tmp_path / "seg.csv")[0].label == lab.resolve()
    assert load_datalist(tmp_path / "cls.csv")[0].cls == "tumour"
    (tmp_path / "bad.csv").write_text("path,y\nx,1\n")
    with pytest.raises(ConfigError, match="header"):
        load_datalist(tmp_path / "bad.csv")


def test_splits_are_deterministic_disjoint_and_nested(tmp_path):
    for i in range(10):
        _pair(tmp_path, f"c{i:02d}", shape=(2, 2, 2))
    cases = load_datalist(tmp_path)
    a = split_cases(cases, seed=3, val_fraction=0.2, test_fraction=0.3)
    b = split_cases(list(reversed(cases)), seed=3, val_fraction=0.2, test_fraction=0.3)
    assert a == b and (len(a.train), len(a.val), len(a.test)) == (5, 2, 3)
    ids = [c.case_id for c in a.train + a.val + a.test]
    assert len(set(ids)) == 10
    assert split_cases(cases, seed=4, val_fraction=0.2, test_fraction=0.3).test != a.test
    small = split_cases(cases, seed=3, val_fraction=0.2, test_fraction=0.3, n_train=2, train_seed=1)
    big = split_cases(cases, seed=3, val_fraction=0.2, test_fraction=0.3, n_train=4, train_seed=1)
    assert small.test == big.test == a.test and small.val == a.val
    assert set(small.train) < set(big.train)
    with pytest.raises(ConfigError):
        split_cases(cases, seed=0, val_fraction=0.2, test_fraction=0.3, n_train=6)


def test_label_geometry_same_grid_resampled_or_error(caplog):
    lab = np.zeros((8, 8, 6), np.int16)
    lab[2:4, 2:4, 2:4] = 1
    assert check_label_geometry(lab, AFFINE, (8, 8, 6), AFFINE, "x") is lab
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0  # the label grid starts one image voxel later along x
    with caplog.at_level(logging.WARNING, logger="medssl.datalist"):
        out = check_label_geometry(lab, shifted, (8, 8, 6), AFFINE, "x")
    assert "resampled nearest-neighbour" in caplog.text
    assert out.shape == (8, 8, 6) and out[3:5, 2:4, 2:4].all() and out.sum() == lab.sum()
    far = AFFINE.copy()
    far[:3, 3] = 1000.0
    with pytest.raises(GeometryError, match="do not overlap"):
        check_label_geometry(lab, far, (8, 8, 6), AFFINE, "x")


def test_read_labeled_case_puts_label_on_image_grid(tmp_path):
    shifted = AFFINE.copy()
    shifted[1, 3] = 4.0
    _pair(tmp_path, "s", label_affine=shifted)
    case = load_datalist(tmp_path)[0]
    image, label, affine, _ = read_labeled_case(case)
    assert image.shape == label.shape == (8, 8, 6) and np.allclose(affine, AFFINE)
    assert label[2:5, 4:7, 1:4].all()


def test_read_errors_under_pseudonymize_name_the_case_not_the_file(tmp_path):
    image, label = _pair(tmp_path, "SENTINEL_DONOTLEAK_patient")
    image.write_bytes(b"not a nifti at all")
    plain = load_datalist(tmp_path)[0]
    with pytest.raises(InputError) as err:
        read_labeled_case(plain)
    assert "SENTINEL_DONOTLEAK" in str(err.value)  # without pseudonymize the file is named, as usual
    case = pseudonymized([plain])[0]
    with pytest.raises(InputError) as err:
        read_labeled_case(case)
    assert "SENTINEL" not in str(err.value) and f"case {case.case_id} (channel 0)" in str(err.value)
    far = AFFINE.copy()
    far[:3, 3] = 1000.0
    _pair(tmp_path, "SENTINEL_DONOTLEAK_patient", label_affine=far)  # the label lies nowhere near the image
    with pytest.raises(GeometryError) as err:
        read_labeled_case(case)
    assert "SENTINEL" not in str(err.value) and f"case {case.case_id} (label)" in str(err.value)
