"""collect_inputs: which cases a set of paths gives, with PHI-free unique ids and relative sources."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np

from medssl.data.phantom_io import write_dicom_series
from medssl.inference.batch import shard
from medssl.inference.inputs import collect_inputs, input_hash
from medssl.inference.outputs import write_nifti
from tests.unit.inference.test_inference_fixtures import grid_affine


def _series(folder, seed):
    image = np.zeros((8, 8, 4), np.float32)
    return write_dicom_series(image, grid_affine((1.0, 1.0, 2.0), "LPS"), folder, seed=seed)


def test_folder_tree_nnunet_names_series_and_zips(tmp_path):
    root = tmp_path / "studies"
    write_nifti(root / "ct" / "CASE_A_0000.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    mixed = root / "mixed"
    for seed, prefix in ((1, "a"), (2, "b")):  # two series in one folder
        for f in _series(tmp_path / f"tmp{seed}", seed):
            mixed.mkdir(parents=True, exist_ok=True)
            shutil.move(f, mixed / f"{prefix}_{f.name}")
    _series(tmp_path / "single", 3)
    with zipfile.ZipFile(root / "upload.zip", "w") as zf:
        for f in sorted((tmp_path / "single").iterdir()):
            zf.write(f, f"scan/{f.name}")
    (root / "notes.txt").write_text("not a scan")

    cases = collect_inputs([root, tmp_path / "absent.nii.gz"])
    by_source = {c.source: c for c in cases}
    assert by_source["studies/ct/CASE_A_0000.nii.gz"].case_id == "CASE_A"  # nnU-Net channel suffix dropped
    assert by_source["studies/upload.zip"].kind == "dicom"
    mixed_cases = [c for c in cases if c.source.startswith("studies/mixed#series=")]
    assert len(mixed_cases) == 2 and len({c.series for c in mixed_cases}) == 2
    assert all(c.case_id.startswith("mixed_") for c in mixed_cases)
    assert by_source["absent.nii.gz"].kind == "failed" and by_source["absent.nii.gz"].code == "not_found"
    assert not any("notes" in c.source for c in cases)
    assert all(not c.source.startswith("/") for c in cases)
    assert len({c.case_id for c in cases}) == len(cases)


def test_twins_get_distinct_stable_ids(tmp_path):
    write_nifti(tmp_path / "nifti" / "p1.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    _series(tmp_path / "dicom" / "p1", 1)
    first = collect_inputs([tmp_path])
    assert len(first) == 2 and first[0].case_id != first[1].case_id
    assert all(c.case_id.startswith("p1_") for c in first)
    assert [c.case_id for c in collect_inputs([tmp_path])] == [c.case_id for c in first]


def test_input_hash_follows_content(tmp_path):
    path = tmp_path / "a.nii.gz"
    write_nifti(path, np.zeros((4, 4, 4), np.uint8), np.eye(4))
    (case,) = collect_inputs([path])
    before = input_hash(case)
    write_nifti(path, np.ones((4, 4, 4), np.uint8), np.eye(4))
    assert input_hash(case) != before


def test_shards_cover_every_case_once(tmp_path):
    for i in range(7):
        write_nifti(tmp_path / f"c{i}.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    cases = collect_inputs([tmp_path])
    parts = [shard(cases, k, 3) for k in (1, 2, 3)]
    assert sorted(c.source for p in parts for c in p) == sorted(c.source for c in cases)
    assert [len(p) for p in parts] == [3, 2, 2]


def test_label_maps_in_a_folder_are_skipped_not_predicted(tmp_path):
    import nibabel as nib
    import numpy as np

    from medssl.inference.inputs import collect_inputs

    for name in ("case_a.nii.gz", "case_a_label.nii.gz", "case_b_seg.nii"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / name)
    kinds = {c.source: (c.kind, c.code) for c in collect_inputs([tmp_path])}
    assert kinds[f"{tmp_path.name}/case_a.nii.gz"] == ("nifti", "")
    assert kinds[f"{tmp_path.name}/case_a_label.nii.gz"] == ("skipped", "not_an_image")
    assert kinds[f"{tmp_path.name}/case_b_seg.nii"] == ("skipped", "not_an_image")


def test_same_named_inputs_get_own_sources_ids_and_record_keys(tmp_path):
    for folder in ("p1", "p2"):
        write_nifti(tmp_path / folder / "ct.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    for study, seed in (("studyA", 1), ("studyB", 2)):
        _series(tmp_path / study / "CT", seed)
    paths = [tmp_path / "p1" / "ct.nii.gz", tmp_path / "p2" / "ct.nii.gz", tmp_path / "studyA" / "CT", tmp_path / "studyB" / "CT"]
    cases = collect_inputs(paths)
    assert [c.source for c in cases] == ["p1/ct.nii.gz", "p2/ct.nii.gz", "studyA/CT", "studyB/CT"]
    assert len({c.case_id for c in cases}) == 4 and len({c.key for c in cases}) == 4
    assert cases[0].case_id.startswith("ct_") and cases[2].case_id.startswith("CT_")
    assert all(str(tmp_path) not in c.key and len(c.key) == 24 for c in cases)
    again = collect_inputs(paths)
    assert [(c.case_id, c.key) for c in again] == [(c.case_id, c.key) for c in cases]  # --continue finds them
    assert len(collect_inputs([paths[0], paths[0]])) == 1  # one input named twice runs once


def test_sidecars_beside_nifti_add_no_dicom_case(tmp_path):
    folder = tmp_path / "in"
    write_nifti(folder / "a.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    for name in ("Thumbs.db", "scan.gif", "desktop.ini", "meta.toml", "site.cfg", "index.htm", "notes", "README"):
        (folder / name).write_text("not a scan")
    assert [(c.source, c.kind) for c in collect_inputs([folder])] == [("in/a.nii.gz", "nifti")]

    _series(tmp_path / "series", 4)  # a real DICOM file beside them still makes a DICOM case
    shutil.copy(min((tmp_path / "series").iterdir()), folder / "IM0000")
    assert [(c.source, c.kind) for c in collect_inputs([folder])] == [("in/a.nii.gz", "nifti"), ("in", "dicom")]
    (tmp_path / "series" / "Thumbs.db").write_bytes(b"x")
    assert [c.kind for c in collect_inputs([tmp_path / "series"])] == ["dicom"]
