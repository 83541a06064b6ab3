"""The in-memory scan every layer above ``io`` works with.

World convention: ``affine`` maps voxel indices (i, j, k) to **RAS+ world millimetres**,
the NIfTI / nibabel / MONAI convention:

    [x, y, z, 1]^T = affine @ [i, j, k, 1]^T,   +x = patient Right, +y = Anterior, +z = Superior

DICOM's LPS+ patient coordinates are converted by negating x and y.

``array`` is indexed ``array[i, j, k]`` in the same order as the affine; it is kept in the
stored orientation (no silent reorientation), use ``medssl.io.to_canonical`` for RAS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder or zip; PHI-free."""

    uid_hash: str  # short salted hash of SeriesInstanceUID
    modality: str
    n_files: int
    description: str  # SeriesDescription: free text, so "" unless read with reveal_phi=True
    kind: str  # "image", "localizer", or the non-image SOP kind skipped ("RTSTRUCT", "SR", ...)
    shape: tuple[int, ...] | None = None
    skipped_reason: str | None = None


@dataclass
class Scan:
    array: np.ndarray  # (X, Y, Z); float32 HU for CT, stored values otherwise
    affine: np.ndarray  # (4, 4) float64, voxel index -> RAS+ mm
    modality: str  # "CT", "MR", ... or "OT" when unknown
    source: str  # PHI-free label of where it came from (relative path or hash)
    case_id: str  # PHI-free id, safe for file names
    meta: dict[str, Any] = field(default_factory=dict)  # PHI-free metadata only
    series: list[SeriesInfo] = field(default_factory=list)  # for DICOM inputs
    phi: dict[str, Any] = field(default_factory=dict, repr=False)  # only filled when asked

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' or 'LPS' (nibabel's aff2axcodes)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))
