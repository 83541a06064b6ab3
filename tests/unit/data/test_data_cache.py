"""Volume cache: a hit never decodes again; keys follow input and pipeline; atomic files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from medssl.data.cache import VolumeCache
from medssl.data.phantom import make_phantom
from medssl.data.phantom_io import write_dicom_series
from medssl.data.preprocess import PreprocessConfig, preprocess_scan
from medssl.io import write_nifti
from medssl.io.scan import Scan


class CountingReader:
    def __init__(self):
        self.calls = 0

    def __call__(self, path, series_uid=None):
        import nibabel as nib

        self.calls += 1
        img = nib.load(path)
        return Scan(np.asarray(img.dataobj, dtype=np.float32), img.affine, "CT", "x.nii.gz", "x")


@pytest.fixture()
def nifti(tmp_path):
    image, _, affine = make_phantom(3, shape=(16, 16, 8))
    path = tmp_path / "ct.nii.gz"
    write_nifti(image.astype(np.int16), affine, path)
    return path


def test_second_get_does_not_read(tmp_path, nifti):
    reader = CountingReader()
    cache = VolumeCache(tmp_path / "cache", read=reader)
    cfg = PreprocessConfig()
    first = cache.get(nifti, cfg)
    assert reader.calls == 1 and first.shape == (1, 16, 16, 8) and first.dtype == np.float32
    assert isinstance(first, np.memmap)
    again = VolumeCache(tmp_path / "cache", read=reader)  # a new process / worker
    assert np.array_equal(again.get(nifti, cfg), first)
    meta = again.get_meta(nifti, cfg)
    assert reader.calls == 1
    expected, affine = preprocess_scan(reader(nifti), cfg)
    assert np.array_equal(first, expected)
    assert np.allclose(meta["affine"], affine) and meta["modality"] == "CT"
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_key_changes_with_pipeline_and_content(tmp_path, nifti):
    cache = VolumeCache(tmp_path / "cache", read=CountingReader())
    base = cache.key(nifti, PreprocessConfig())
    assert cache.key(nifti, PreprocessConfig(spacing=(2.0, 2.0, 2.0))) != base
    assert cache.key(nifti, PreprocessConfig(), series_uid="abc") != base
    image, _, affine = make_phantom(4, shape=(16, 16, 8))
    write_nifti(image.astype(np.int16), affine, nifti)
    assert VolumeCache(tmp_path / "cache").key(nifti, PreprocessConfig()) != base


def test_dicom_folder_decoded_once(tmp_path, monkeypatch):
    import medssl.data.cache as cache_module
    import medssl.io as io

    image, _, affine = make_phantom(5, shape=(12, 12, 6))
    folder = tmp_path / "series"
    write_dicom_series(image, affine, folder, seed=5)
    calls = []
    real = io.read_scan
    monkeypatch.setattr(cache_module, "read_scan", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache = VolumeCache(tmp_path / "cache")
    a = cache.get(folder, PreprocessConfig(intensity="none", orientation="LPS"))
    b = VolumeCache(tmp_path / "cache").get(folder, PreprocessConfig(intensity="none", orientation="LPS"))
    assert len(calls) == 1
    assert np.array_equal(a[0], image) and np.array_equal(b, a)
    os.utime(folder / "IM0003.dcm", ns=(1, 1))  # touched file -> new key -> decoded again
    VolumeCache(tmp_path / "cache").get(folder, PreprocessConfig(intensity="none", orientation="LPS"))
    assert len(calls) == 2


def test_concurrent_gets_decode_once(tmp_path, nifti):
    import threading
    import time

    reader = CountingReader()

    def slow_reader(path, series_uid=None):
        time.sleep(0.2)  # the others arrive while the first is decoding
        return reader(path)

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        np.array(VolumeCache(tmp_path / "cache", read=slow_reader).get(nifti, PreprocessConfig()))))
        for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reader.calls == 1 and len(results) == 4
    assert all(np.array_equal(r, results[0]) for r in results)


def test_nested_dicom_folders_get_different_keys(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        image, _, affine = make_phantom(seed, shape=(8, 8, 3))
        write_dicom_series(image, affine, tmp_path / name / "nested", seed=seed)
    cache = VolumeCache(tmp_path / "cache")
    assert cache.key(tmp_path / "a", PreprocessConfig()) != cache.key(tmp_path / "b", PreprocessConfig())


def test_prepare_decodes_in_parallel_threads_once_each_and_skips_unreadable(tmp_path, caplog):
    """Threads fill the cache at once; every readable scan is decoded once, an unreadable one is
    skipped with a warning, and the stream is what one thread would have given."""
    from medssl.data.feed import CropSampler, PretrainDataConfig
    from medssl.data.phantom_io import synth_cohort

    synth_cohort(tmp_path / "D", 3, fmt="nifti", seed=0, shape=(24, 24, 16), workers=1)
    files = sorted(p for p in (tmp_path / "D" / "nifti").glob("*.nii.gz") if "label" not in p.name)
    bad = tmp_path / "D" / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    vols = [(f, None) for f in [*files[:2], bad, files[2]]]
    batches = {}
    for workers in (0, 3):
        cfg = PretrainDataConfig(files=[v[0] for v in vols], crop_size=16, batch_size=2, workers=workers)
        sampler = CropSampler(vols, cfg, tmp_path / f"cache{workers}", 16, seed=0)
        shapes = sampler.prepare()
        assert len(shapes) == 3 and sampler._cache.misses == 3
        assert [v[0] for v in sampler.volumes] == files
        batches[workers] = sampler.batch(5)["image"]
    assert torch.equal(batches[0], batches[3])
    assert "broken.nii.gz" in caplog.text
