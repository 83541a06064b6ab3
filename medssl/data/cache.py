"""Persistent cache of decoded, preprocessed volumes, so training decodes each scan once.

Each entry is ``<cache_dir>/<key[:2]>/<key>.npy`` (float32, (1, X, Y, Z), opened
memory-mapped) with ``<key>.json`` beside it (affine, modality, spacing, shape, source).
The key is the sha256 of the input's fingerprint (file bytes for NIfTI and zip; sorted
names, sizes and mtimes of a DICOM folder's files), the series asked for, the pipeline
(``PreprocessConfig`` as JSON) and ``CACHE_VERSION``. Entries are written to a temporary
file and moved into place with ``os.replace``, so a killed run never leaves half a file and
several processes (DataLoader workers, DDP ranks) may fill the same cache; a per-key lock
file makes the others wait for the first instead of decoding again.

The index entries' ``source`` and ``case_id`` never carry patient data from paths: a name
holding the scan's own PatientName / PatientID is stored as ``case-<hash>``
(``medssl.io.path_privacy``), every name with ``pseudonymize``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medssl.atomic import atomic_path
from medssl.data.preprocess import PreprocessConfig, preprocess_scan
from medssl.io import case_id_for, read_scan
from medssl.io.limits import DEFAULT_LIMITS
from medssl.io.path_privacy import mask_label, read_patient_tokens
from medssl.io.sources import walk_tree

CACHE_VERSION = 1
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_stats(folder: Path) -> list[tuple[str, int, int]]:
    """Sorted (relative name, size, mtime) of every file below ``folder``, as read_scan reads
    folders to any depth; hidden files left out."""
    stats = []
    for here, _, filenames in walk_tree(folder, DEFAULT_LIMITS.max_depth):
        for name in filenames:
            st = (here / name).stat()
            stats.append(((here / name).relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(stats)


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        write(fh)


@contextlib.contextmanager
def _key_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent writers may both decode; results still atomic
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class VolumeCache:
    """``VolumeCache(dir).get(path, cfg)`` -> memory-mapped ``(1, X, Y, Z)`` float32 array.

    ``read`` defaults to ``medssl.io.read_scan``; it is called only on a cache miss."""

    def __init__(self, cache_dir: str | Path, read: Callable[..., Any] | None = None, *, pseudonymize: bool = False):
        self.dir = Path(cache_dir)
        self.pseudonymize = pseudonymize
        self.dir.mkdir(parents=True, exist_ok=True)
        self._read = read
        self._fingerprints: dict[tuple[str, int, int], str] = {}
        self.misses = 0  # entries this instance decoded
        self._count = threading.Lock()  # threads may fill entries at once (CropSampler.prepare)

    def fingerprint(self, path: str | Path) -> str:
        """Content hash of a file (memoised on path, size and mtime, also on disk), or the
        hash of a folder's sorted (name, size, mtime) list."""
        path = Path(path).resolve()
        if path.is_dir():
            return "dir:" + hashlib.sha256(json.dumps(_folder_stats(path)).encode()).hexdigest()
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo in self._fingerprints:
            return self._fingerprints[memo]
        side = self.dir / "fingerprints" / (hashlib.sha256(json.dumps(memo).encode()).hexdigest()[:32] + ".txt")
        if side.is_file():
            value = side.read_text().strip()
        else:
            value = "file:" + _file_sha256(path)
            side.parent.mkdir(exist_ok=True)
            _atomic_write(side, lambda fh: fh.write(value), mode="w")
        self._fingerprints[memo] = value
        return value

    def key(self, path: str | Path, cfg: PreprocessConfig, series_uid: str | None = None) -> str:
        spec = {"version": CACHE_VERSION, "input": self.fingerprint(path), "series": series_uid,
                "pipeline": cfg.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.dir / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, path: str | Path, cfg: PreprocessConfig, series_uid: str | None = None) -> np.ndarray:
        """The preprocessed volume ``(1, X, Y, Z)`` float32, read-only memory map."""
        npy, _ = self._ensure(path, cfg, series_uid)
        return np.load(npy, mmap_mode="r")

    def get_meta(self, path: str | Path, cfg: PreprocessConfig, series_uid: str | None = None) -> dict[str, Any]:
        """``affine`` (4x4 list, voxel -> RAS+ mm after preprocessing), ``modality``,
        ``spacing``, ``shape``, ``source``, ``case_id``."""
        _, meta = self._ensure(path, cfg, series_uid)
        return json.loads(meta.read_text())

    def _ensure(self, path, cfg: PreprocessConfig, series_uid: str | None) -> tuple[Path, Path]:
        key = self.key(path, cfg, series_uid)
        npy, meta = self._paths(key)
        if npy.is_file() and meta.is_file():
            return npy, meta
        npy.parent.mkdir(parents=True, exist_ok=True)
        with _key_lock(npy.with_suffix(".lock")):
            if not (npy.is_file() and meta.is_file()):  # another process may have just written it
                self._fill(path, cfg, series_uid, npy, meta)
        return npy, meta

    def _fill(self, path, cfg: PreprocessConfig, series_uid: str | None, npy: Path, meta: Path) -> None:
        read = self._read or read_scan
        scan = read(Path(path), series_uid=series_uid) if series_uid else read(Path(path))
        array, affine = preprocess_scan(scan, cfg)
        info = {
            "affine": affine.tolist(),
            "modality": scan.modality,
            "spacing": [float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)],
            "shape": list(array.shape),
            **self._labels(Path(path), scan),
            "pipeline": cfg.model_dump(mode="json"),
            "cache_version": CACHE_VERSION,
        }
        _atomic_write(meta, lambda fh: fh.write(json.dumps(info, indent=1)), mode="w")
        _atomic_write(npy, lambda fh: np.save(fh, np.ascontiguousarray(array, dtype=np.float32)))
        with self._count:
            self.misses += 1

    def _labels(self, path: Path, scan: Any) -> dict[str, str]:
        """``source`` and ``case_id`` for the index, patient names in paths masked."""
        patient = read_patient_tokens(path)
        case_id = case_id_for(path, patient=patient, pseudonymize=self.pseudonymize)
        if case_id == case_id_for(path):  # nothing to mask: the reader's own id
            case_id = mask_label(str(scan.case_id), patient, self.pseudonymize)
        return {"source": mask_label(str(scan.source), patient, self.pseudonymize), "case_id": case_id}
