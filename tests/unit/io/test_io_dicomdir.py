"""A PACS CD of the real head CT series (DICOMDIR + PT*/ST*/SE*/IM* files, written by pydicom's
FileSet): a lost end slice, which the files alone cannot show, is found through the DICOMDIR;
a DICOMDIR that cannot be read never stops a read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from medssl.errors import GeometryError
from medssl.io import read_scan
from tests.conftest import assert_no_phi


@pytest.fixture(scope="module")
def cd(tmp_path_factory, real_data) -> Path:
    root = tmp_path_factory.mktemp("cd") / "CD"
    fileset = FileSet()
    for f in sorted((real_data / "dicom" / "head_ct_series").iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyTime, ds.StudyID = "120000", "1"  # a STUDY record needs them; the sample lacks them
        fileset.add(ds)
    fileset.write(root)
    return root


def _copy(cd: Path, tmp_path: Path) -> Path:
    out = tmp_path / "CD"
    shutil.copytree(cd, out)
    return out


def _file_of(root: Path, instance_number: int) -> Path:
    images = [p for p in root.rglob("*") if p.is_file() and p.name.upper().startswith("IM")]
    return next(p for p in images if int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) == instance_number)


def test_a_complete_cd_reads_all_slices(cd):
    assert read_scan(cd).shape == (256, 256, 108)


@pytest.mark.parametrize("instance", [108, 54])
def test_a_lost_slice_listed_in_the_dicomdir_is_an_error(cd, tmp_path, instance):
    root = _copy(cd, tmp_path)
    _file_of(root, instance).unlink()  # 108: the top slice, InstanceNumbers 1..107 stay contiguous
    with pytest.raises(GeometryError, match=r"missing slices: the DICOMDIR lists 108 images of this series and "
                                            r"the files of 1 are not here"):  # fmt: skip
        read_scan(root)


def test_an_unreadable_dicomdir_is_not_used(cd, tmp_path):
    root = _copy(cd, tmp_path)
    data = (root / "DICOMDIR").read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 100):
        (root / "DICOMDIR").write_bytes(data[:cut])
        assert read_scan(root).shape == (256, 256, 108), cut
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    assert read_scan(root).shape == (256, 256, 108)


def test_a_dicomdir_of_another_series_changes_nothing(cd, tmp_path):
    root = _copy(cd, tmp_path)
    uid = pydicom.uid.generate_uid()
    for f in root.rglob("IM*"):  # the files now hold another series than the one the DICOMDIR lists
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.save_as(f)
    _file_of(root, 108).unlink()
    assert read_scan(root).shape == (256, 256, 107)  # no witness for this series, as without a DICOMDIR


def test_the_cli_says_one_line_without_the_patient(cd, tmp_path):
    root = _copy(cd, tmp_path)
    _file_of(root, 108).unlink()
    out = subprocess.run([sys.executable, "-m", "medssl", "inspect", str(root)], capture_output=True, text=True)
    assert out.returncode == 3
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1 and "[geometry]" in lines[0] and "missing slices" in lines[0], lines
    assert_no_phi(out.stdout + out.stderr, "the error line")


def test_a_lowercased_copy_of_the_cd_is_checked_too(cd, tmp_path):
    """CD copies made on some systems lower-case every name the DICOMDIR gives in capitals."""
    root = tmp_path / "cd"
    for src in sorted(cd.rglob("*")):
        dst = root / src.relative_to(cd).as_posix().lower()
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    assert read_scan(root).shape == (256, 256, 108)
    _file_of(root, 1).unlink()
    with pytest.raises(GeometryError, match="missing slices"):
        read_scan(root)
