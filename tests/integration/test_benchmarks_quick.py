"""Each race against the reference runs in its --quick form and prints figures of the agreed
shape. No timing is asserted: speed is measured by `make bench`, never in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_no_phi

REPO = Path(__file__).resolve().parents[2]
KEYS = {"figure", "medssl", "reference", "ratio", "spread", "equal", "unit", "repeats"}

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _needs(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"{path} not found")


def _run(script: str, real: Path | None = None) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **({"MEDSSL_REAL_DATA": str(real)} if real else {})}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows
    for row in rows:
        assert KEYS <= set(row), row
        assert row["repeats"] >= 1 and len(row["spread"]) == 2 and row["equal"] in (True, False, None)
        assert row["medssl"] > 0 and row["reference"] > 0
    assert_no_phi(proc.stdout + proc.stderr, script)
    return rows


@pytest.mark.realdata
def test_io_quick(real_data):
    rows = _run("bench_io.py", real_data)
    assert {r["figure"] for r in rows} == {"dicom_read_vs_sitk", "dicom_read_vs_pydicom", "nifti_read_vs_nibabel",
                                           "index_cold", "index_warm"}
    assert all(r["equal"] for r in rows), rows


def test_predict_quick():
    (row,) = _run("bench_predict.py")
    assert row["figure"] == "predict_end_to_end" and row["equal"], row


def test_feed_quick():
    rows = _run("bench_feed.py")
    assert {r["figure"] for r in rows} >= {"feed_cold_vs_cachedataset", "feed_cold_vs_persistent",
                                           "feed_warm_vs_cachedataset", "feed_warm_vs_persistent"}
    assert all(r["equal"] is not False for r in rows), rows


def test_ssl_step_quick():
    _needs(REPO.parent / "shared" / "reference" / "swinunetr_pretrain_cpu")
    rows = _run("bench_ssl_step.py")
    assert [r["figure"] for r in rows] == ["ssl_augment", "ssl_forward", "ssl_backward", "ssl_optimizer", "ssl_step"]
    assert rows[-1]["equal"], rows[-1]
