"""The files one predicted case leaves in the output folder (all written atomically):

- ``CASE.nii.gz``: label map (uint8) on the scan's original grid and affine
- ``CASE.json``: per-label statistics (``stats.label_stats``) or class probabilities
- ``CASE.png``: orthogonal mid-slices with the overlay
- ``CASE_seg.dcm``: DICOM SEG referencing the source series (DICOM inputs); de-identified
  unless ``keep_patient_identity``; segments coded from the artifact's ``meta.label_codes``
- ``CASE_probabilities.nii.gz``: (X, Y, Z, K) float32 (``--save-probabilities``)
- ``CASE_uncertainty.nii.gz``: (X, Y, Z) float32 flip disagreement in [0, 1] (``--tta``)"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medssl.data.labels import LabelVocabulary
from medssl.inference.dicom_seg import write_dicom_seg
from medssl.inference.outputs import write_json, write_nifti
from medssl.inference.predictor import Prediction, Predictor, Prepared
from medssl.inference.preview import write_preview
from medssl.inference.quality import assess
from medssl.inference.stats import label_stats
from medssl.io.scan import Scan


def write_case_outputs(
    predictor: Predictor,
    scan: Scan,
    prepared: Prepared | None,
    datasets: Sequence | None,
    out: Path,
    *,
    save_probabilities: bool = False,
    preview: bool = True,
    input_sha256: str = "",
    keep_patient_identity: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Predict ``scan`` and write its files. Returns (results.csv columns, file names written);
    the columns hold ``status`` ok | warning with the warning's ``code`` and ``reason``."""
    if prepared is None:
        prepared = predictor.prepare(scan)
    pred = predictor.predict(scan, keep_probabilities=save_probabilities, prepared=prepared)
    cid = scan.case_id
    record = {"case_id": cid, "source": scan.source, "model_sha256": predictor.model_hash, "input_sha256": input_sha256}
    if pred.class_probs is not None:
        return _classification(pred, out, cid, record)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medssl-seg") as pool:
        # The SEG (pure Python, most of a second on a CT) is built beside the NIfTI's gzip and the
        # statistics, which spend their time in zlib and numpy; both are done before the JSON.
        seg = pool.submit(_write_seg, predictor, pred, scan, datasets, out / f"{cid}_seg.dcm", input_sha256,
                          keep_patient_identity) if datasets else None  # fmt: skip
        written = [f"{cid}.nii.gz"]
        write_nifti(out / written[0], pred.label, scan.affine)
        stats = label_stats(pred.label, scan, predictor.labels, pred.confidence)
        if pred.uncertainty is not None:
            stats["mean_uncertainty"] = round(float(pred.uncertainty.mean()), 6)
            written.append(f"{cid}_uncertainty.nii.gz")
            write_nifti(out / written[-1], pred.uncertainty.astype(np.float32), scan.affine)
        if pred.probabilities is not None:
            written.append(f"{cid}_probabilities.nii.gz")
            write_nifti(out / written[-1], np.moveaxis(pred.probabilities, 0, -1).astype(np.float32), scan.affine)
        if preview:
            written.append(f"{cid}.png")
            write_preview(out / written[-1], scan.array, pred.label, scan.affine, scan.modality)
        if seg is not None:
            seg.result()
            written.append(f"{cid}_seg.dcm")
    status, reasons = assess(stats, predictor.artifact.meta.get("training_domain"), scan.modality,
                             prepared.image[0].numpy(), predictor.artifact.modality)
    written.append(f"{cid}.json")
    write_json(out / written[-1], {**record, **stats, "quality": {"status": status, "reasons": reasons}})
    row = {f"volume_ml_{name}": entry["volume_ml"] for name, entry in stats["labels"].items()}
    row.update(status=status, code="out_of_domain" if reasons else "", reason="; ".join(reasons))
    return row, written


def _write_seg(predictor: Predictor, pred: Prediction, scan: Scan, datasets: Sequence, path: Path,
               input_sha256: str, keep_patient_identity: bool) -> None:  # fmt: skip
    vocabulary = LabelVocabulary.from_dict(predictor.artifact.meta.get("label_codes"), "model meta.label_codes")
    write_dicom_seg(path, pred.label, scan.affine, datasets, predictor.labels,
                    uid_seed=f"{input_sha256}:{predictor.model_hash}", vocabulary=vocabulary,
                    model_name=str(predictor.artifact.network.get("name", "medssl")),
                    keep_patient_identity=keep_patient_identity)  # fmt: skip


def _classification(pred: Prediction, out: Path, cid: str, record: dict) -> tuple[dict[str, Any], list[str]]:
    probs = pred.class_probs or {}
    predicted = max(probs, key=probs.get) if probs else ""
    write_json(out / f"{cid}.json", {**record, "predicted": predicted, "class_probabilities": probs})
    row: dict[str, Any] = {"predicted": predicted, **{f"prob_{k}": v for k, v in probs.items()}}
    return row, [f"{cid}.json"]
