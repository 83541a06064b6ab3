"""Labeled datalists: which image goes with which label (or class), and splits by case.

Sources understood by :func:`load_datalist`:

- an MSD ``dataset.json`` (file, or a folder holding one): ``training`` entries with
  ``image`` and ``label`` (paths relative to the file's folder);
- a CSV with a header ``image,label`` or ``image,class`` (optionally ``case``);
- an nnU-Net v2 dataset as it is: ``dataset.json`` with ``channel_names``, name -> value
  ``labels`` and ``file_ending`` (no ``training`` list), ``imagesTr/CASE_0000.nii.gz`` ..
  ``CASE_000N`` (the channels of one case, in ``channel_names`` order) and
  ``labelsTr/CASE.nii.gz``; ``imagesTs`` holds unlabeled cases (:func:`nnunet_test_cases`);
- a folder of pairs ``case.nii.gz`` + ``case_label.nii.gz`` (also under ``nifti/``, the
  phantom generator's layout).

:func:`dataset_labels` reads label names from either dataset.json flavour (MSD value -> name,
nnU-Net v2 name -> value) and :func:`dataset_label_codes` its optional ``label_codes`` (a
:class:`~medssl.data.labels.LabelVocabulary` map, see there).

Labels are checked against their image's geometry by :func:`check_label_geometry`: the
same grid passes, an overlapping grid is resampled nearest-neighbour with a notice, a
disjoint one raises :class:`GeometryError`."""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medssl.data.label_resample import resample_label
from medssl.data.labels import LabelVocabulary
from medssl.data.nnunet import is_nnunet_v2 as _is_nnunet_v2
from medssl.data.nnunet import labels_by_value, nnunet_cases, read_dataset_json
from medssl.errors import ConfigError, GeometryError, InputError, MedsslError
from medssl.io import read_scan
from medssl.io.discovery import NIFTI_SUFFIXES, case_stem, is_label, is_nifti
from medssl.io.path_privacy import pseudonym

if TYPE_CHECKING:
    from medssl.data.labeled import DataConfig

log = logging.getLogger("medssl.datalist")

LABEL_SUFFIX = "_label"


@dataclass(frozen=True)
class LabeledCase:
    case_id: str
    image: Path  # the (first) channel
    label: Path | None = None  # segmentation label map
    cls: str | None = None  # classification target as written in the datalist
    more_channels: tuple[Path, ...] = ()  # channels 1.. of a multi-channel case (nnU-Net _0001 ..)
    # what splits sort by: the case id as read, kept (in memory only) when the id is a pseudonym,
    # so that data.pseudonymize does not change which cases go where
    sort_key: str = field(default="", repr=False, compare=False)

    @property
    def channels(self) -> tuple[Path, ...]:
        return (self.image, *self.more_channels)

    @property
    def is_pseudonym(self) -> bool:
        """``case_id`` is a hash (``data.pseudonymize``); ``sort_key`` keeps the id as read."""
        return bool(self.sort_key)

    def source_of(self, path: Path) -> str:
        """How errors name one of this case's files: its name, or under ``data.pseudonymize``
        the case's pseudonym and the file's role (the name may be a patient's)."""
        if not self.is_pseudonym:
            return path.name
        role = "label" if path == self.label else f"channel {self.channels.index(path)}" if path in self.channels else "file"
        return f"case {self.case_id} ({role})"


@dataclass(frozen=True)
class Splits:
    train: list[LabeledCase]
    val: list[LabeledCase]
    test: list[LabeledCase]


def pseudonymized(cases: list[LabeledCase]) -> list[LabeledCase]:
    """The cases with hashed case ids (``medssl.io.path_privacy.pseudonym``), same order and split."""
    return [replace(c, case_id=pseudonym(c.case_id), sort_key=c.sort_key or c.case_id) for c in cases]


def load_cases(data: DataConfig) -> list[LabeledCase]:
    """The cases of a fine-tune ``data`` section: ``load_datalist(data.root)``, with hashed
    case ids when ``data.pseudonymize`` (model.pt, summaries, sweep reports and logs then
    never show the file names, which may be patients' names)."""
    cases = load_datalist(data.root)
    return pseudonymized(cases) if data.pseudonymize else cases


def load_datalist(source: str | Path) -> list[LabeledCase]:
    """Cases from a dataset.json, a CSV or a folder of image/label pairs, sorted by case id."""
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"datalist source not found: {source}")
    if source.is_dir() and _is_nnunet_v2(source):
        cases = _from_nnunet_v2(source)
    elif source.is_dir() and (source / "dataset.json").is_file():
        cases = _from_msd(source / "dataset.json")
    elif source.is_dir():
        cases = _from_folder(source / "nifti" if (source / "nifti").is_dir() else source)
    elif source.suffix.lower() == ".json":
        cases = _from_nnunet_v2(source.parent) if _is_nnunet_v2(source.parent) else _from_msd(source)
    elif source.suffix.lower() == ".csv":
        cases = _from_csv(source)
    else:
        raise ConfigError(f"{source.name}: not a datalist (expected dataset.json, .csv or a folder)")
    if not cases:
        raise ConfigError(f"{source.name}: no labeled cases found")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source.name}: case ids are not unique")
    return sorted(cases, key=lambda c: c.case_id)


def _resolve(base: Path, rel: str, where: str) -> Path:
    path = (base / rel).resolve() if not Path(rel).is_absolute() else Path(rel)
    if not path.exists():
        raise ConfigError(f"{where}: listed file not found: {rel}")
    return path


def _from_msd(path: Path) -> list[LabeledCase]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path.name}: not valid JSON ({err.__class__.__name__})") from err
    entries = data.get("training") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path.name}: no 'training' list (MSD dataset.json layout)")
    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry:
            raise ConfigError(f"{path.name}: training[{i}] has no 'image'")
        image = _resolve(path.parent, str(entry["image"]), path.name)
        label = _resolve(path.parent, str(entry["label"]), path.name) if entry.get("label") else None
        cls = str(entry["class"]) if "class" in entry else None
        cases.append(LabeledCase(case_stem(image), image, label, cls))
    return cases


def _from_nnunet_v2(folder: Path) -> list[LabeledCase]:
    return [LabeledCase(case, paths[0], label, more_channels=tuple(paths[1:]))
            for case, paths, label in nnunet_cases(folder, "Tr")]  # fmt: skip


def nnunet_test_cases(folder: str | Path) -> list[LabeledCase]:
    """The unlabeled ``imagesTs`` cases of an nnU-Net v2 dataset (channels grouped)."""
    return [LabeledCase(case, paths[0], None, more_channels=tuple(paths[1:]))
            for case, paths, _ in nnunet_cases(Path(folder), "Ts")]  # fmt: skip


def dataset_labels(folder: str | Path) -> dict[str, str] | None:
    """Label names by value from ``folder/dataset.json`` (MSD or nnU-Net v2 form), or None."""
    data = read_dataset_json(Path(folder))
    if not data or not data.get("labels"):
        return None
    return labels_by_value(data["labels"])


def dataset_label_codes(folder: str | Path):
    """The ``label_codes`` of ``folder/dataset.json`` as a LabelVocabulary, or None."""
    data = read_dataset_json(Path(folder))
    codes = (data or {}).get("label_codes")
    return LabelVocabulary.from_dict(codes, "dataset.json label_codes") if codes is not None else None


def _from_csv(path: Path) -> list[LabeledCase]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        if "image" not in fields or not ({"label", "class"} & fields):
            raise ConfigError(f"{path.name}: CSV header must hold 'image' and 'label' or 'class'")
        cases = []
        for row in reader:
            image = _resolve(path.parent, row["image"], path.name)
            label = _resolve(path.parent, row["label"], path.name) if row.get("label") else None
            cls = row.get("class") or None
            cases.append(LabeledCase(row.get("case") or case_stem(image), image, label, cls))
    return cases


def _from_folder(folder: Path) -> list[LabeledCase]:
    cases = []
    for image in sorted(folder.iterdir()):
        stem = case_stem(image)
        if not is_nifti(image) or is_label(image):
            continue
        label = next((folder / f"{stem}{LABEL_SUFFIX}{s}" for s in NIFTI_SUFFIXES
                      if (folder / f"{stem}{LABEL_SUFFIX}{s}").is_file()), None)
        if label is not None:
            cases.append(LabeledCase(stem, image, label))
    return cases


def split_cases(
    cases: list[LabeledCase], *, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.0,
    n_train: int | None = None, n_val: int | None = None, train_seed: int | None = None,
    n_test: int | None = None,
) -> Splits:
    """Deterministic split by case for a seed: test first, then val, the rest train.

    ``n_train`` keeps only that many training cases (label-efficiency runs): the test and
    validation cases do not depend on it, so runs with different ``n_train`` are compared
    on the same held-out cases. ``train_seed`` reshuffles the training pool before taking
    ``n_train`` (different labeled subsets per seed, nested across ``n_train``)."""
    order = sorted(cases, key=lambda c: c.sort_key or c.case_id)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = n_test if n_test is not None else round(n * test_fraction)
    n_val = n_val if n_val is not None else max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n_test + n_val >= n:
        raise ConfigError(f"{n} cases cannot give {n_val} validation and {n_test} test cases and any training")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if train_seed is not None:
        random.Random(train_seed).shuffle(train)
    if n_train is not None:
        if n_train > len(train):
            raise ConfigError(f"asked for {n_train} training cases, only {len(train)} left after val/test")
        train = train[:n_train]
    return Splits(train, val, test)


def check_label_geometry(
    label: np.ndarray, label_affine: np.ndarray, image_shape: tuple[int, ...], image_affine: np.ndarray,
    source: str, atol_mm: float = 1e-3,
) -> np.ndarray:
    """The label on the image's grid: as it is when grids match, else resampled
    nearest-neighbour when the two volumes overlap (with a notice), else GeometryError."""
    if tuple(label.shape[:3]) == tuple(image_shape[:3]) and np.allclose(label_affine, image_affine, atol=atol_mm):
        return label
    lo_i, hi_i = _world_box(image_shape, image_affine)
    lo_l, hi_l = _world_box(label.shape, label_affine)
    overlap = np.prod(np.clip(np.minimum(hi_i, hi_l) - np.maximum(lo_i, lo_l), 0, None))
    if overlap <= 0:
        raise GeometryError("label and image do not overlap in space; wrong label file?", source=source)
    log.warning("%s: label grid differs from the image grid; resampled nearest-neighbour", source)
    return resample_label(label, label_affine, tuple(image_shape[:3]), image_affine)


def _world_box(shape: tuple[int, ...], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    world = (affine @ corners.T).T[:, :3]
    return world.min(0), world.max(0)


def read_labeled_case(case: LabeledCase) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, str]:
    """(image (X, Y, Z) float32, or (C, X, Y, Z) for a multi-channel case; label on the image
    grid or None; affine; modality). Every channel must lie on the first one's grid."""
    try:
        return _read_labeled_case(case)
    except MedsslError as err:
        own = f"case {case.case_id} ("
        if not case.is_pseudonym or (err.source or "").startswith(own):
            raise
        # a reader names the file (or a file inside a series folder); under data.pseudonymize
        # say which case and which of its files instead
        named = next((p for p in (*case.channels, case.label) if p is not None and p.name == err.source), case.image)
        raise type(err)(err.reason, source=case.source_of(named), code=err.code) from None


def _read_labeled_case(case: LabeledCase) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, str]:
    scan = _read_image(case)
    if case.more_channels:
        scan = (_stack_channels(case, scan), scan[1], scan[2])
    label = None
    if case.label is not None:
        import nibabel as nib

        try:
            img = nib.load(str(case.label))
            lab = np.asarray(img.dataobj)
        except Exception as err:
            raise InputError(f"label cannot be read ({err.__class__.__name__})", source=case.source_of(case.label)) from err
        if lab.ndim != 3:
            raise GeometryError(f"label must be 3D, got shape {lab.shape}", source=case.source_of(case.label))
        lab = np.rint(lab).astype(np.int16) if lab.dtype.kind == "f" else lab.astype(np.int16)
        label = check_label_geometry(lab, img.affine, scan[0].shape[-3:], scan[1], case.source_of(case.label))
    return scan[0], label, scan[1], scan[2]


def _stack_channels(case: LabeledCase, first: tuple[np.ndarray, np.ndarray, str]) -> np.ndarray:
    arrays = [first[0]]
    for path in case.more_channels:
        array, affine, _ = _read_image(replace(case, image=path, label=None, more_channels=()))
        if array.shape != first[0].shape or not np.allclose(affine, first[1], atol=1e-3):
            raise GeometryError(f"channel grid {array.shape} differs from {case.source_of(case.image)}'s "
                                f"{first[0].shape}; all channels of a case must share one grid", source=case.source_of(path))  # fmt: skip
        arrays.append(array)
    return np.stack(arrays)


def _read_image(case: LabeledCase) -> tuple[np.ndarray, np.ndarray, str]:
    scan = read_scan(case.image)
    return np.asarray(scan.array, dtype=np.float32), np.asarray(scan.affine, dtype=np.float64), scan.modality
