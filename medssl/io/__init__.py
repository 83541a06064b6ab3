"""Reading scans correctly and safely: DICOM series (folder, zip), NIfTI; PHI-free metadata.

World convention: ``Scan.affine`` maps voxel (i, j, k) to RAS+ millimetres (see
``medssl.io.scan``)."""

from medssl.io.dicom_reader import dicom_tags, read_dicom_datasets
from medssl.io.limits import DEFAULT_LIMITS, ReadLimits
from medssl.io.nifti import write_nifti, write_scan
from medssl.io.phi import uid_hash
from medssl.io.probe import ProbeResult, SeriesHeader, probe
from medssl.io.reader import case_id_for, read_scan, read_scan_and_datasets, to_canonical
from medssl.io.scan import Scan, SeriesInfo

__all__ = [
    "DEFAULT_LIMITS", "ProbeResult", "ReadLimits", "Scan", "SeriesHeader", "SeriesInfo", "case_id_for",
    "dicom_tags", "probe", "read_dicom_datasets", "read_scan", "read_scan_and_datasets", "to_canonical", "uid_hash",
    "write_nifti", "write_scan",
]  # fmt: skip
