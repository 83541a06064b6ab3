"""The dciodvfy helper skips without the validator, except under CI, where it fails."""

from __future__ import annotations

import pytest

from tests import dciodvfy


def test_missing_validator_skips_locally_and_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(dciodvfy.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        dciodvfy.dciodvfy_errors(tmp_path / "x.dcm")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dicom3tools"):
        dciodvfy.dciodvfy_errors(tmp_path / "x.dcm")
