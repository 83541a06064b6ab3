"""Shared fixtures. Real-data tests read ``../shared/data/real`` (or $MEDSSL_REAL_DATA, or
``--real-data DIR``) and skip with a clear message when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SENTINEL_TEXTS = ("SENTINEL^PHI^DONOTLEAK", "SENTINEL", "DONOTLEAK", "PHI-SENTINEL-0001")


def pytest_addoption(parser):
    parser.addoption("--real-data", default=None, help="folder holding the real sample scans")


@pytest.fixture(scope="session")
def real_data(request) -> Path:
    opt = request.config.getoption("--real-data") or os.environ.get("MEDSSL_REAL_DATA")
    path = Path(opt) if opt else REPO.parent / "shared" / "data" / "real"
    if not (path / "README.md").is_file():
        pytest.skip(f"real sample data not found at {path} (set MEDSSL_REAL_DATA or --real-data)")
    return path


@pytest.fixture(scope="session")
def head_ct_series(real_data) -> Path:
    return real_data / "dicom" / "head_ct_series"


def assert_no_phi(text: str, where: str = "output") -> None:
    for s in SENTINEL_TEXTS:
        assert s.lower() not in text.lower(), f"patient sentinel {s!r} leaked into {where}"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
