"""Probing headers decodes only the elements it reads (and every sequence); on mutated real
series and pydicom's sample series it reports what decoding every element reported."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.io import dicom_headers, probe
from tests.unit.io.io_fuzz_cases import FUZZ_LIMITS, build_corpus, dicom_case

pytestmark = pytest.mark.realdata


def _outcome(path):
    try:
        result = probe(path, FUZZ_LIMITS)
    except MedsslError as err:
        return ("error", err.code, str(err))
    return ([dataclasses.astuple(s) for s in result.series], sorted(result.failed))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_probe_with_fewer_decoded_elements_reports_the_same_on_mutated_series(real_data, tmp_path, monkeypatch):
    corpus = build_corpus(real_data, tmp_path / "corpus")
    differ = []
    for seed in range(120):
        work = tmp_path / f"case{seed}"
        work.mkdir()
        label, path = dicom_case(corpus, work, np.random.default_rng(seed))
        few = _outcome(path)
        monkeypatch.setattr(importlib.import_module("medssl.io.probe"), "PROBE_ELEMENTS", None)
        every = _outcome(path)
        monkeypatch.undo()
        if few != every:
            differ.append((seed, label))
        shutil.rmtree(work)
    assert not differ, differ


def test_probe_elements_cover_what_probing_reads():
    for keyword in ("SeriesInstanceUID", "Modality", "SOPClassUID", "ImageType", "Rows", "Columns",
                    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "InstanceNumber"):
        assert keyword in dicom_headers.PROBE_ELEMENTS


@pytest.mark.parametrize("folder", ["dicomdirtests/98892001/CT5N", "dicomdirtests/77654033/CT2",
                                    "dicomdirtests/98892003/MR700", "dicomdirtests/98892001/CT2N"])
def test_pydicom_sample_series_probe_the_same_either_way(folder, monkeypatch):
    """Implicit-VR files, where pydicom has already decoded some elements while reading."""
    import os

    from pydicom.data import get_testdata_file

    path = Path(os.path.dirname(get_testdata_file("CT_small.dcm"))) / folder
    if not path.is_dir():
        pytest.skip(f"{folder} not in this pydicom")
    few = _outcome(path)
    monkeypatch.setattr(importlib.import_module("medssl.io.probe"), "PROBE_ELEMENTS", None)
    assert few == _outcome(path)
