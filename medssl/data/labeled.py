"""Labeled cases made ready for fine-tuning (the data layer of fine-tuning, evaluation and
probes; configs in ``data:`` of a fine-tune config): preprocessed exactly as the predictor will
(``preprocess_scan`` with the artifact's ``PreprocessConfig``), labels carried onto the
preprocessed grid nearest-neighbour, and training crops sampled from them."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from medssl.config import StrictModel
from medssl.data.datalist import LabeledCase, read_labeled_case, split_cases
from medssl.data.label_resample import resample_label
from medssl.data.nnunet import labels_by_value
from medssl.data.preprocess import PreprocessConfig, preprocess_scan
from medssl.errors import ConfigError, InputError
from medssl.io.scan import Scan

log = logging.getLogger("medssl.finetune")
CACHE_SIZE = 128  # prepared cases kept per process (a sweep reads each case once)
_CACHE: OrderedDict[tuple, PreparedCase] = OrderedDict()


class ClassFromLabel(StrictModel):
    """Derive a binary class from a label map: 1 when ``value`` covers >= ``min_voxels``."""

    value: int = 6
    min_voxels: int = 1
    names: dict[str, str] = Field(default_factory=lambda: {"0": "absent", "1": "present"})


class DataConfig(StrictModel):
    root: str = ""  # dataset.json, CSV, or a folder of image/label pairs
    modality: str = "CT"
    labels: dict[str, str] | None = None  # target index -> name; None: from dataset.json/labels.json
    label_codes: dict[str, Any] | None = None  # label name or index -> DICOM SEG code; None: dataset.json's
    label_map: dict[int, int] | None = None  # source label value -> target index; others -> 0
    class_from_label: ClassFromLabel | None = None  # classification targets derived from labels
    preprocessing: PreprocessConfig = PreprocessConfig()
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    n_test: int | None = Field(None, ge=0)  # exact count; overrides test_fraction
    n_val: int | None = Field(None, ge=0)
    n_train: int | None = Field(None, ge=1)  # keep only this many labeled training cases
    split_seed: int = 0
    # case ids as hashed pseudonyms in model.pt, summaries, sweep reports and logs (file names may
    # be patients' names); the split stays the same
    pseudonymize: bool = False

    def split(self, cases: list, *, n_train: int | None = None, train_seed: int | None = None):
        """Test / validation / training cases by this config (``split_cases``); the held-out
        cases never depend on ``n_train`` or ``train_seed``."""
        return split_cases(cases, seed=self.split_seed, val_fraction=self.val_fraction,
                           test_fraction=self.test_fraction, n_test=self.n_test, n_val=self.n_val,
                           n_train=n_train, train_seed=train_seed)


# What a case is prepared with as its target: a label map on the image grid (segmentation)
# or one class index (classification); the task objects say which (``FinetuneKind.target``).
Target = Literal["label_map", "class"]


class LabeledTask(Protocol):
    """What preparing cases needs of a fine-tune config: its data section and target."""

    data: DataConfig

    @property
    def target(self) -> Target: ...


@dataclass
class PreparedCase:
    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32, preprocessed
    affine: np.ndarray  # of the preprocessed grid
    label: np.ndarray | None = None  # (X, Y, Z) int64 target indices on the same grid
    cls: int | None = None
    foreground: dict[int, np.ndarray] | None = None  # label value -> (N, 3) voxel indices, label > 0
    native_spacing: tuple[float, ...] | None = None  # mm, of the scan as read (before preprocessing)
    native_extent: tuple[float, ...] | None = None  # field of view, mm
    modality: str = ""


def resolve_labels(cfg: LabeledTask) -> dict[str, str]:
    """Label (or class) names by index: config, else dataset.json / labels.json next to the data."""
    data = cfg.data
    if cfg.target == "class" and data.class_from_label is not None:
        return dict(data.class_from_label.names)
    if data.labels:
        return {str(k): str(v) for k, v in data.labels.items()}
    root = Path(data.root)
    folder = root if root.is_dir() else root.parent
    for name, key in (("dataset.json", "labels"), ("labels.json", None)):
        path = folder / name
        if path.is_file():
            content = json.loads(path.read_text())
            labels = content.get(key) if key else content
            if isinstance(labels, dict) and labels:
                return labels_by_value(labels, f"{name} labels")  # MSD value -> name or nnU-Net v2 name -> value
    raise ConfigError(f"no label names for {root.name or 'data'}: set data.labels (index -> name)")


def _remap(label: np.ndarray, data: DataConfig, n_labels: int, source: str) -> np.ndarray:
    if data.label_map:
        lut = np.zeros(max(int(label.max()), max(data.label_map)) + 1, dtype=np.int64)
        for src, dst in data.label_map.items():
            lut[src] = dst
        return lut[np.clip(label, 0, None)]
    if label.min() < 0 or label.max() >= n_labels:
        raise InputError(
            f"label values {int(label.min())}..{int(label.max())} outside 0..{n_labels - 1}; set data.label_map",
            source=source,
        )
    return label.astype(np.int64)


def _class_index(case: LabeledCase, raw_label: np.ndarray | None, cfg: LabeledTask, names: dict[str, str]) -> int:
    rule = cfg.data.class_from_label
    if rule is not None:
        if raw_label is None:
            raise InputError("class_from_label needs a label map", source=case.source_of(case.image))
        return int(int((raw_label == rule.value).sum()) >= rule.min_voxels)
    if case.cls is None:
        raise InputError("no class given for this case (CSV column 'class')", source=case.source_of(case.image))
    if case.cls in names:
        return int(case.cls)
    by_name = {v: int(k) for k, v in names.items()}
    if case.cls in by_name:
        return by_name[case.cls]
    raise InputError(f"class '{case.cls}' is not one of {sorted(names.values())}", source=case.source_of(case.image))


def prepare_case(case: LabeledCase, cfg: LabeledTask, names: dict[str, str]) -> PreparedCase:
    """Read, preprocess and label one case (cached per process, so sweeps read each once)."""
    pp = cfg.data.preprocessing
    d = cfg.data
    key = (str(case.image), str(case.label), case.cls, pp.model_dump_json(), d.modality, str(d.label_map),
           str(d.class_from_label), tuple(names.items()), cfg.target)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        hit = _CACHE[key]  # the same file under another id (data.pseudonymize) keeps its new id
        return hit if hit.case_id == case.case_id else dataclasses.replace(hit, case_id=case.case_id)
    image, raw_label, affine, _ = read_labeled_case(case)
    scan = Scan(image, affine, cfg.data.modality, case.source_of(case.image), case.case_id)
    array, new_affine = preprocess_scan(scan, pp)
    prepared = PreparedCase(case.case_id, np.ascontiguousarray(array, dtype=np.float32), np.asarray(new_affine))
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    prepared.native_spacing = tuple(float(v) for v in spacing)
    prepared.native_extent = tuple(float(v) for v in spacing * np.asarray(image.shape[-3:]))
    prepared.modality = cfg.data.modality
    if cfg.target == "label_map":
        if raw_label is None:
            raise InputError("segmentation case without a label map", source=case.source_of(case.image))
        same = array.shape[1:] == raw_label.shape and np.allclose(affine, new_affine, atol=1e-3)
        on_grid = raw_label if same else _to_grid(raw_label, affine, array.shape[1:], new_affine)
        prepared.label = _remap(on_grid, cfg.data, len(names), case.case_id)
        fg = np.argwhere(prepared.label > 0).astype(np.int32)
        values = prepared.label[tuple(fg.T)]
        prepared.foreground = {int(v): fg[values == v] for v in np.unique(values)}
    else:
        prepared.cls = _class_index(case, raw_label, cfg, names)
    _CACHE[key] = prepared
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prepared


def _to_grid(label: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], new_affine: np.ndarray) -> np.ndarray:
    return resample_label(label, affine, shape, new_affine)


def pad_to(array: np.ndarray, size: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    """Pad the last three axes (at the end) up to ``size``."""
    pads = [(0, 0)] * (array.ndim - 3) + [(0, max(0, s - n)) for n, s in zip(array.shape[-3:], size)]
    return np.pad(array, pads, constant_values=value) if any(p[1] for p in pads) else array


def sample_crops(
    cases: list[PreparedCase], n: int, size: tuple[int, int, int], pos_fraction: float, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops: image (n, C, *size) float32, label (n, 1, *size) int64; a
    ``pos_fraction`` share is centred on a foreground voxel of a class drawn uniformly among
    the case's foreground classes (as nnU-Net oversamples), so small structures next to a
    large one (kidney beside liver) are seen as often."""
    images, labels = [], []
    for _ in range(n):
        case = cases[int(rng.integers(len(cases)))]
        img, lab = pad_to(case.image, size), pad_to(case.label[None], size)[0]  # type: ignore[index]
        shape = np.array(lab.shape)
        fg = np.empty((0, 3))
        if case.foreground and rng.random() < pos_fraction:
            fg = case.foreground[sorted(case.foreground)[int(rng.integers(len(case.foreground)))]]
        centre = fg[int(rng.integers(len(fg)))] if len(fg) else rng.integers(0, shape)
        start = np.clip(centre - np.array(size) // 2, 0, shape - np.array(size))
        sl = tuple(slice(int(s), int(s) + d) for s, d in zip(start, size))
        images.append(img[(slice(None), *sl)])
        labels.append(lab[sl][None])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def whole_volume(case: PreparedCase, size: tuple[int, int, int]) -> torch.Tensor:
    """(1, C, *size): the whole preprocessed volume resized, as the predictor classifies."""
    x = torch.from_numpy(case.image)[None]
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False) if tuple(x.shape[2:]) != size else x
