"""A fast reader for the DICOM files most archives hold, beside pydicom's general one.

pydicom parses every element through Python objects and converts each value on access:
for a CT slice of 30-100 elements that costs more than the pixels, and a series read took
twice SimpleITK's time. ``fast_dataset`` parses the bytes of an ordinary file itself
(preamble and file meta, implicit or explicit VR little endian, native grey-scale pixels,
any sequences walked but not decoded) and decodes only the elements asked for, with
stricter rules than pydicom's: a value that is not plainly well formed is not guessed at.
Whenever a file is anything else (another syntax, an encapsulated or colour image, a
Modality LUT, an unknown VR, an element VR other than the dictionary's, an empty or odd
value, a length that overruns, nesting too deep), it returns None and the caller reads the
file with pydicom, whose checks (``decode_all``) then name the problem. So this path never
accepts a file that path would refuse, and reads what it accepts to the same values."""

from __future__ import annotations

import re
import struct
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import UID

from medssl.io.dicom_elements import MAX_SEQUENCE_DEPTH

PIXEL_TAG = 0x7FE00010
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_IMPLICIT, _EXPLICIT = pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_DS = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_IS = re.compile(r"[+-]?\d+")
_UI = re.compile(r"[0-9.]+")
# Headers sit in the first few kilobytes: a headers-only read takes this much first, then
# eight times more while the headers go on (big private sequences), then the rest.
PREFIX_BYTES = 8 * 1024
# Pixel formats the fast path hands on: those ``dicom_pixels._native_pixels`` reads itself.
_GREY = ("MONOCHROME1", "MONOCHROME2")
_unpack = struct.unpack_from


class _Leave(Exception):
    """The file leaves the fast path: pydicom reads it."""


class _More(Exception):
    """The buffer ends inside an element: read the rest of the file."""


class FastDataset(Dataset):
    """A pydicom ``Dataset`` whose decoded elements are also kept by keyword, so the
    reader's many ``get``, ``in`` and attribute lookups are dictionary lookups (pydicom's
    cost about 2 us each, some 150 per slice). The other elements are pydicom's raw
    elements, decoded on access as in any dataset ``dcmread`` returns."""

    def get(self, key: Any, default: Any = None) -> Any:
        fast = self.__dict__.get("_fast")
        if fast is not None and isinstance(key, str) and key in fast:
            return fast[key]
        return super().get(key, default)

    def __contains__(self, name: Any) -> bool:
        fast = self.__dict__.get("_fast")
        if fast is not None and isinstance(name, str) and name in fast:
            return True
        return super().__contains__(name)

    def __getattr__(self, name: str) -> Any:
        fast = self.__dict__.get("_fast")
        if fast is not None and name in fast:
            return fast[name]
        return super().__getattr__(name)

    def __delattr__(self, name: str) -> None:
        fast = self.__dict__.get("_fast")
        if fast is not None:
            fast.pop(name, None)
        super().__delattr__(name)


_TAGS: dict[int, tuple[Tag, str, str | None]] = {}


def _tag_info(tag: int) -> tuple[Tag, str, str | None]:
    """(pydicom Tag, keyword or '', dictionary VR or None for private or unknown tags),
    cached per tag."""
    info = _TAGS.get(tag)
    if info is None:
        try:
            vr: str | None = dictionary_VR(tag)
        except KeyError:
            vr = None
        info = _TAGS[tag] = (Tag(tag), keyword_for_tag(tag), vr)
    return info


def _explicit_header(buf: bytes, pos: int, eof: bool) -> tuple[bytes, int, int]:
    """An explicit VR element's (VR, value length, value offset) at ``pos`` (tag read by the
    caller): a 2-byte length after most VRs, a 4-byte one after the long ones."""
    vr_bytes = buf[pos + 4 : pos + 6]
    if vr_bytes in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Leave if eof else _More
        return vr_bytes, _unpack("<I", buf, pos + 8)[0], pos + 12
    if vr_bytes in _SHORT_VRS:
        return vr_bytes, _unpack("<H", buf, pos + 6)[0], pos + 8
    raise _Leave  # not a VR: pydicom decides what the bytes are


def _walk(buf: bytes, pos: int, end: int, implicit: bool, depth: int, top: dict | None,
          headers_only: bool, eof: bool) -> int:  # fmt: skip
    """Parse elements from ``pos`` to ``end`` (or to an item delimiter when ``end`` is None
    inside an undefined-length item); top-level ones go to ``top`` as tag -> (VR, offset,
    length). Returns the position after the last element."""
    limit = len(buf) if end is None else end
    while pos < limit:
        if pos + 8 > len(buf):
            raise _Leave if eof else _More
        group, element = _unpack("<HH", buf, pos)
        tag = group << 16 | element
        if tag == _ITEM_END and top is None and end is None:
            return pos + 8
        if tag in (_ITEM, _ITEM_END, _SEQ_END):
            raise _Leave  # a delimiter where an element belongs
        if top is not None and headers_only and tag == PIXEL_TAG:
            return pos  # as pydicom's stop_before_pixels
        if implicit:
            vr_bytes = None
            (length,) = _unpack("<I", buf, pos + 4)
            pos += 8
            is_sq = _tag_info(tag)[2] == "SQ"
        else:
            vr_bytes, length, pos = _explicit_header(buf, pos, eof)
            is_sq = vr_bytes == b"SQ"
        start = pos
        if length == _UNDEFINED:
            if not is_sq and not (implicit and _tag_info(tag)[2] is None):
                raise _Leave  # encapsulated pixel data, an undefined-length UN
            pos = _sequence(buf, pos, None, implicit, depth + 1, eof)
        else:
            if pos + length > len(buf):
                raise _Leave if eof else _More
            if is_sq:
                _sequence(buf, pos, pos + length, implicit, depth + 1, eof)
            pos += length
        if top is not None:
            top[tag] = (vr_bytes, start, length, is_sq)
    if end is not None and pos != end:
        raise _Leave  # an element ran past its item
    if end is None and top is None:
        raise _Leave if eof else _More  # an undefined-length item without its delimiter
    if top is not None and not eof:
        raise _More  # the prefix ended between two elements: more may follow
    return pos


def _sequence(buf: bytes, pos: int, end: int | None, implicit: bool, depth: int, eof: bool) -> int:
    """Walk a sequence's items (structure only) and return the position after it."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise _Leave  # pydicom's read names it
    while end is None or pos < end:
        if pos + 8 > len(buf):
            raise _Leave if eof else _More
        group, element = _unpack("<HH", buf, pos)
        (length,) = _unpack("<I", buf, pos + 4)
        tag = group << 16 | element
        pos += 8
        if tag == _SEQ_END and end is None:
            return pos
        if tag != _ITEM:
            raise _Leave
        if length == _UNDEFINED:
            pos = _walk(buf, pos, None, implicit, depth, None, False, eof)
        else:
            if pos + length > len(buf):
                raise _Leave if eof else _More
            _walk(buf, pos, pos + length, implicit, depth, None, False, eof)
            pos += length
    if pos != end:
        raise _Leave
    return pos


def _text(raw: bytes) -> list[str]:
    """Values split as pydicom splits them: the padding after the last one removed, not
    the spaces inside (a CS of 'DERIVED \\SECONDARY' keeps 'DERIVED ')."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _Leave from None
    return text.rstrip(" \x00").split("\\")


def _decode(raw: bytes, vr: str) -> Any:
    """One value decoded by its VR, strictly; multiple values as a list."""
    if not raw:
        raise _Leave  # pydicom's empty values differ per VR: its reader handles them
    if vr in _BINARY:
        code = _BINARY[vr]
        size = struct.calcsize(code)
        if len(raw) % size:
            raise _Leave
        values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    elif vr == "DS":
        parts = [p.strip(" ") for p in _text(raw)]
        if not all(_DS.fullmatch(p) for p in parts):
            raise _Leave
        values = [float(p) for p in parts]
    elif vr == "IS":
        parts = [p.strip(" ") for p in _text(raw)]
        if not all(_IS.fullmatch(p) for p in parts):
            raise _Leave
        values = [int(p) for p in parts]
    elif vr == "UI":
        values = _text(raw)
        if not all(_UI.fullmatch(v) for v in values):
            raise _Leave
    elif vr == "CS":
        values = _text(raw)
    else:
        raise _Leave  # free text and the rest: see _TEXT_VRS
    return values[0] if len(values) == 1 else values


# Free text is decoded by pydicom, which knows the character sets (SpecificCharacterSet).
_TEXT_VRS = frozenset({"AE", "AS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"})


def _meta_elements(buf: bytes) -> tuple[FileMetaDataset, UID, int]:
    """The file meta group (explicit VR little endian, PS3.10), its transfer syntax and
    where the dataset starts."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise _Leave
    meta = FileMetaDataset()
    syntax = None
    pos = 132
    while pos + 8 <= len(buf) and _unpack("<H", buf, pos)[0] == 0x0002:
        group, element = _unpack("<HH", buf, pos)
        vr_bytes, length, pos = _explicit_header(buf, pos, True)
        tag, _, expected = _tag_info(group << 16 | element)
        vr = vr_bytes.decode("ascii")
        if length == _UNDEFINED or pos + length > len(buf) or vr != expected:
            raise _Leave
        raw = buf[pos : pos + length]
        if tag == 0x00020010:
            syntax = _decode(raw, "UI")
        meta._dict[tag] = RawDataElement(tag, vr, length, raw, pos, False, True)
        pos += length
    if not isinstance(syntax, str):
        raise _Leave
    return meta, UID(syntax), pos


def _parse(buf: bytes, decode: frozenset[str], headers_only: bool, eof: bool) -> FastDataset:
    meta, syntax, start = _meta_elements(buf)
    if syntax == _IMPLICIT:
        implicit = True
    elif syntax == _EXPLICIT or (syntax.is_encapsulated and headers_only):
        implicit = False  # an encapsulated syntax encodes its dataset explicit VR little endian
    else:
        raise _Leave  # big endian, deflated; compressed pixels: the decoders want pydicom's dataset
    top: dict[int, tuple] = {}
    _walk(buf, start, None, implicit, 0, top, headers_only, eof)
    ds = FastDataset()
    fast: dict[str, Any] = {}
    texts: list[tuple[str, Tag]] = []
    elements = ds._dict
    for number, (vr_bytes, offset, length, is_sq) in top.items():
        tag, keyword, expected = _tag_info(number)
        if is_sq:
            if keyword in decode:
                raise _Leave  # ModalityLUTSequence: pydicom decodes it
            continue  # walked, never read
        vr = vr_bytes.decode("ascii") if vr_bytes is not None else None
        raw = buf[offset : offset + length]
        elements[tag] = RawDataElement(tag, vr, length, raw, offset, implicit, True)
        if keyword not in decode:
            continue
        if expected is None or (vr is not None and vr != expected and number != PIXEL_TAG):
            raise _Leave  # pydicom's check names an essential element under a foreign VR
        if number == PIXEL_TAG:
            if vr not in (None, "OB", "OW"):
                raise _Leave
            fast[keyword] = raw
        elif (vr or expected) in _TEXT_VRS:
            texts.append((keyword, tag))
        else:
            value = _decode(raw, vr or expected)
            fast[keyword] = UID(value) if expected == "UI" and isinstance(value, str) else value
    if not headers_only and "PixelData" in fast and not _native_grey(fast):
        raise _Leave
    ds.file_meta = meta
    ds.set_original_encoding(implicit, True, None)
    for keyword, tag in texts:
        fast[keyword] = ds[tag].value  # inside the caller's try: an undecodable text leaves the path
    object.__setattr__(ds, "_fast", fast)
    return ds


def _native_grey(fast: dict[str, Any]) -> bool:
    """Whether ``dicom_pixels`` reads these pixels itself (no pydicom decoder involved)."""
    allocated, stored = fast.get("BitsAllocated"), fast.get("BitsStored", fast.get("BitsAllocated"))
    return (fast.get("PhotometricInterpretation") in _GREY and allocated in (8, 16, 32)
            and fast.get("SamplesPerPixel", 1) == 1 and fast.get("NumberOfFrames", 1) == 1
            and not (fast.get("PixelRepresentation") == 1 and stored != allocated)
            and "FloatPixelData" not in fast and "DoubleFloatPixelData" not in fast)  # fmt: skip


def fast_dataset(f: BinaryIO, size: int, decode: frozenset[str], *, headers_only: bool) -> FastDataset | None:
    """The file as a ``FastDataset`` with the ``decode`` keywords decoded, or None when it
    leaves the fast path (see the module); ``f`` is then rewound for pydicom."""
    try:
        want = PREFIX_BYTES if headers_only else size + 1
        buf = f.read(want)
        while True:
            try:
                return _parse(buf, decode, headers_only, eof=len(buf) < want)
            except _More:
                more = min(7 * len(buf), size + 1)  # headers only: eight times the prefix, at most all
                want = len(buf) + more
                buf += f.read(more)
    except Exception:  # noqa: BLE001 - _Leave, a _More past the end, or anything unforeseen: pydicom decides
        pass
    f.seek(0)
    return None

