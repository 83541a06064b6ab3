"""Manifest: inputs found, failed rows for broken files, re-index skips unchanged inputs."""

from __future__ import annotations

import json
import os

import pytest

from medssl.data.manifest import find_inputs, read_manifest, update_manifest
from medssl.data.phantom_io import synth_cohort
from medssl.errors import CorruptFileError

import medssl.io as io  # noqa: E402  (an import error must fail, not skip)


class CountingProbe:
    def __init__(self):
        self.paths = []

    def __call__(self, path, **kwargs):
        self.paths.append(path)
        return io.probe(path, **kwargs)


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "root"
    synth_cohort(root, 3, fmt="both", seed=1, shape=(12, 12, 6))
    (root / "random.nii.gz").write_bytes(os.urandom(3000))
    (root / "zero").mkdir()
    (root / "zero" / "IM0001.dcm").write_bytes(b"")
    (root / "text.nii").write_text("not a scan\n")
    return root


def test_find_inputs_kinds(tree):
    inputs = {i.rel: i.kind for i in find_inputs(tree)}
    assert inputs["dicom/phantom_000"] == "dicom"
    assert inputs["nifti/phantom_000.nii.gz"] == "nifti"
    assert inputs["zero"] == "dicom"
    assert "." not in inputs  # labels.json / dataset.json do not make the root a DICOM folder
    assert len(inputs) == 3 * 3 + 3


def test_index_cohort_and_broken_files(tree, tmp_path):
    out = tmp_path / "manifest.jsonl"
    result = update_manifest(tree, out)
    rows = read_manifest(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert sorted(r["path"] for r in failed) == ["random.nii.gz", "text.nii", "zero/IM0001.dcm"]
    assert all(r["code"] and r["reason"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 9 and result.counts == {"ok": 9, "failed": 3}
    series = [r for r in ok if r["kind"] == "dicom"]
    assert len(series) == 3 and all(r["modality"] == "CT" and r["shape"] == [12, 12, 6] for r in series)
    assert all(r["series"] for r in series)
    roles = {r["path"]: r["role"] for r in ok}
    assert roles["nifti/phantom_001_label.nii.gz"] == "label" and roles["nifti/phantom_001.nii.gz"] == "image"
    assert len({r["id"] for r in rows}) == len(rows)
    nifti = next(r for r in ok if r["path"] == "nifti/phantom_000.nii.gz")
    assert nifti["spacing"] == pytest.approx(series[0]["spacing"], abs=1e-4)


def test_loose_files_at_the_root_are_not_probed_twice(tree, tmp_path):
    (tree / "IM0001.dcm").write_bytes(b"")  # a loose broken DICOM file makes the root a DICOM input "."
    rows = update_manifest(tree, tmp_path / "manifest.jsonl").rows
    failed = sorted(r["path"] for r in rows if r["status"] == "failed")
    assert failed == ["IM0001.dcm", "random.nii.gz", "text.nii", "zero/IM0001.dcm"]  # one row per broken file


def test_reindex_skips_unchanged_and_picks_up_changes(tree, tmp_path):
    out = tmp_path / "manifest.jsonl"
    update_manifest(tree, out)
    first = read_manifest(out)
    counting = CountingProbe()
    again = update_manifest(tree, out, probe=counting)
    assert counting.paths == [] and again.reused == 12 and again.probed == 0
    assert read_manifest(out) == first

    synth_cohort(tree / "more", 1, fmt="nifti", seed=2, shape=(10, 10, 5))
    (tree / "text.nii").unlink()
    counting = CountingProbe()
    result = update_manifest(tree, out, probe=counting)
    assert sorted(p.relative_to(tree).as_posix() for p in counting.paths) == [
        "more/nifti/phantom_000.nii.gz", "more/nifti/phantom_000_label.nii.gz"]
    assert result.removed == 1
    paths = {r["path"] for r in read_manifest(out)}
    assert "text.nii" not in paths and "more/nifti/phantom_000.nii.gz" in paths

    (tree / "zero" / "IM0001.dcm").write_bytes(b"still not dicom")  # changed size -> re-probed
    counting = CountingProbe()
    update_manifest(tree, out, probe=counting)
    assert [p.name for p in counting.paths] == ["zero"]


def test_folder_with_files_and_subfolders_is_not_counted_twice(tmp_path):
    synth_cohort(tmp_path / "a", 1, fmt="dicom", seed=3, shape=(8, 8, 4))
    series = tmp_path / "a" / "dicom" / "phantom_000"
    nested = series / "nested"
    synth_cohort(tmp_path / "b", 1, fmt="dicom", seed=4, shape=(8, 8, 3))
    os.rename(tmp_path / "b" / "dicom" / "phantom_000", nested)
    rows = update_manifest(tmp_path / "a", tmp_path / "m.jsonl").rows
    dicom = sorted((r["path"], r["shape"][2]) for r in rows if r["kind"] == "dicom")
    assert dicom == [("dicom/phantom_000", 4), ("dicom/phantom_000/nested", 3)]


def test_write_is_atomic_and_corrupt_manifest_is_rebuilt(tree, tmp_path):
    out = tmp_path / "manifest.jsonl"
    out.write_text("{not json\n")
    with pytest.raises(CorruptFileError):
        read_manifest(out)
    update_manifest(tree, out)
    assert len(read_manifest(out)) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert all(json.loads(line)["path"] for line in out.read_text().splitlines())


def test_parallel_index_gives_the_same_rows(tree, tmp_path):
    serial = update_manifest(tree, tmp_path / "a.jsonl").rows
    parallel = update_manifest(tree, tmp_path / "b.jsonl", workers=2).rows
    assert parallel == serial


@pytest.mark.realdata
def test_real_series_indexed_without_phi(real_data, tmp_path):
    from tests.conftest import assert_no_phi

    out = tmp_path / "m.jsonl"
    update_manifest(real_data / "dicom", out)
    rows = read_manifest(out)
    series = [r for r in rows if r["path"] == "head_ct_series"]
    assert len(series) == 1 and series[0]["status"] == "ok" and series[0]["shape"] == [256, 256, 108]
    assert_no_phi(out.read_text(), "manifest")


def test_rows_resolve_when_the_manifest_lies_outside_the_tree(tree, tmp_path):
    from medssl.data.manifest import row_path

    out = tmp_path / "elsewhere" / "deeper" / "manifest.jsonl"
    update_manifest(tree, out)
    rows = read_manifest(out)
    assert rows and all(row_path(out, r).exists() for r in rows)


def test_rows_record_salt_id_and_first_file_and_reindex_on_another_salt(tree, tmp_path, monkeypatch, caplog):
    from medssl.data.manifest import row_path
    from medssl.io.phi import salt_id

    monkeypatch.setenv("MEDSSL_UID_SALT", "salt-one")
    out = tmp_path / "m.jsonl"
    update_manifest(tree, out)
    series = [r for r in read_manifest(out) if r["series"]]
    assert len(series) == 3 and {r["salt_id"] for r in series} == {salt_id()}
    assert "salt-one" not in out.read_text()
    for row in series:
        first = sorted(p.name for p in row_path(out, row).iterdir())[0]
        assert row["series_files"] == f"{row['path']}/{first}"
        assert (row_path(out, {**row, "path": row["series_files"]})).is_file()
    monkeypatch.setenv("MEDSSL_UID_SALT", "salt-two")
    read_manifest(out)
    assert "another MEDSSL_UID_SALT" in caplog.text
    counting = CountingProbe()
    update_manifest(tree, out, probe=counting)  # stale hashes: those inputs are probed again
    assert sorted(p.name for p in counting.paths) == ["phantom_000", "phantom_001", "phantom_002"]
    assert {r["salt_id"] for r in read_manifest(out) if r["series"]} == {salt_id()}


def test_unexpected_probe_error_is_one_failed_row_without_its_message(tree, tmp_path):
    def probe(path, **kwargs):
        if path.name == "phantom_001.nii.gz":
            raise ValueError("SENTINEL")
        return io.probe(path, **kwargs)

    out = tmp_path / "m.jsonl"
    result = update_manifest(tree, out, probe=probe)
    bad = [r for r in result.rows if r["path"] == "nifti/phantom_001.nii.gz"]
    assert len(bad) == 1 and bad[0]["status"] == "failed" and bad[0]["code"] == "internal"
    assert "ValueError" in bad[0]["reason"] and "SENTINEL" not in out.read_text()
    assert result.counts == {"ok": 8, "failed": 4}


def _patient_named_tree(head_ct_series, tmp_path):
    import shutil

    root = tmp_path / "SENTINEL_PHI_DONOTLEAK_export"  # the indexed root itself named after the patient
    shutil.copytree(head_ct_series, root / "SENTINEL_PHI_DONOTLEAK" / "head_ct")
    return root


def test_patient_named_folders_are_masked_and_their_real_paths_kept_aside(head_ct_series, tmp_path):
    from medssl.data.manifest import private_paths_file, row_path
    from tests.conftest import assert_no_phi

    root = _patient_named_tree(head_ct_series, tmp_path)
    out = tmp_path / "m.jsonl"
    update_manifest(root, out)
    public = [json.loads(line) for line in out.read_text().splitlines()]
    assert_no_phi(out.read_text(), "manifest")
    assert public[0]["private"] is True and public[0]["path"].startswith("case-")
    side = private_paths_file(out)
    assert side.is_file() and (side.stat().st_mode & 0o077) == 0  # owner-only
    rows = read_manifest(out)  # real paths back, for the feed
    assert row_path(out, rows[0]).is_dir() and rows[0]["path"] == "SENTINEL_PHI_DONOTLEAK/head_ct"
    assert "private" not in rows[0]
    result = update_manifest(root, out)  # unchanged: reused, still masked
    assert result.reused == 1 and result.probed == 0
    assert_no_phi(out.read_text(), "re-indexed manifest")
    side.unlink()
    from medssl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"m.jsonl.private.json"):
        read_manifest(out)


def test_pseudonymize_masks_every_name_and_a_plain_tree_needs_no_private_file(tree, tmp_path):
    from medssl.data.manifest import private_paths_file, row_path

    plain = tmp_path / "plain.jsonl"
    update_manifest(tree, plain)
    assert not private_paths_file(plain).exists()
    assert not any(json.loads(line).get("private") for line in plain.read_text().splitlines())
    out = tmp_path / "p.jsonl"
    update_manifest(tree, out, pseudonymize=True)
    public = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(part.startswith("case-") for r in public for part in r["path"].split("/"))
    rows = read_manifest(out)
    assert all(row_path(out, r).exists() for r in rows if r["status"] == "ok")
    assert update_manifest(tree, plain).reused > 0
    again = update_manifest(tree, out)  # plain now: the pseudonymized rows are not reused
    assert again.reused == 0 and again.probed > 0
    assert not private_paths_file(out).exists()
