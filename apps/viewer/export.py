"""Downloads: label map NIfTI, DICOM SEG (DICOM input), statistics CSV/JSON. Files are built
in a private temporary folder and handed to the browser as bytes; names carry the PHI-free
case id only."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from medssl.io.scan import Scan

from .loaded import Loaded, app_temp_root


def label_nifti(loaded: Loaded) -> bytes:
    """The overlay's label map on the scan's own grid, as .nii.gz bytes (medssl.io writer)."""
    from medssl.io import write_scan

    assert loaded.overlay is not None
    scan = loaded.scan
    label = Scan(array=loaded.overlay.native, affine=scan.affine, modality="SEG", source=scan.source, case_id=scan.case_id)
    with tempfile.TemporaryDirectory(prefix="medssl-viewer-", dir=app_temp_root()) as tmp:
        out = Path(tmp) / "label.nii.gz"
        write_scan(label, out)
        return out.read_bytes()


def dicom_seg(loaded: Loaded) -> bytes:
    """DICOM SEG referencing the open DICOM series (engineer E's writer, highdicom); its
    patient and study identifiers are replaced by the case id there."""
    import numpy as np

    from medssl.inference.dicom_seg import write_dicom_seg
    from medssl.io import read_dicom_datasets

    overlay = loaded.overlay
    assert overlay is not None and (loaded.path is not None or loaded.upload is not None)
    present = [int(v) for v in np.unique(overlay.native) if v != 0]
    labels = {"0": "background", **{str(v): overlay.names.get(v, f"label {v}") for v in present}}
    seed = hashlib.sha256(overlay.native.tobytes()).hexdigest()[:24]
    with tempfile.TemporaryDirectory(prefix="medssl-viewer-", dir=app_temp_root()) as tmp:
        source = loaded.path
        if source is None and loaded.upload is not None:
            source = Path(tmp) / f"upload{loaded.upload[0]}"
            source.write_bytes(loaded.upload[1])
        datasets = read_dicom_datasets(source, loaded.series_uid)
        out = Path(tmp) / "seg.dcm"
        write_dicom_seg(out, overlay.native, loaded.scan.affine, datasets, labels, loaded.case_id or "case",
                        uid_seed=seed, model_name=f"medssl viewer ({overlay.origin})")  # fmt: skip
        return out.read_bytes()


def stats_csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    fields = ["label", "name", "voxels", "volume_ml", "mean_intensity", "mean_confidence", "low_confidence"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def stats_json(rows: list[dict[str, Any]], loaded: Loaded) -> bytes:
    overlay = loaded.overlay
    doc = {
        "case_id": loaded.case_id,
        "spacing_mm": list(loaded.scan.spacing),
        "shape": list(loaded.scan.shape),
        "source": overlay.origin if overlay else None,
        "labels": rows,
        "class_probs": overlay.class_probs if overlay else None,
    }
    return json.dumps(doc, indent=2).encode()
