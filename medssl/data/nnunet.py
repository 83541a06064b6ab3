"""nnU-Net v2 raw datasets, read as they are (no conversion):

    DatasetXXX_Name/dataset.json   {"channel_names": {"0": "T2", "1": "ADC"},
                                    "labels": {"background": 0, "prostate": 1},
                                    "numTraining": 32, "file_ending": ".nii.gz"}
    DatasetXXX_Name/imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz ...   channels of CASE
    DatasetXXX_Name/labelsTr/CASE.nii.gz
    DatasetXXX_Name/imagesTs/CASE_0000.nii.gz ...                    unlabeled

Cases are found by naming (nnU-Net's own rule): ``CASE_XXXX`` + file ending, four-digit
channel index; every case must have every channel of ``channel_names``. Region-based labels
(a label given as a list of values) are not supported and raise a ConfigError."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from medssl.errors import ConfigError

log = logging.getLogger("medssl.datalist")

READABLE_ENDINGS = (".nii.gz", ".nii")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def read_dataset_json(folder: Path) -> dict[str, Any] | None:
    path = folder / "dataset.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path.name}: not valid JSON ({err.__class__.__name__})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a JSON object")
    return data


def is_nnunet_v2(folder: Path) -> bool:
    """A v2 dataset.json (channel_names / file_ending, no training list), or imagesTr +
    labelsTr folders without any dataset.json."""
    data = read_dataset_json(folder)
    if data is None:
        return (folder / "imagesTr").is_dir() and (folder / "labelsTr").is_dir()
    return "training" not in data and ("channel_names" in data or "file_ending" in data)


def _layout(folder: Path) -> tuple[dict[str, Any], str, int]:
    data = read_dataset_json(folder) or {}
    ending = str(data.get("file_ending", ".nii.gz"))
    if ending not in READABLE_ENDINGS:
        raise ConfigError(f"dataset.json: file_ending {ending!r} is not readable here (use {' or '.join(READABLE_ENDINGS)})")
    channels = data.get("channel_names") or data.get("modality") or {"0": "image"}
    return data, ending, len(channels)


def _grouped(images: Path, ending: str, n_channels: int) -> dict[str, list[Path]]:
    """CASE -> [channel 0 path, channel 1 path, ...] from ``CASE_XXXX<ending>`` names."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(images.iterdir()):
        if not path.name.endswith(ending):
            continue
        match = _CHANNEL.match(path.name[: -len(ending)])
        if match is None:
            raise ConfigError(f"{images.name}/{path.name}: expected CASE_XXXX{ending} (4-digit channel index)")
        found.setdefault(match["case"], {})[int(match["channel"])] = path
    out = {}
    for case, by_channel in found.items():
        missing = [f"{case}_{c:04d}{ending}" for c in range(n_channels) if c not in by_channel]
        extra = sorted(c for c in by_channel if c >= n_channels)
        if missing or extra:
            raise ConfigError(f"{images.name}: case {case} needs channels 0000..{n_channels - 1:04d}"
                              f"{'; missing ' + ', '.join(missing) if missing else ''}"
                              f"{'; unexpected channel ' + ', '.join(f'{c:04d}' for c in extra) if extra else ''}")
        out[case] = [by_channel[c] for c in range(n_channels)]
    return out


def nnunet_cases(folder: Path, split: str = "Tr") -> list[tuple[str, list[Path], Path | None]]:
    """(case id, channel paths, label path or None) for ``imagesTr`` (labels from
    ``labelsTr``, required) or ``imagesTs`` (no labels)."""
    data, ending, n_channels = _layout(folder)
    images = folder / f"images{split}"
    if not images.is_dir():
        raise ConfigError(f"{folder.name}: no images{split} folder (nnU-Net v2 layout)")
    cases = []
    for case, paths in _grouped(images, ending, n_channels).items():
        label = None
        if split == "Tr":
            label = folder / "labelsTr" / f"{case}{ending}"
            if not label.is_file():
                raise ConfigError(f"labelsTr: no label for case {case} (expected labelsTr/{case}{ending})")
        cases.append((case, paths, label))
    expected = data.get("numTraining")
    if split == "Tr" and isinstance(expected, int) and expected != len(cases):
        log.warning("%s: dataset.json says numTraining %d, imagesTr holds %d cases", folder.name, expected, len(cases))
    return cases


def labels_by_value(labels: Any, where: str = "dataset.json labels") -> dict[str, str]:
    """Label names by value (``{"0": "background", ...}``) from MSD (value -> name) or
    nnU-Net v2 (name -> value) form."""
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"{where}: expected a non-empty mapping")
    if all(str(k).strip().lstrip("-").isdigit() for k in labels):
        return {str(int(k)): str(v) for k, v in labels.items()}
    out: dict[str, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}.{name}: region-based labels (lists of values) are not supported; "
                              "give each label one value")  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) and not str(value).isdigit():
            raise ConfigError(f"{where}.{name}: expected an integer label value, got {value!r}")
        key = str(int(value))
        if key in out:
            raise ConfigError(f"{where}: value {key} is given to both {out[key]!r} and {name!r}")
        out[key] = str(name)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))
