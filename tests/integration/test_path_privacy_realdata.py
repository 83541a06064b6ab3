"""The real head CT series in folders, files and zip members named after its own patient
(PACS exports do that): no output, file name, results.csv, CASE.json, DICOM SEG, case
record, cache index, inspect output, log line or error carries the planted sentinel."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import zipfile
from pathlib import Path

import pytest

from medssl.cli import main
from medssl.data.cache import VolumeCache
from medssl.data.preprocess import PreprocessConfig
from tests.conftest import SENTINEL_TEXTS, assert_no_phi
from tests.unit.inference.test_inference_fixtures import threshold_artifact

pytestmark = [pytest.mark.integration, pytest.mark.realdata]
NAMED = "SENTINEL_DONOTLEAK_patient"
BY_ID = "PHI-SENTINEL-0001"


@pytest.fixture(scope="module")
def studies(head_ct_series, tmp_path_factory) -> Path:
    """studies/SENTINEL_DONOTLEAK_patient/ (the series), studies/PHI-SENTINEL-0001/ (the series
    with one slice truncated and renamed after the patient), studies/PHI-SENTINEL-0001.zip
    (members under SENTINEL_DONOTLEAK/)."""
    root = tmp_path_factory.mktemp("pacs") / "studies"
    shutil.copytree(head_ct_series, root / NAMED)
    broken = root / BY_ID
    shutil.copytree(head_ct_series, broken)
    slice_ = broken / "IM0050.dcm"
    data = slice_.read_bytes()
    slice_.unlink()
    (broken / "SENTINEL_IM0050.dcm").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(root / f"{BY_ID}.zip", "w") as zf:
        for f in sorted(head_ct_series.iterdir()):
            zf.write(f, f"SENTINEL_DONOTLEAK/{f.name}")
    return root


def _logged(argv: list[str]) -> tuple[int, str]:
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    medssl_log = logging.getLogger("medssl")
    old_level = medssl_log.level
    medssl_log.setLevel(logging.DEBUG)  # every medssl log line is checked
    logging.getLogger().addHandler(handler)
    try:
        code = main(argv)
    finally:
        logging.getLogger().removeHandler(handler)
        medssl_log.setLevel(old_level)
    return code, "\n".join(records)


def _assert_clean_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        assert_no_phi(path.relative_to(folder).as_posix(), "output file name")
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            for text in SENTINEL_TEXTS:
                assert text.encode().lower() not in data.lower(), f"sentinel in {path.name}"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return threshold_artifact(tmp_path_factory.mktemp("model") / "model.pt", hu_threshold=300.0,
                              labels={"0": "background", "1": "bone"}, roi=(32, 32, 32),
                              preprocessing={"orientation": "RAS", "spacing": [4.0, 4.0, 4.0]})  # fmt: skip


def test_predict_outputs_logs_and_errors_hold_no_patient_name(studies, model, tmp_path, capsys):
    out = tmp_path / "out"
    code, log_text = _logged(["predict", "--model", str(model), "--input", str(studies), "--output", str(out),
                              "--no-progress", "--workers", "0"])  # fmt: skip
    assert code == 6  # the truncated slice fails, the other two are read
    rows = [json.loads(p.read_text())["row"] for p in (out / ".medssl" / "cases").glob("*.json")]
    assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok"]
    assert all(r["case_id"].startswith("case-") and r["source"].startswith("studies/case-") for r in rows)
    assert len(list(out.glob("case-*_seg.dcm"))) == 2 and "truncated" in log_text
    _assert_clean_tree(out)
    assert_no_phi(log_text, "log")
    captured = capsys.readouterr()
    assert_no_phi(captured.out + captured.err, "console")


def test_pseudonymize_hashes_every_case_id_and_is_stable(studies, model, tmp_path, capsys):
    plain = tmp_path / "in" / "head_ct_series"
    shutil.copytree(studies / NAMED, plain)
    out = tmp_path / "out"
    argv = ["predict", "--model", str(model), "--input", str(plain), "--output", str(out), "--no-progress",
            "--pseudonymize", "--no-preview"]  # fmt: skip
    code, log_text = _logged(argv)
    assert code == 0 and "head_ct_series" not in log_text
    (json_file,) = out.glob("case-*.json")
    assert json.loads(json_file.read_text())["source"].startswith("case-")
    assert "head_ct_series" not in (out / "results.csv").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main([*argv, "--continue"]) == 0  # the same ids on a re-run: nothing redone
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("name", [NAMED, BY_ID, f"{BY_ID}.zip"])
def test_inspect_masks_source_case_id_and_errors(studies, name, capsys):
    code, log_text = _logged(["inspect", "--json", str(studies / name)])
    captured = capsys.readouterr()
    text = captured.out + captured.err + log_text
    assert_no_phi(text, "inspect output")
    if name == BY_ID:  # the truncated slice: a one-line typed error, the file's name masked
        assert code == 3 and "error [corrupt]" in captured.err and "case-" in captured.err
    else:
        info = json.loads(captured.out)
        assert code == 0 and info["source"].startswith("case-") and info["case_id"].startswith("case-")
    assert main(["inspect", "--show-phi", str(studies / NAMED)]) == 0  # asked for: shown
    assert "SENTINEL^PHI^DONOTLEAK" in capsys.readouterr().out


def test_pretraining_cache_index_masks_patient_names(studies, tmp_path):
    cache = VolumeCache(tmp_path / "cache")
    meta = cache.get_meta(studies / NAMED, PreprocessConfig(spacing=(4.0, 4.0, 4.0)))
    assert meta["case_id"].startswith("case-") and meta["source"].startswith("case-")
    _assert_clean_tree(tmp_path / "cache")


def test_error_naming_a_zip_member_after_the_patient_is_masked(studies, head_ct_series, model, tmp_path, capsys):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(head_ct_series.iterdir())[:3]:
            zf.write(f, f"SENTINEL_DONOTLEAK/{f.name}")
        link = zipfile.ZipInfo("SENTINEL_DONOTLEAK/link.dcm")
        link.external_attr = 0o120777 << 16  # a symlink member: the archive is refused, naming it
        zf.writestr(link, "/etc/passwd")
    code, log_text = _logged(["inspect", str(archive)])
    err = capsys.readouterr().err
    assert code == 3 and "is a link" in err and "case-" in err
    assert_no_phi(err + log_text, "inspect error")
    out = tmp_path / "out"
    code, log_text = _logged(["predict", "--model", str(model), "--input", str(archive), "--output", str(out),
                              "--no-progress"])  # fmt: skip
    assert code == 7
    assert "is a link" in (out / "results.csv").read_text()
    _assert_clean_tree(out)
    captured = capsys.readouterr()
    assert_no_phi(log_text + captured.out + captured.err, "predict log")
