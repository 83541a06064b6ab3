"""Reading and indexing scans, medssl against what users would otherwise run.

    python benchmarks/bench_io.py            # the real 108-slice CT series, a real CT NIfTI, 20 series to index
    python benchmarks/bench_io.py --quick    # seconds: 2 series to index, 3 repeats

Figures (CPU seconds of this process, all its threads, medians of interleaved repeats):
  dicom_read_vs_sitk      medssl ``read_scan`` of the real series against SimpleITK's
                          ``ImageSeriesReader``; equal: same voxels and the same voxel -> RAS
                          affine (to 1e-4 mm)
  dicom_read_vs_pydicom   against a plain pydicom + numpy loop (dcmread every file, sort by
                          position along the slice normal, rescale); equal: same voxels
  nifti_read_vs_nibabel   ``read_scan`` of ct/lung1.nii.gz against ``nibabel.load`` +
                          ``get_fdata(dtype=float32)``; equal: same voxels and affine
  index_cold / index_warm ``medssl data index`` (a fresh process; cold: no manifest, warm:
                          re-run over its own manifest) against a fresh process looping
                          ``pydicom.dcmread(stop_before_pixels=True)`` over the same files and
                          reading what the manifest reports (modality, rows, columns, spacing,
                          orientation, positions) (whole-process CPU, children's rusage);
                          equal: the same series count and slices per series
The real series carries a planted patient-name sentinel: nothing here prints a tag value."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from racing import REPO, add_common_args, cpu_clock, emit_race, race, real_data_dir  # noqa: E402
from tests.sitk_reference import sitk_read_ras as sitk_read  # noqa: E402

# What a user would write to list the series of a tree with what the manifest holds (modality,
# shape, spacing): a header read of every file, the geometry elements decoded, nothing printed
# but counts.
HEADER_LOOP = """
import sys, pathlib, pydicom
rows = {}
for p in sorted(pathlib.Path(sys.argv[1]).rglob("*")):
    if p.is_file():
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        key = (str(p.parent), ds.SeriesInstanceUID)
        geometry = (ds.Modality, ds.Rows, ds.Columns, tuple(ds.PixelSpacing), tuple(ds.ImageOrientationPatient),
                    tuple(ds.ImagePositionPatient), ds.get("SliceThickness"), ds.get("InstanceNumber"))
        rows.setdefault(key, []).append(geometry)
print(len(rows), sorted(len(v) for v in rows.values()))
"""


def pydicom_read(folder: Path) -> np.ndarray:
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))))
    vol = np.stack([ds.pixel_array.T for ds in datasets], axis=-1).astype(np.float32)  # (cols, rows, slices)
    slope, intercept = float(datasets[0].get("RescaleSlope", 1)), float(datasets[0].get("RescaleIntercept", 0))
    return vol * np.float32(slope) + np.float32(intercept)


def nibabel_read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(path)
    return img.get_fdata(dtype=np.float32), img.affine


def reading(args: argparse.Namespace, repeats: int) -> None:
    from medssl.io.reader import read_scan

    real = real_data_dir()
    series = real / "dicom" / "head_ct_series"
    ours, theirs = read_scan(series), sitk_read(series)
    equal = bool(np.array_equal(ours.array, theirs[0]) and np.allclose(ours.affine, theirs[1], atol=1e-4))
    a, b = race(lambda: read_scan(series), lambda: sitk_read(series), repeats, clock=time.process_time)
    emit_race("dicom_read_vs_sitk", a, b, "cpu s", equal=equal, files=108, shape=list(ours.shape))
    equal = bool(np.array_equal(ours.array, pydicom_read(series)))
    a, b = race(lambda: read_scan(series), lambda: pydicom_read(series), repeats, clock=time.process_time)
    emit_race("dicom_read_vs_pydicom", a, b, "cpu s", equal=equal, files=108)
    nii = real / "ct" / "lung1.nii.gz"
    ours, theirs = read_scan(nii), nibabel_read(nii)
    equal = bool(np.array_equal(ours.array, theirs[0]) and np.allclose(ours.affine, theirs[1], atol=1e-6))
    a, b = race(lambda: read_scan(nii), lambda: nibabel_read(nii), repeats, clock=time.process_time)
    emit_race("nifti_read_vs_nibabel", a, b, "cpu s", equal=equal, shape=list(ours.shape))


def index_tree(root: Path, copies: int) -> int:
    """``copies`` folders of the real series, hard-linked (a copy where links fail)."""
    src = sorted((real_data_dir() / "dicom" / "head_ct_series").iterdir())
    for i in range(copies):
        dst = root / f"series_{i:03d}"
        dst.mkdir(parents=True)
        for f in src:
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copyfile(f, dst / f.name)
    return copies * len(src)


def _child_cpu(cmd: list[str]) -> float:
    start = cpu_clock()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return cpu_clock() - start


def indexing(args: argparse.Namespace, repeats: int) -> None:
    import json

    with tempfile.TemporaryDirectory(prefix="medssl-bench-index-") as tmp:
        root, manifest = Path(tmp) / "tree", Path(tmp) / "manifest.jsonl"
        files = index_tree(root, 2 if args.quick else 20)
        medssl = [sys.executable, "-m", "medssl", "data", "index", str(root), "--out", str(manifest)]
        loop = [sys.executable, "-c", HEADER_LOOP, str(root)]
        subprocess.run(medssl, check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        ours = (len(rows), sorted(int(r["shape"][2]) for r in rows if r.get("status") == "ok"))
        out = subprocess.run(loop, check=True, capture_output=True, text=True).stdout.split(" ", 1)
        equal = ours[0] == int(out[0]) and str(ours[1]) == out[1].strip()

        def cold() -> None:
            manifest.unlink(missing_ok=True)
            _child_cpu(medssl)

        a, b = race(cold, lambda: _child_cpu(loop), repeats, clock=cpu_clock)
        emit_race("index_cold", a, b, "cpu s", equal=equal, files=files, series=ours[0])
        a, b = race(lambda: _child_cpu(medssl), lambda: _child_cpu(loop), repeats, clock=cpu_clock)
        emit_race("index_warm", a, b, "cpu s", equal=equal, files=files, series=ours[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    p.add_argument("--only", choices=("read", "index"), default=None)
    args = p.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    if args.only in (None, "read"):
        reading(args, repeats)
    if args.only in (None, "index"):
        indexing(args, max(2, repeats - 2) if args.quick else 5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
