"""The pretraining data feed: scan listing, cached volumes, seeded foreground-aware crops."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.data.feed import CropSampler, PretrainDataConfig, list_volumes, make_batches
from medssl.errors import ConfigError


@pytest.fixture
def scans(tmp_path):
    folder = tmp_path / "D" / "nifti"
    folder.mkdir(parents=True)
    for i in range(3):
        img = np.full((24, 24, 16), -1000, dtype=np.int16)
        img[8:16, 8:16, 4:12] = 40 + 10 * i  # a soft-tissue block in air
        nib.save(nib.Nifti1Image(img, np.eye(4)), folder / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((24, 24, 16), np.uint8), np.eye(4)), folder / f"case_{i}_label.nii.gz")
    return tmp_path / "D"


def test_list_volumes_from_folder_and_manifest(scans, tmp_path):
    found = list_volumes(PretrainDataConfig(root=scans))
    assert [p.name for p, _ in found] == ["case_0.nii.gz", "case_1.nii.gz", "case_2.nii.gz"]
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": "nifti/case_0.nii.gz", "status": "ok", "role": "image", "series": None},
            {"path": "nifti/case_1.nii.gz", "status": "failed", "role": "image"},
            {"path": "nifti/case_0_label.nii.gz", "status": "ok", "role": "label"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = list_volumes(PretrainDataConfig(manifest=manifest, root=scans))
    assert [p.name for p, _ in found] == ["case_0.nii.gz"]
    from medssl.data.manifest import update_manifest

    written = tmp_path / "elsewhere" / "index.jsonl"  # a real index, written outside the tree
    update_manifest(scans, written)
    found = list_volumes(PretrainDataConfig(manifest=written))
    assert sorted(p.name for p, _ in found) == ["case_0.nii.gz", "case_1.nii.gz", "case_2.nii.gz"]
    assert all(p.is_file() for p, _ in found)
    with pytest.raises(ConfigError, match="data.root"):
        list_volumes(PretrainDataConfig())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no scans"):
        list_volumes(PretrainDataConfig(root=empty))

def test_crops_seeded_foreground_aware_and_sharded(scans, tmp_path):
    cfg = PretrainDataConfig(root=scans, batch_size=6, crops_per_volume=2, foreground_prob=1.0)
    vols = list_volumes(cfg)
    sampler = CropSampler(vols, cfg, tmp_path / "cache", region=8, seed=3)
    a, b = sampler.batch(5), sampler.batch(5)
    assert a["image"].shape == (6, 1, 8, 8, 8) and a["image"].dtype == torch.float32
    assert torch.equal(a["image"], b["image"]) and a["seed"] == b["seed"]
    assert a["seed"] != sampler.batch(6)["seed"]
    assert (a["image"] > 0.05).float().mean() > 0.3  # centred on the tissue block, not air
    shard = CropSampler(vols, cfg, tmp_path / "cache", region=8, seed=3, rank=1, world_size=2)
    assert [p.name for p, _ in shard.volumes] == ["case_1.nii.gz"]


def test_loader_workers_keep_batch_order(scans, tmp_path):
    cfg = PretrainDataConfig(root=scans, batch_size=2, crops_per_volume=1, workers=2, prefetch=1)
    sampler = CropSampler(list_volumes(cfg), cfg, tmp_path / "cache", region=8, seed=0)
    sampler.prepare()
    it = iter(make_batches(sampler, cfg, pin_memory=False)(4))
    got = [next(it)["seed"] for _ in range(4)]
    assert got == [sampler.batch(i)["seed"] for i in range(4, 8)]
