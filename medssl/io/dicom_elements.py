"""Decoding DICOM element values safely. pydicom converts values lazily, on first access
long after ``dcmread`` returned, and its warnings and log lines quote them: ``decode_all``
converts every element inside the read's error handling, and the accessors here never let
a decoding error escape."""

from __future__ import annotations

import logging
import math
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import pydicom
from pydicom.dataset import Dataset

from medssl.errors import CorruptFileError, MedsslError

log = logging.getLogger(__name__)

# Elements the image is built from: one that cannot be decoded makes the file corrupt. Any
# other undecodable element is dropped (medssl never uses it), so no lazy pydicom error can
# surface later, outside the read.
ESSENTIAL = frozenset({
    "SOPClassUID", "Modality", "SeriesInstanceUID", "ImageType", "InstanceNumber", "ImagesInAcquisition",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "PixelData",
    "FloatPixelData", "DoubleFloatPixelData", "SeriesNumber", "FrameOfReferenceUID",
})  # fmt: skip
MAX_SEQUENCE_DEPTH = 8


_QUIET_LOCK = threading.RLock()


class _RedactedPydicomLog(logging.Handler):
    """pydicom's log text may quote tag values (UIDs, names): only the fact is passed on."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("pydicom logged a %s (text hidden: it may quote DICOM values)", record.levelname.lower())


def silence_pydicom() -> None:
    """Process-wide, at ``medssl.io`` import: pydicom converts and validates values lazily, on
    first access long after ``dcmread`` returned, and its warnings and log lines quote them."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pd_log = logging.getLogger("pydicom")
    pd_log.propagate = False
    if not any(isinstance(h, _RedactedPydicomLog) for h in pd_log.handlers):
        pd_log.addHandler(_RedactedPydicomLog())
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


silence_pydicom()


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Keep pydicom's value warnings (which may quote tag values) out of logs and stderr."""
    with _QUIET_LOCK, _quiet():
        yield


@contextmanager
def _quiet() -> Iterator[None]:
    config = pydicom.config.settings
    saved = config.reading_validation_mode
    config.reading_validation_mode = pydicom.config.IGNORE
    pd_log = logging.getLogger("pydicom")
    saved_disabled = pd_log.disabled
    pd_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        config.reading_validation_mode = saved
        pd_log.disabled = saved_disabled


def tag_value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, with a value pydicom cannot decode (unknown VR, wrong length)
    read as None: files go through ``decode_all`` first, so this only guards datasets built
    in memory."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom decodes lazily and raises many types
        return None


def tag_float(ds: Dataset, keyword: str) -> float | None:
    """A numeric tag (the first value if several): None when absent or empty; ValueError
    when malformed or not finite."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)):
            value = value[0]
        number = float(value)
    except Exception:  # noqa: BLE001 - lazy decoding errors of pydicom, bad types, overflow
        number = float("nan")
    if not math.isfinite(number):
        raise ValueError(f"{keyword} is malformed or not finite")
    return number


def optional_float(ds: Dataset, keyword: str, where: str = "") -> float | None:
    """A numeric tag medssl can do without: None when absent, empty or malformed. The value
    itself is never logged (free text may hide in it)."""
    try:
        return tag_float(ds, keyword)
    except ValueError:
        log.debug("%s: %s is malformed; ignored", where, keyword)
        return None


def required_int(ds: Dataset, keyword: str, where: str) -> int:
    """A positive integer tag the image cannot do without (Rows, Columns), or CorruptFileError
    naming the tag and the file, never the value."""
    try:
        value = int(ds.get(keyword))
    except Exception:  # noqa: BLE001 - lazy decoding errors of pydicom, bad types, overflow
        value = 0
    if value <= 0:
        raise CorruptFileError(f"{keyword} is missing or malformed", source=where)
    return value


def _is_sequence(ds: Dataset, tag: int) -> bool:
    """Whether a (possibly still raw) element is a sequence, without decoding its value."""
    raw = ds.get_item(tag)
    if raw is None:
        return False
    undefined = getattr(raw, "length", 0) == 0xFFFFFFFF  # a decoded DataElement has no length: not raw
    if raw.VR:
        return raw.VR == "SQ" or undefined
    try:
        return pydicom.datadict.dictionary_VR(tag) == "SQ" or undefined
    except KeyError:
        return undefined


def decode_all(ds: Dataset, where: str, depth: int = 0, only: frozenset[str] | None = None) -> None:
    """Decode every element now, inside the read's error handling: an essential element that
    cannot be decoded is CorruptFileError naming its keyword; any other one is dropped.

    ``only``: top-level elements outside this set of keywords stay undecoded, for a caller
    that reads those keywords alone and drops the dataset (headers for an index); sequences
    are still decoded throughout, so nesting limits hold the same."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise CorruptFileError("DICOM sequences nested too deeply", source=where)
    for tag in list(ds.keys()):
        if only is not None and depth == 0 and pydicom.datadict.keyword_for_tag(tag) not in only \
                and not _is_sequence(ds, tag):  # fmt: skip
            continue
        try:
            elem = ds[tag]
            if depth == 0:
                _check_vr(elem, where)
            if elem.VR == "SQ":
                for item in elem.value:
                    decode_all(item, where, depth + 1)
        except MedsslError:
            raise
        except Exception as err:  # noqa: BLE001 - pydicom raises many types on broken elements
            keyword = pydicom.datadict.keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if depth == 0 and keyword in ESSENTIAL:
                raise CorruptFileError(f"{keyword} cannot be decoded ({err.__class__.__name__})",
                                       source=where) from err  # fmt: skip
            del ds[tag]
            log.debug("%s: dropped undecodable element %s", where, keyword)
    meta = getattr(ds, "file_meta", None)
    if depth == 0 and meta is not None:
        for tag in list(meta.keys()):
            try:
                meta[tag]
            except Exception as err:  # noqa: BLE001
                raise CorruptFileError(f"file meta element ({tag >> 16:04X},{tag & 0xFFFF:04X}) cannot be "
                                       f"decoded ({err.__class__.__name__})", source=where) from err  # fmt: skip


def _check_vr(elem: pydicom.DataElement, where: str) -> None:
    """An essential element stored under another VR than the dictionary's (explicit VR files)
    decodes to a wrong value without any error: text '1.0' read as US is 11825."""
    if elem.keyword not in ESSENTIAL or elem.VR == "UN":
        return
    expected = pydicom.datadict.dictionary_VR(elem.tag).split(" or ")
    if elem.VR not in expected:
        raise CorruptFileError(f"{elem.keyword} is stored as VR {elem.VR}, not {' or '.join(expected)}",
                               source=where)  # fmt: skip
