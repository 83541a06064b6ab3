"""The pretraining data feed: scans listed from a folder or a manifest, decoded and
normalised once into the persistent ``VolumeCache``, then many random foreground-aware
crops per cached (memory-mapped) volume.

Batch ``i`` on rank ``r`` depends only on (seed, r, i), so a resumed run continues the
exact stream from its stored data position, whatever the number of loader workers."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medssl.config import CropSize, StrictModel
from medssl.data.cache import VolumeCache
from medssl.data.manifest import read_manifest, row_path
from medssl.data.preprocess import PreprocessConfig
from medssl.errors import ConfigError, InputError
from medssl.io.discovery import is_label
from medssl.io.path_privacy import mask_label, read_patient_tokens

log = logging.getLogger("medssl.data")

FG_STRIDE = 4  # foreground voxels are indexed on this coarse grid


class PretrainDataConfig(StrictModel):
    renamed: ClassVar[dict[str, str]] = {"preprocess": "data.preprocessing"}

    root: Path | None = None  # a folder of scans (``medssl data synth`` output: its nifti/ is used)
    manifest: Path | None = None  # or a manifest.jsonl from ``medssl data index`` (rows with status ok)
    files: list[Path] | None = None  # or an explicit list of scans (what `medssl sweep` passes)
    cache_dir: Path | None = None  # decoded-volume cache; default RUN/cache
    preprocessing: PreprocessConfig = PreprocessConfig()
    crop_size: CropSize = (96, 96, 96)  # each view fed to the encoder, voxels (cubes: n or [n, n, n])
    crops_per_volume: int = Field(2, ge=1)  # crops taken from each volume a batch reads
    batch_size: int = Field(4, ge=1)  # crops per micro-batch per process (each gives 2 views)
    workers: int = Field(4, ge=0)  # DataLoader worker processes; 0 = in the training process
    prefetch: int = Field(4, ge=1)  # batches each worker keeps ready
    foreground_prob: float = Field(0.9, ge=0, le=1)  # share of crops centred on a foreground voxel
    foreground_threshold: float = 0.05  # normalised intensity above which a voxel is foreground
    open_volumes: int = Field(128, ge=1)  # memory-mapped volumes each process keeps open (one file descriptor each)
    pseudonymize: bool = False  # hash every path component in the cache index and logs, not only patient-named ones

    @field_validator("crop_size")
    @classmethod
    def _cube(cls, size: tuple[int, int, int]) -> tuple[int, int, int]:
        if len(set(size)) != 1 or size[0] < 8:
            raise ValueError(f"pretraining views are cubes of at least 8 voxels; got {list(size)}")
        return size

    @property
    def side(self) -> int:
        """The views' side length, voxels."""
        return self.crop_size[0]


def list_volumes(cfg: PretrainDataConfig) -> list[tuple[Path, str | None]]:
    """(path, series) of every usable scan. Raises ConfigError when none is found."""
    if cfg.files is not None:
        missing = [p.name for p in cfg.files if not p.exists()]
        if missing:
            raise ConfigError(f"data.files: {len(missing)} listed scans not found (e.g. {missing[0]})")
        found, where = [(p, None) for p in cfg.files], "data.files"
    elif cfg.manifest is not None:
        if not cfg.manifest.is_file():
            raise ConfigError(f"data.manifest: {cfg.manifest} not found")
        found = []
        for row in read_manifest(cfg.manifest):
            if row.get("status") == "ok" and row.get("role", "image") != "label":
                # data.root, when given, overrides the indexed root the manifest records
                path = cfg.root / row["path"] if cfg.root is not None else row_path(cfg.manifest, row)
                found.append((path, row.get("series")))
        where = str(cfg.manifest)
    elif cfg.root is not None:
        if not cfg.root.is_dir():
            raise ConfigError(f"data.root: {cfg.root} is not a folder")
        folder = cfg.root / "nifti" if (cfg.root / "nifti").is_dir() else cfg.root
        pattern = "*.nii*" if folder != cfg.root else "**/*.nii*"
        found = [(p, None) for p in sorted(folder.glob(pattern)) if p.is_file() and not is_label(p)]
        where = str(folder)
    else:
        raise ConfigError("set data.root (a folder of scans) or data.manifest (from `medssl data index`)")
    if not found:
        raise ConfigError(f"no scans found in {where}")
    return found


def open_cache(cache_dir: Path, pseudonymize: bool = False) -> Any:
    return VolumeCache(cache_dir, pseudonymize=pseudonymize)


class CropSampler:
    """Batch ``index`` -> {"image": (B, 1, R, R, R) float32, "seed": int}, R = region size.

    At most ``cfg.open_volumes`` volumes stay memory-mapped (each map holds a file
    descriptor); the least recently used is closed and reopened from the cache when needed."""

    def __init__(
        self,
        volumes: list[tuple[Path, str | None]],
        cfg: PretrainDataConfig,
        cache_dir: Path,
        region: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.volumes = volumes[rank::world_size] if len(volumes) >= world_size else volumes
        self.cfg, self.cache_dir, self.region = cfg, cache_dir, region
        self.seed, self.rank = seed, rank
        self._cache: Any = None
        self._open: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._background: dict[int, float] = {}  # per volume, found once, for padding

    def _volume(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The memory-mapped (1, X, Y, Z) volume and its coarse foreground coordinates (M, 3)."""
        if i in self._open:
            self._open.move_to_end(i)
            return self._open[i]
        if self._cache is None:
            self._cache = open_cache(self.cache_dir, self.cfg.pseudonymize)
        path, series = self.volumes[i]
        arr = self._cache.get(path, self.cfg.preprocessing, series)
        coarse = np.asarray(arr[0, ::FG_STRIDE, ::FG_STRIDE, ::FG_STRIDE])
        fg = np.argwhere(coarse > self.cfg.foreground_threshold) * FG_STRIDE
        self._open[i] = (arr, fg)
        while len(self._open) > self.cfg.open_volumes:
            self._open.popitem(last=False)  # dropping the last reference closes the map
        return arr, fg

    def _display(self, path: Path) -> str:
        """The scan's path relative to the data root or manifest folder (never a tag value),
        with any component that holds the scan's own patient name or ID pseudonymised."""
        label = path.name
        for base in (self.cfg.root, self.cfg.manifest.parent if self.cfg.manifest else None):
            if base is not None and path.is_relative_to(base):
                label = path.relative_to(base).as_posix()
                break
        return mask_label(label, read_patient_tokens(path), self.cfg.pseudonymize)

    def _fill(self, i: int) -> InputError | None:
        """Decode volume ``i`` into the cache (a no-op when it is there); its read error, if any."""
        path, series = self.volumes[i]
        try:
            self._cache.get(path, self.cfg.preprocessing, series)
        except InputError as err:
            return err
        return None

    def prepare(self) -> list[tuple[int, ...]]:
        """Decode every volume of this shard into the cache now; returns their shapes.

        Volumes missing from the cache are decoded by ``cfg.workers`` threads at once
        (reading, inflating and resampling release the GIL); the cache's per-key locks keep
        other processes from decoding the same one. Scans that fail to read (InputError)
        are logged by relative path and error code and left out of the stream. Raises
        InputError when none of them can be read."""
        if self._cache is None:
            self._cache = open_cache(self.cache_dir, self.cfg.pseudonymize)
        threads = max(1, min(self.cfg.workers, len(self.volumes)))
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads, thread_name_prefix="medssl-decode") as pool:
                errors = list(pool.map(self._fill, range(len(self.volumes))))
        else:
            errors = [self._fill(i) for i in range(len(self.volumes))]
        kept, shapes = [], []
        for i, ((path, series), err) in enumerate(zip(self.volumes, errors)):
            if err is None:
                shapes.append(tuple(self._volume(i)[0].shape))
                kept.append((path, series))
            else:
                log.warning("skipping %s: [%s] %s", self._display(path), err.code, err.reason)
        if not kept:
            raise InputError(f"none of the {len(self.volumes)} scans could be read (see the warnings above); "
                             "check data.root / data.manifest")
        if len(kept) < len(self.volumes):
            log.warning("%d of %d scans skipped as unreadable", len(self.volumes) - len(kept), len(self.volumes))
            self.volumes = kept
            self._open.clear()
            self._background.clear()
        return shapes

    def _pad_value(self, i: int, arr: np.ndarray) -> float:
        if i not in self._background:
            self._background[i] = float(arr.min())
        return self._background[i]

    def _crop(self, i: int, rng: np.random.Generator) -> np.ndarray:
        arr, fg = self._volume(i)
        r = self.region
        shape = np.array(arr.shape[1:])
        if len(fg) and rng.random() < self.cfg.foreground_prob:
            centre = fg[rng.integers(len(fg))] + rng.integers(0, FG_STRIDE, 3)
        else:
            centre = rng.integers(0, shape)
        start = np.clip(centre - r // 2, 0, np.maximum(shape - r, 0))
        sl = tuple(slice(int(s), int(s) + r) for s in start)
        crop = np.asarray(arr[(0, *sl)], dtype=np.float32)
        if crop.shape != (r, r, r):
            crop = np.pad(crop, [(0, r - n) for n in crop.shape], constant_values=self._pad_value(i, arr))
        return crop

    def batch(self, index: int) -> dict[str, Any]:
        ss = np.random.SeedSequence([self.seed, self.rank, index])
        rng = np.random.default_rng(ss)
        cfg = self.cfg
        n_vol = math.ceil(cfg.batch_size / cfg.crops_per_volume)
        picks = rng.choice(len(self.volumes), n_vol, replace=len(self.volumes) < n_vol)
        crops = []
        for i in picks:
            crops.extend(self._crop(int(i), rng) for _ in range(cfg.crops_per_volume))
        image = torch.from_numpy(np.stack(crops[: cfg.batch_size])[:, None])  # [B, 1, R, R, R]
        step_seed = int(ss.spawn(1)[0].generate_state(1, np.uint64)[0] >> np.uint64(1))
        return {"image": image, "seed": step_seed}


class _CropStream(IterableDataset):
    def __init__(self, sampler: CropSampler, start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + worker
        while True:
            yield self.sampler.batch(index)
            index += n


def make_batches(sampler: CropSampler, cfg: PretrainDataConfig, pin_memory: bool) -> Callable[[int], Any]:
    """The trainer's batch source: ``start`` (micro-batch number) -> endless iterable."""

    def batches(start: int) -> Any:
        stream = _CropStream(sampler, start)
        if cfg.workers == 0:
            return iter(stream)
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=cfg.workers,
            pin_memory=pin_memory,
            prefetch_factor=cfg.prefetch,
        )

    return batches
