"""What a file name says about a scan, decided once for every walker (manifest, inference
inputs, the pretraining feed, datalists, the viewer): NIfTI or not, label map or image,
maybe DICOM, and the case stem."""

from __future__ import annotations

from pathlib import Path

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# A NIfTI whose stem ends with one of these is a label map (MSD/phantom ``_label``, ``_seg``, ...).
LABEL_SUFFIXES = ("_label", "_labels", "_seg", "_mask")


def _name(path: str | Path) -> str:
    return Path(path).name if isinstance(path, Path) else str(path).rsplit("/", 1)[-1]


def is_nifti(path: str | Path) -> bool:
    return _name(path).lower().endswith(NIFTI_SUFFIXES)


def case_stem(path: str | Path) -> str:
    """The name without ``.nii.gz`` / ``.nii`` / ``.zip`` (other names as they are)."""
    name = _name(path)
    for ext in (*NIFTI_SUFFIXES, ".zip"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def has_label_suffix(path: str | Path) -> bool:
    """The name, without extension, ends like a label's (``_label``, ``_seg``, ...)."""
    return case_stem(path).lower().endswith(LABEL_SUFFIXES)


def is_label(path: str | Path) -> bool:
    """A NIfTI label map by its name (``case_label.nii.gz``, ``case_seg.nii``, ...)."""
    return is_nifti(path) and has_label_suffix(path)


def looks_dicom(path: Path) -> bool:
    """A DICOM extension, or the ``DICM`` magic at byte 128 (reads 132 bytes at most)."""
    return path.suffix.lower() in DICOM_SUFFIXES or has_dicm_preamble(path)


def has_dicm_preamble(path: Path) -> bool:
    """The Part 10 ``DICM`` magic at byte 128 (reads 132 bytes); False when unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False
