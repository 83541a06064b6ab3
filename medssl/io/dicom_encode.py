"""Writing a large in-memory DICOM dataset to bytes, the same bytes as pydicom's, faster.

A multi-frame object such as a DICOM SEG holds one Per-Frame Functional Groups item per
frame (648 items, about 13,000 elements, for a 108-slice, 6-segment SEG). pydicom's writer
runs every element through its general path (an ambiguous-VR pass over every item, a
buffer per element, charset look-ups) and took longer than building the object. ``to_bytes``
writes the dataset's sequences with a small explicit-VR-little-endian encoder for the
plain cases (ASCII text, UIDs, binary numbers, bytes, nested items, each shared item
encoded once) and hands every other element to pydicom's own ``write_data_element``, so
the output is byte-for-byte what ``save_as(..., enforce_file_format=True)`` writes
(``tests/unit/io/test_dicom_encode.py`` checks that on real and phantom SEGs). A dataset
this encoder does not cover (another transfer syntax, an element after the sequence it
speeds up) is written by pydicom unchanged."""

from __future__ import annotations

import io
import struct
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian

_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UR", "UT"})
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQ_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_PIXEL_TAG = struct.pack("<HH", 0x7FE0, 0x0010)
# The sequences worth encoding here: everything after them but Pixel Data goes through pydicom.
_FAST_SEQUENCES = (0x52009230,)  # PerFrameFunctionalGroupsSequence


def to_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file (preamble, file meta, explicit VR little endian body), the bytes
    ``ds.save_as(buffer, enforce_file_format=True)`` writes."""
    tags = sorted(ds.keys())
    fast = [t for t in tags if t in _FAST_SEQUENCES]
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    after = [t for t in tags if fast and t > fast[0]]
    pixels = ds.get(0x7FE00010)
    if (not fast or syntax != ExplicitVRLittleEndian or any(t != 0x7FE00010 for t in after)
            or (pixels is not None and (pixels.is_buffered or not isinstance(pixels.value, bytes)))):  # fmt: skip
        return _pydicom_bytes(ds)
    head = Dataset()  # everything but the sequence, written by pydicom
    head.file_meta = ds.file_meta
    head.preamble = getattr(ds, "preamble", None)
    for tag in tags:
        if tag != fast[0]:
            head.add(ds[tag])
    written = _pydicom_bytes(head)
    cut = len(written)
    if after:  # Pixel Data, last: its header is 12 bytes, its value padded to an even length
        cut -= 12 + len(ds[after[0]].value) + len(ds[after[0]].value) % 2
        if written[cut : cut + 4] != _PIXEL_TAG:
            return _pydicom_bytes(ds)
    try:
        sequence = _element(ds[fast[0]], {})
    except _Unsupported:  # an ambiguous VR, which pydicom's writer resolves per item
        return _pydicom_bytes(ds)
    return b"".join((written[:cut], sequence, written[cut:]))


class _Unsupported(Exception):
    pass


def _pydicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _items(items: Any, memo: dict[int, bytes]) -> bytes:
    return b"".join(_item(item, memo) for item in items)


def _item(item: Dataset, memo: dict[int, bytes]) -> bytes:
    """One sequence item: the item tag, its length (or undefined + delimiter), its elements.
    Items shared between frames (highdicom reuses the same source and position items) are
    encoded once per write."""
    key = id(item)
    if key not in memo:
        body = b"".join(_element(item[tag], memo) for tag in sorted(item.keys()) if not _group_length(tag))
        if getattr(item, "is_undefined_length_sequence_item", False):
            memo[key] = _ITEM + body + _ITEM_END
        else:
            memo[key] = _ITEM[:4] + struct.pack("<L", len(body)) + body
    return memo[key]


def _group_length(tag: int) -> bool:
    return (tag & 0xFFFF) == 0 and (tag >> 16) > 6  # pydicom does not write retired group lengths


def _element(elem: DataElement, memo: dict[int, bytes]) -> bytes:
    vr = elem.VR
    if not vr or len(vr) != 2:
        raise _Unsupported(vr)
    if getattr(elem, "is_raw", False) or elem.is_buffered:
        return _pydicom_element(elem)
    if vr == "SQ":
        value = _items(elem.value, memo)
        if elem.is_undefined_length:
            return _header(elem.tag, vr, 0xFFFFFFFF) + value + _SEQ_END
    else:
        value = _value(vr, elem.value)
        if value is None or elem.is_undefined_length:
            return _pydicom_element(elem)
    if vr not in _LONG and len(value) > 0xFFFF:
        return _pydicom_element(elem)  # pydicom turns it into UN with a warning
    return _header(elem.tag, vr, len(value)) + value


def _header(tag: int, vr: str, length: int) -> bytes:
    if vr in _LONG:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _value(vr: str, value: Any) -> bytes | None:
    """The encoded value of the plain cases, or None to let pydicom encode the element."""
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return None  # empty values: pydicom's rules
    if vr == "UI" and isinstance(value, str) and value.isascii():
        data = value.encode()
        return data + b"\0" if len(data) % 2 else data
    if vr in _TEXT and type(value) is str and value.isascii():
        data = value.encode()
        return data + b" " if len(data) % 2 else data
    if vr in _NUMBERS:
        values = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
        if all(type(v) is int for v in values) or (vr in ("FL", "FD") and all(type(v) is float for v in values)):
            try:
                return struct.pack(f"<{len(values)}{_NUMBERS[vr]}", *values)
            except struct.error:
                return None  # out of range: pydicom's error
    return None


def _pydicom_element(elem: DataElement) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem)
    return fp.getvalue()
