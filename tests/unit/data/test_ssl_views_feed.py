"""The pretraining data feed: scan listing, cached volumes, seeded foreground-aware crops."""

import gc
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.data.feed import CropSampler, PretrainDataConfig, list_volumes, make_batches
from medssl.errors import ConfigError, InputError


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


def test_unreadable_scan_is_skipped_and_logged(scans, tmp_path, caplog):
    (scans / "nifti" / "case_1.nii.gz").write_bytes(b"not a nifti at all" * 10)
    cfg = PretrainDataConfig(root=scans, batch_size=4, crops_per_volume=1)
    sampler = CropSampler(list_volumes(cfg), cfg, tmp_path / "cache", region=8, seed=0)
    with caplog.at_level("WARNING", logger="medssl.data"):
        shapes = sampler.prepare()
    assert len(shapes) == 2
    assert [p.name for p, _ in sampler.volumes] == ["case_0.nii.gz", "case_2.nii.gz"]
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 1 and "nifti/case_1.nii.gz" in skipped[0] and str(tmp_path) not in skipped[0]
    assert sampler.batch(0)["image"].shape == (4, 1, 8, 8, 8)
    for name in ("case_0.nii.gz", "case_2.nii.gz"):
        (scans / "nifti" / name).write_bytes(b"garbage")
    sampler = CropSampler(list_volumes(cfg), cfg, tmp_path / "cache2", region=8, seed=0)
    with pytest.raises(InputError, match="none of the 3 scans"):
        sampler.prepare()


def test_open_volumes_bounded_and_crops_unchanged(scans, tmp_path):
    cfg = PretrainDataConfig(root=scans, batch_size=4, crops_per_volume=1)
    few = PretrainDataConfig(root=scans, batch_size=4, crops_per_volume=1, open_volumes=1)
    vols = list_volumes(cfg)
    wide = CropSampler(vols, cfg, tmp_path / "cache", region=8, seed=7)
    narrow = CropSampler(vols, few, tmp_path / "cache", region=8, seed=7)
    fd_dir = Path("/proc/self/fd")
    before = len(list(fd_dir.iterdir())) if fd_dir.is_dir() else 0
    for i in range(6):
        a, b = wide.batch(i), narrow.batch(i)
        assert torch.equal(a["image"], b["image"]) and a["seed"] == b["seed"]
    assert len(narrow._open) == 1 and len(wide._open) == 3
    del wide
    gc.collect()
    if fd_dir.is_dir():
        assert len(list(fd_dir.iterdir())) - before <= 1  # the narrow sampler's one open map


class _CountingMin(np.ndarray):
    calls = 0

    def min(self, *args, **kwargs):
        _CountingMin.calls += 1
        return super().min(*args, **kwargs)


def test_padding_uses_the_volume_background_found_once(scans, tmp_path, monkeypatch):
    from medssl.data import feed
    from medssl.data.cache import VolumeCache
    from medssl.data.preprocess import PreprocessConfig

    class Cache(VolumeCache):
        def get(self, *args, **kwargs):
            return super().get(*args, **kwargs).view(_CountingMin)

    monkeypatch.setattr(feed, "open_cache", Cache)
    raw = PreprocessConfig(intensity="none")  # background stays -1000 HU, not 0
    cfg = PretrainDataConfig(root=scans, batch_size=6, crops_per_volume=2, foreground_prob=0.0, preprocessing=raw)
    sampler = CropSampler(list_volumes(cfg), cfg, tmp_path / "cache", region=20, seed=1)  # Z is 16 < 20
    images = torch.cat([sampler.batch(i)["image"] for i in range(4)])
    assert images.shape == (24, 1, 20, 20, 20)
    assert torch.all(images[..., 16:] == -1000)  # padded with each volume's own background
    assert 1 <= _CountingMin.calls <= 3  # once per volume, not once per crop
