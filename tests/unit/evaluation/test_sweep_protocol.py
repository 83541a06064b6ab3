"""The sweep's protocol: held-out cases (and their DICOM twins) never reach pretraining,
labeled subsets are the same in every arm, and the pixel fingerprint ignores file format."""

from __future__ import annotations

import json

import pytest

from medssl.config import load_config
from medssl.data.manifest import update_manifest
from medssl.data.phantom_io import synth_cohort
from medssl.data.twins import pixel_fingerprint
from medssl.evaluation.sweep import plan_splits, pretraining_pool, run_config
from medssl.training.finetune_config import SweepConfig


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "cohort"
    synth_cohort(root, 8, fmt="both", seed=3, shape=(16, 16, 12))
    manifest = root.parent / "manifest.jsonl"
    update_manifest(root, manifest)
    return root, manifest


def _cfg(root, manifest=None, **sweep):
    over = [f"data.root={root}", "data.n_test=2", "data.n_val=1", "sweep.n_labeled=[1,3]", "sweep.seeds=[0,1]",
            'data.labels={"0": background, "1": liver}', "data.label_map={1: 1}"]
    if manifest:
        over.append(f"sweep.pretrain_data={manifest}")
    over += [f"sweep.{k}={v}" for k, v in sweep.items()]
    return load_config(SweepConfig, None, over)


def test_nifti_and_dicom_twins_share_a_fingerprint(cohort):
    root, _ = cohort
    assert pixel_fingerprint(root / "nifti" / "phantom_000.nii.gz") == pixel_fingerprint(root / "dicom" / "phantom_000")
    assert pixel_fingerprint(root / "nifti" / "phantom_000.nii.gz") != pixel_fingerprint(root / "nifti" / "phantom_001.nii.gz")


def test_held_out_cases_and_their_twins_stay_out_of_pretraining(cohort):
    root, manifest = cohort
    cfg = _cfg(root, manifest)
    splits = plan_splits(cfg)
    held = splits.pop("_held_out_images")
    assert len(splits["test"]) == 2 and len(splits["val"]) == 1 and len(splits["labeled_pool"]) == 5
    files, info = pretraining_pool(cfg, held)
    assert info["scans_found"] == 16  # the manifest lists 8 NIfTI files and 8 DICOM series
    held_ids = set(splits["test"]) | set(splits["val"])
    names = {f.name.removesuffix(".nii.gz") for f in files}
    assert not names & held_ids, "a held-out subject (or its DICOM twin) reached the pretraining pool"
    assert len(files) == 5 and len(info["twins_counted_once"]) == 5  # one scan per remaining subject
    assert len(info["excluded_as_held_out"]) == 6  # 3 held-out subjects x (NIfTI + DICOM)


def test_labeled_subsets_are_nested_and_shared_by_the_arms(cohort):
    root, _ = cohort
    cfg = _cfg(root)
    subsets = plan_splits(cfg)["labeled_subsets"]
    for seed in (0, 1):
        assert set(subsets[f"n1_seed{seed}"]) <= set(subsets[f"n3_seed{seed}"])
    scratch, pre = run_config(cfg, "scratch", 3, 1, "enc.pt"), run_config(cfg, "pretrained", 3, 1, "enc.pt")
    assert (scratch.seed, scratch.data.n_train) == (pre.seed, pre.data.n_train) == (1, 3)
    assert scratch.model.pretrained is None and pre.model.pretrained == "enc.pt"
    assert scratch.train == pre.train  # same budget, validation, early stopping, augmentation


def test_old_spellings_are_refused_with_the_new_name():
    from medssl.errors import ConfigError
    from medssl.training.pretrain_config import PretrainConfig

    with pytest.raises(ConfigError, match="renamed to 'data.preprocessing'"):
        load_config(PretrainConfig, None, ["data.preprocess={intensity: auto}"])
    with pytest.raises(ConfigError, match="renamed to 'model.encoder.name'"):
        load_config(PretrainConfig, None, ["model.name=cnn"])
    with pytest.raises(ConfigError, match="renamed"):
        load_config(SweepConfig, None, ["model.kwargs={encoder: cnn}"])
    with pytest.raises(ConfigError, match="renamed to 'seed"):
        load_config(SweepConfig, None, ["train.seed=3"])
    with pytest.raises(ConfigError, match="skips"):
        load_config(PretrainConfig, None, ["tasks.inpaint.decoder_skips=true"])
    assert json.loads(load_config(PretrainConfig, None, ["data.crop_size=32"]).data.model_dump_json())["crop_size"] == [32] * 3
