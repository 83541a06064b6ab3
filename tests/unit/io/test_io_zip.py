"""Zipped DICOM series: read in memory equal to the folder; hostile archives refused."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from medssl.errors import LimitExceededError, UnsupportedInputError
from medssl.io import ReadLimits, probe, read_scan
from tests.unit.io.test_io_helpers import make_series


def _zip_folder(folder, target, prefix="series/"):
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, prefix + path.name)
    return target


def test_zip_reads_equal_to_folder_without_touching_disk(tmp_path):
    make_series(tmp_path / "s", 5)
    archive = _zip_folder(tmp_path / "s", tmp_path / "s.zip")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    from_zip, from_dir = read_scan(archive), read_scan(tmp_path / "s")
    np.testing.assert_array_equal(from_zip.array, from_dir.array)
    np.testing.assert_array_equal(from_zip.affine, from_dir.affine)
    assert from_zip.meta["format"] == "dicom-zip" and from_zip.case_id == "s"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert probe(archive).images[0].n_files == 5


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm"])
def test_escaping_member_names_are_refused(tmp_path, name):
    make_series(tmp_path / "s", 3)
    archive = _zip_folder(tmp_path / "s", tmp_path / "s.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(UnsupportedInputError, match="outside the archive"):
        read_scan(archive)


def test_symlink_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("link.dcm")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsupportedInputError, match="link"):
        read_scan(tmp_path / "l.zip")


def test_too_many_members(tmp_path):
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(30):
            zf.writestr(f"f{i}.dcm", b"x")
    with pytest.raises(LimitExceededError, match="30 members"):
        read_scan(tmp_path / "many.zip", limits=ReadLimits(max_zip_members=20))


def test_ratio_bomb_and_total_size(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (20 * 1024 * 1024))
    with pytest.raises(LimitExceededError, match="zip bomb"):
        read_scan(tmp_path / "bomb.zip")
    with pytest.raises(LimitExceededError, match="would unpack to"):
        read_scan(tmp_path / "bomb.zip", limits=ReadLimits(max_total_bytes=1024 * 1024))


def test_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(Exception) as info:
        read_scan(tmp_path / "x.zip")
    assert info.value.__class__.__name__ == "NotAScanError"
