"""Hostile folder trees and export layouts, on the real series: folders nested 1,000 levels
deep, a link back up the tree, a PACS CD with its junk beside the patient's folder, a damaged
slice in a series whose files have no extension, a NIfTI whose header extensions would
inflate past the read budget or whose units are metres, and an unwritable `convert` output.
Each is a typed error naming the file (never the patient) or a correct read."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.errors import CorruptFileError, LimitExceededError
from medssl.inference.inputs import collect_inputs, input_hash
from medssl.io import ReadLimits, read_scan
from medssl.io.path_privacy import read_patient_tokens
from medssl.io.sources import walk_tree
from tests.conftest import REPO, assert_no_phi

pytestmark = pytest.mark.realdata
PATIENT_FOLDER = "SENTINEL_DONOTLEAK_patient"
CLI = (sys.executable, "-c", "import sys; from medssl.cli import main; sys.exit(main(sys.argv[1:]))")


def _copy_series(head_ct_series: Path, target: Path, n: int = 8, suffix: str = ".dcm") -> list[Path]:
    """The first ``n`` slices (contiguous in position: the files are named in shuffled order)."""
    target.mkdir(parents=True)
    import pydicom

    def height(p: Path) -> float:
        return float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])

    files = sorted(head_ct_series.glob("*.dcm"), key=height)
    out = []
    for i, p in enumerate(files[:n]):
        out.append(target / f"IM{i:04d}{suffix}")
        shutil.copy(p, out[-1])
    return out


def _deep(root: Path, levels: int) -> Path:
    """``root/d/d/.../d`` without os.makedirs' own recursion or PATH_MAX: built from inside."""
    cwd = os.getcwd()
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    try:
        for _ in range(levels):
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(cwd)
    return root


def _remove_deep(root: Path) -> None:
    """Bottom-up, from inside (shutil.rmtree, and pytest's clean-up with it, recurse)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        depth = 0
        while os.path.isdir("d"):
            os.chdir("d")
            depth += 1
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(cwd)


@pytest.fixture
def deep_tree(tmp_path):
    root = _deep(tmp_path / "deep", 1000)
    yield root
    _remove_deep(root)


def test_thousand_levels_deep_is_a_limit_not_a_recursion_error(deep_tree):
    with pytest.raises(LimitExceededError, match="nested more than 64 levels"):
        read_scan(deep_tree)
    assert read_patient_tokens(deep_tree) == frozenset()  # never raises
    with pytest.raises(LimitExceededError):
        collect_inputs([deep_tree])
    assert len(list(walk_tree(deep_tree, 2000))) == 1001  # iterative: no recursion limit either


def test_a_link_back_up_the_tree_is_walked_once(head_ct_series, tmp_path):
    series = tmp_path / "series"
    _copy_series(head_ct_series, series)
    (series / "loop").symlink_to(".")
    (series / "up").symlink_to("..")
    scan = read_scan(series)
    assert scan.shape[2] == 8
    folders = [f for f, _, _ in walk_tree(series, 64)]
    assert folders == [series, series / "up"]  # "loop" is the series again; "up" once, then nothing new
    case = collect_inputs([series])[0]
    assert len(input_hash(case)) == 64


def test_pacs_cd_layout_masks_the_patient_folder(head_ct_series, tmp_path):
    """A CD export: AUTORUN.INF, DICOMDIR, a viewer's DLLs and a LOCKFILE beside the patient's
    folder, the images below it. The patient's tokens are found past the junk."""
    patient = tmp_path / "cd" / PATIENT_FOLDER
    patient.mkdir(parents=True)
    for name in ("AUTORUN.INF", "DICOMDIR", "LOCKFILE", "VERSION", "setup.exe", "viewer.dll", "msvcr.dll",
                 "qt.dll", "zlib.dll"):  # fmt: skip
        (patient / name).write_bytes(os.urandom(2000))
    _copy_series(head_ct_series, patient / "IMAGES", suffix="")
    assert read_patient_tokens(patient)
    for case in collect_inputs([tmp_path / "cd"]):
        assert_no_phi(case.case_id + case.source, "case id / source")
    scan = read_scan(patient)  # the junk is skipped (a warning), the slices read
    assert scan.shape[2] == 8


@pytest.mark.parametrize("damage", ["random", "no_preamble"])
def test_damaged_slice_without_extension_is_an_error(head_ct_series, tmp_path, damage):
    files = _copy_series(head_ct_series, tmp_path / "series", suffix="")
    (tmp_path / "series" / "LOCKFILE").write_bytes(b"lock" * 100)  # stray: still skipped
    top = files[-1]
    data = top.read_bytes()
    top.write_bytes(os.urandom(len(data)) if damage == "random" else b"\0" * 132 + data[132:])
    with pytest.raises(CorruptFileError, match="1 file\\(s\\) here cannot be read") as info:
        read_scan(tmp_path / "series")
    assert top.name in str(info.value)
    assert read_scan(tmp_path / "series", limits=ReadLimits(skip_corrupt_slices=True)).shape[2] == 7


def _nifti_bytes(real_data: Path, **fields) -> bytearray:
    raw = bytearray(gzip.open(real_data / "mr" / "brain1.nii.gz").read())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    for key, value in fields.items():
        hdr.structarr[key] = value
    raw[:348] = hdr.binaryblock
    return raw


def test_header_extensions_count_against_the_read_budget(real_data, tmp_path):
    raw = _nifti_bytes(real_data)
    offset = int(np.frombuffer(bytes(raw[108:112]), "<f4")[0])
    ext = 64 << 20  # one 64 MiB extension before the voxels
    head = raw[:348] + b"\1\0\0\0" + (ext + 8).to_bytes(4, "little") + (0).to_bytes(4, "little")
    bomb = bytearray(head) + bytes(ext) + raw[offset:]
    bomb[108:112] = np.float32(len(head) + ext).tobytes()
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(bytes(bomb), 1))
    with pytest.raises(LimitExceededError, match="header and its extensions"):
        read_scan(path, limits=ReadLimits(max_bytes=32 << 20))
    assert read_scan(path).shape == read_scan(real_data / "mr" / "brain1.nii.gz").shape


@pytest.mark.parametrize("code, factor", [(1, 1000.0), (3, 0.001), (0, 1.0)])
def test_spatial_units_other_than_mm_are_converted(real_data, tmp_path, code, factor):
    reference = read_scan(real_data / "mr" / "brain1.nii.gz")
    raw = _nifti_bytes(real_data, xyzt_units=code | 8)  # 8: seconds
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    scale = 1.0 / factor  # the same anatomy written in that unit
    for key in ("pixdim",):
        hdr.structarr[key][1:4] *= scale
    for key in ("srow_x", "srow_y", "srow_z"):
        hdr.structarr[key] *= scale
    for key in ("qoffset_x", "qoffset_y", "qoffset_z"):
        hdr.structarr[key] *= scale
    raw[:348] = hdr.binaryblock
    path = tmp_path / "units.nii"
    path.write_bytes(bytes(raw))
    scan = read_scan(path)
    assert np.allclose(scan.affine, reference.affine, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("target", ["folder.nii.gz", "file/x.nii.gz"])
def test_convert_to_an_unwritable_output_is_one_line_exit_4(head_ct_series, tmp_path, target):
    _copy_series(head_ct_series, tmp_path / PATIENT_FOLDER)
    (tmp_path / "folder.nii.gz").mkdir()
    (tmp_path / "file").write_text("a file where a folder should be")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*CLI, "convert", str(tmp_path / PATIENT_FOLDER),
                           str(tmp_path / target)], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 4 and len(lines) == 1 and "[bad_output]" in lines[0], proc.stderr
    assert_no_phi(proc.stderr, "convert error")


def test_predict_reads_a_manifest_with_patient_named_rows(head_ct_series, tmp_path):
    """`data index` keeps such rows' real paths in NAME.private.json; predict reads them back."""
    root = tmp_path / "root"
    _copy_series(head_ct_series, root / PATIENT_FOLDER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    manifest = tmp_path / "manifest.jsonl"
    subprocess.run([*CLI, "data", "index", str(root), "--out", str(manifest)],
                   check=True, capture_output=True, env=env, timeout=120)  # fmt: skip
    assert_no_phi(manifest.read_text(), "manifest")
    cases = [c for c in collect_inputs([manifest]) if c.kind == "dicom"]
    assert len(cases) == 1 and cases[0].path.is_dir()
    assert_no_phi(json.dumps([cases[0].case_id, cases[0].source]), "case from the manifest")
