"""Preprocessing shared by pretraining, fine-tuning, prediction and the viewer.

Contract (kept stable for the layers above): ``PreprocessConfig`` describes the pipeline as
data, so a model artifact can carry it and a predictor can rebuild it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from medssl.config import StrictModel

if TYPE_CHECKING:
    from monai.data import MetaTensor
    from monai.transforms import Compose

    from medssl.io.scan import Scan


class CTWindow(StrictModel):
    a_min: float = -1000.0  # HU mapped to 0
    a_max: float = 1000.0  # HU mapped to 1
    clip: bool = True


class MRPercentiles(StrictModel):
    lower: float = Field(0.5, ge=0, lt=100)
    upper: float = Field(99.5, gt=0, le=100)


class PreprocessConfig(StrictModel):
    orientation: str = "RAS"  # axis codes the array is reoriented to
    spacing: tuple[float, float, float] | None = None  # target mm; None keeps native spacing
    intensity: Literal["auto", "ct_window", "mr_percentile", "none"] = "auto"  # auto: by modality
    ct_window: CTWindow = CTWindow()
    mr_percentiles: MRPercentiles = MRPercentiles()
    crop_foreground: bool = False


# --- Pipelines (MONAI imported inside, so importing the config above stays light) ---------
# Output intensities: "ct_window" maps [a_min, a_max] HU linearly to [0, 1] (clipped when
# ct_window.clip); "mr_percentile" maps the [lower, upper] percentiles of the volume to
# [0, 1], clipped; "none" keeps the input values. "auto" is ct_window for CT and
# mr_percentile for every other modality. Foreground (crop_foreground) is HU > -500 for CT
# and > 10 % of the mean intensity otherwise, found before intensity scaling.

FOREGROUND_HU = -500.0
CROP_MARGIN = 2  # voxels kept around the foreground box
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # affines are voxel -> RAS+ (medssl.io.scan)


def intensity_mode(cfg: PreprocessConfig, modality: str) -> str:
    """The intensity mode ``cfg`` resolves to for a scan of ``modality``."""
    if cfg.intensity != "auto":
        return cfg.intensity
    return "ct_window" if modality.upper() == "CT" else "mr_percentile"


def foreground_fn(modality: str) -> Callable[[Any], Any]:
    """``select_fn`` for MONAI's CropForeground, applied to unscaled intensities."""
    if modality.upper() == "CT":
        return lambda x: x > FOREGROUND_HU
    return lambda x: x > 0.1 * x.float().mean()


def _intensity_transform(cfg: PreprocessConfig, modality: str, keys: tuple[str, ...] | None = None):
    """The intensity transform (array form, or dict form when ``keys`` is given), or None."""
    from monai import transforms as mt

    mode = intensity_mode(cfg, modality)
    if mode == "ct_window":
        w = cfg.ct_window
        kw: dict[str, Any] = dict(a_min=w.a_min, a_max=w.a_max, b_min=0.0, b_max=1.0, clip=w.clip)
        return mt.ScaleIntensityRanged(keys, **kw) if keys else mt.ScaleIntensityRange(**kw)
    if mode == "mr_percentile":
        p = cfg.mr_percentiles
        kw = dict(lower=p.lower, upper=p.upper, b_min=0.0, b_max=1.0, clip=True)
        return mt.ScaleIntensityRangePercentilesd(keys, **kw) if keys else mt.ScaleIntensityRangePercentiles(**kw)
    return None


def to_metatensor(array: np.ndarray, affine: np.ndarray) -> MetaTensor:
    """``(X, Y, Z)`` or channel-first ``(C, X, Y, Z)`` array + voxel -> RAS+ affine ->
    MetaTensor ``(C, X, Y, Z)`` float32 carrying the affine, as MONAI's spatial transforms need."""
    import torch
    from monai.data import MetaTensor

    arr = np.asarray(array)
    arr = arr[None] if arr.ndim == 3 else arr
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32)),
                      affine=torch.as_tensor(np.asarray(affine, dtype=np.float64)))


def _spatial(img: MetaTensor, cfg: PreprocessConfig, mode: str) -> MetaTensor:
    from monai import transforms as mt

    img = mt.Orientation(axcodes=cfg.orientation, labels=RAS_LABELS)(img)
    if cfg.spacing is not None:
        img = mt.Spacing(pixdim=cfg.spacing, mode=mode, dtype=np.float32)(img)
    return img


def _out(img: MetaTensor) -> tuple[np.ndarray, np.ndarray]:
    return img.as_tensor().numpy().astype(np.float32, copy=False), img.affine.numpy().astype(np.float64)


def preprocess_scan(scan: Scan, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """``Scan`` -> ``(array (1, X, Y, Z) float32, affine (4, 4) voxel -> RAS+ mm)``:
    reorient to ``cfg.orientation``, resample to ``cfg.spacing`` (bilinear), crop to the
    foreground when asked, then scale intensities ([0, 1] for the CT window, see above)."""
    from monai import transforms as mt

    img = _spatial(to_metatensor(scan.array, scan.affine), cfg, mode="bilinear")
    if cfg.crop_foreground:
        img = mt.CropForeground(select_fn=foreground_fn(scan.modality), margin=CROP_MARGIN,
                                allow_smaller=True)(img)
    scale = _intensity_transform(cfg, scan.modality)
    if scale is not None:
        img = scale(img)
    return _out(img)


def preprocess_label(label: np.ndarray, affine: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Label map ``(X, Y, Z)`` on the scan's grid -> ``(array (1, X, Y, Z) uint8, affine)``
    on the grid ``preprocess_scan`` gives when ``crop_foreground`` is off (nearest
    neighbour; the crop box depends on the image: use ``build_transforms`` for pairs)."""
    arr, aff = _out(_spatial(to_metatensor(label, affine), cfg, mode="nearest"))
    return np.rint(arr).astype(np.uint8), aff


def build_transforms(cfg: PreprocessConfig, keys: tuple[str, ...] = ("image",),
                     label_key: str | None = None, modality: str = "CT") -> Compose:
    """MONAI dict transforms for already-loaded data: each of ``keys`` (images, bilinear)
    and ``label_key`` (nearest) holds a channel-first MetaTensor with its affine (see
    ``to_metatensor``). The foreground crop box comes from ``keys[0]``; ``modality``
    picks the intensity mode when ``cfg.intensity`` is "auto"."""
    from monai import transforms as mt

    keys = tuple(keys)
    all_keys = keys + ((label_key,) if label_key else ())
    modes = ("bilinear",) * len(keys) + (("nearest",) if label_key else ())
    steps = [mt.Orientationd(all_keys, axcodes=cfg.orientation, labels=RAS_LABELS)]
    if cfg.spacing is not None:
        steps.append(mt.Spacingd(all_keys, pixdim=cfg.spacing, mode=modes, dtype=np.float32))
    if cfg.crop_foreground:
        steps.append(mt.CropForegroundd(all_keys, source_key=keys[0], select_fn=foreground_fn(modality),
                                        margin=CROP_MARGIN, allow_smaller=True))
    scale = _intensity_transform(cfg, modality, keys)
    if scale is not None:
        steps.append(scale)
    return mt.Compose(steps)
