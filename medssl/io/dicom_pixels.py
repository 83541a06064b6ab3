"""Pixel data of one DICOM slice -> float32 with the modality LUT (RescaleSlope/Intercept)
applied exactly, per slice. Compressed transfer syntaxes decode through the pydicom
plugins (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg); a missing decoder is a typed
error naming the syntax and what to install."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, AllTransferSyntaxes

from medssl.errors import CorruptFileError, DecoderMissingError, MedsslError, UnsupportedInputError
from medssl.io.dicom_elements import optional_float, quiet_pydicom, required_int, tag_float

INSTALL_HINTS = {
    "JPEG Baseline": "pip install pylibjpeg pylibjpeg-libjpeg",
    "JPEG Extended": "pip install pylibjpeg pylibjpeg-libjpeg",
    "JPEG Lossless": "pip install pylibjpeg pylibjpeg-libjpeg",
    "JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
}


def install_hint(syntax: UID) -> str:
    name = syntax.name
    for prefix, hint in INSTALL_HINTS.items():
        if name.startswith(prefix):
            return hint
    return "no pip-installable decoder is known; decompress first (e.g. gdcmconv --raw or dcmdjpeg)"


def transfer_syntax(ds: Dataset, source: str) -> UID | None:
    """The file's TransferSyntaxUID (None when absent), or UnsupportedInputError when it is
    not one known transfer syntax (several values, an unknown UID, free text)."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UnsupportedInputError("TransferSyntaxUID holds several values; fix the file meta", source=source)
    syntax = _known_syntax(value)
    if syntax is None:
        uid = UID(value)
        shown = f" '{uid}'" if re.fullmatch(r"[0-9.]{1,64}", uid) else ""  # never quote free text
        raise UnsupportedInputError(f"TransferSyntaxUID{shown} is not a known transfer syntax; re-export the "
                                    "file (e.g. gdcmconv --raw or dcmconv)", source=source)  # fmt: skip
    return syntax


@lru_cache(maxsize=64)
def _known_syntax(value: str) -> UID | None:
    """The UID when it is a known transfer syntax: a slice's read asks several times."""
    syntax = UID(value)
    return syntax if syntax in AllTransferSyntaxes else None


def check_decoder(ds: Dataset, source: str) -> None:
    """Raise DecoderMissingError before decoding when no plugin can handle the syntax."""
    from pydicom.pixels import get_decoder

    syntax = transfer_syntax(ds, source)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise DecoderMissingError(f"no decoder exists for transfer syntax '{syntax.name}' ({syntax}); "
                                  f"{install_hint(syntax)}", source=source) from err  # fmt: skip
    if not decoder.is_available:
        raise DecoderMissingError(f"transfer syntax '{syntax.name}' ({syntax}) needs a decoder plugin: "
                                  f"{install_hint(syntax)}", source=source)  # fmt: skip


def _bits(ds: Dataset, source: str) -> tuple[int, int, int]:
    """(BitsAllocated, BitsStored, PixelRepresentation), checked for consistency."""
    allocated = required_int(ds, "BitsAllocated", source)
    stored = int(optional_float(ds, "BitsStored", source) or allocated)
    representation = int(optional_float(ds, "PixelRepresentation", source) or 0)
    if allocated not in (1, 8, 16, 32, 64) or not 1 <= stored <= allocated or representation not in (0, 1):
        raise CorruptFileError(f"inconsistent pixel format (BitsAllocated {allocated}, BitsStored {stored}, "
                               f"PixelRepresentation {representation})", source=source)  # fmt: skip
    return allocated, stored, representation


def expected_pixel_bytes(ds: Dataset, source: str) -> int | None:
    """Bytes of native (uncompressed) pixel data that Rows x Columns x BitsAllocated x frames
    call for; None for an encapsulated (compressed) syntax, whose decoder checks the size."""
    syntax = transfer_syntax(ds, source)
    if syntax is not None and syntax.is_encapsulated:
        return None
    rows, cols = required_int(ds, "Rows", source), required_int(ds, "Columns", source)
    frames = int(optional_float(ds, "NumberOfFrames", source) or 1)
    samples = int(optional_float(ds, "SamplesPerPixel", source) or 1)
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        allocated = 32 if "FloatPixelData" in ds else 64
    else:
        allocated = _bits(ds, source)[0]
    return (rows * cols * frames * samples * allocated + 7) // 8


def check_pixel_length(ds: Dataset, source: str) -> None:
    """Native pixel data must hold exactly what the header says (plus one pad byte): a wrong
    Rows or Columns would otherwise read sheared or drop rows, silently."""
    _check_length(ds, source, expected_pixel_bytes(ds, source))


def _check_length(ds: Dataset, source: str, expected: int | None) -> None:
    if expected is None:
        return
    keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds), None)
    if keyword is None:
        raise CorruptFileError("DICOM image has no pixel data", source=source)
    found = len(ds[keyword].value or b"")
    if found < expected:
        raise CorruptFileError(f"pixel data is truncated: {found} bytes, Rows x Columns x BitsAllocated call "
                               f"for {expected}", source=source)  # fmt: skip
    if found > expected + (expected % 2):
        raise CorruptFileError(f"pixel data holds {found} bytes but Rows x Columns x BitsAllocated call for "
                               f"{expected}; Rows, Columns or BitsAllocated is wrong", source=source)  # fmt: skip


_NATIVE = {pydicom.uid.ImplicitVRLittleEndian: "<", pydicom.uid.ExplicitVRLittleEndian: "<",
           pydicom.uid.ExplicitVRBigEndian: ">"}  # fmt: skip


def _byte_order(ds: Dataset, source: str) -> str | None:
    """numpy's byte-order mark for data stored uncompressed in a known order; None otherwise."""
    return _NATIVE.get(transfer_syntax(ds, source))  # type: ignore[arg-type]


def _check_stored_bits(ds: Dataset, source: str) -> tuple[int, int, int] | None:
    """Native integer pixels must fit BitsStored: pydicom masks the unused high bits, which
    would turn a wrong BitsStored into wrong intensities, silently. Returns ``_bits`` for
    native integer pixel data (None otherwise)."""
    if "PixelData" not in ds:
        return None
    bits = allocated, stored, representation = _bits(ds, source)
    if allocated not in (8, 16, 32) or stored == allocated:
        return bits
    order = _byte_order(ds, source) or "<"
    rows, cols = required_int(ds, "Rows", source), required_int(ds, "Columns", source)
    raw = np.frombuffer(ds.PixelData, dtype=f"{order}u{allocated // 8}", count=rows * cols)
    high = raw >> stored  # the unused bits: clear, or for signed pixels also all set (sign-extended)
    fits = not high.any() if not representation else np.isin(high, (0, (1 << (allocated - stored)) - 1)).all()
    if not fits:
        raise CorruptFileError(f"stored values do not fit BitsStored {stored} (BitsAllocated {allocated}); "
                               "BitsStored is wrong or the pixel data is corrupt", source=source)  # fmt: skip
    return bits


def _native_pixels(ds: Dataset, source: str, bits: tuple[int, int, int]) -> np.ndarray | None:
    """Grey-scale native pixels straight from the bytes, as pydicom's ``pixel_array`` gives
    them (which costs more than the rest of a slice's read); None where pydicom must decode:
    another syntax or photometric interpretation, or signed values narrower than their
    allocation (pydicom sign-extends from BitsStored)."""
    allocated, stored, representation = bits
    order = _byte_order(ds, source)
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if order is None or allocated not in (8, 16, 32) or photometric not in ("MONOCHROME1", "MONOCHROME2") \
            or (representation and stored != allocated):  # fmt: skip
        return None
    rows, cols = required_int(ds, "Rows", source), required_int(ds, "Columns", source)
    kind = "i" if representation else "u"
    return np.frombuffer(ds.PixelData, dtype=f"{order}{kind}{allocated // 8}", count=rows * cols).reshape(rows, cols)


def slice_pixels(ds: Dataset, source: str) -> np.ndarray:
    """(Rows, Columns) float32 after the modality LUT."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise CorruptFileError("DICOM image has no pixel data", source=source)
    if (optional_float(ds, "SamplesPerPixel", source) or 1) != 1:
        raise UnsupportedInputError("colour (multi-sample) DICOM images are not supported", source=source)
    if (optional_float(ds, "NumberOfFrames", source) or 1) != 1:
        raise UnsupportedInputError("multi-frame DICOM files are not supported yet; export single-frame "
                                    "slices", source=source)  # fmt: skip
    check_decoder(ds, source)
    expected = expected_pixel_bytes(ds, source)
    _check_length(ds, source, expected)
    bits = _check_stored_bits(ds, source) if expected is not None else None
    fast = _native_pixels(ds, source, bits) if bits is not None else None
    if fast is not None:
        return _modality_lut(ds, fast, source)
    try:
        with quiet_pydicom():
            stored = ds.pixel_array
    except MedsslError:
        raise
    except (ValueError, EOFError) as err:
        text = str(err)
        what = "pixel data is truncated" if "less than expected" in text else "pixel data cannot be decoded"
        raise CorruptFileError(f"{what} ({err.__class__.__name__})", source=source) from err
    except (NotImplementedError, RuntimeError) as err:
        syntax = transfer_syntax(ds, source)
        raise DecoderMissingError(f"decoding '{syntax.name if syntax else 'native'}' failed with every installed "
                                  f"plugin; {install_hint(syntax) if syntax else 'check the pixel format'}",
                                  source=source) from err  # fmt: skip
    except Exception as err:  # noqa: BLE001 - decoders raise many types on corrupt streams
        raise CorruptFileError(f"pixel data cannot be decoded ({err.__class__.__name__})", source=source) from err
    if stored.ndim != 2:
        raise UnsupportedInputError(f"unexpected pixel array shape {stored.shape}", source=source)
    if stored.dtype.kind not in "iuf" or stored.dtype.itemsize > 8:
        raise UnsupportedInputError(f"unexpected pixel type {stored.dtype}", source=source)
    return _modality_lut(ds, stored, source)


def _lut(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """The Modality LUT (PS3.3 C.11.1) applied after checking the descriptor and data."""
    items = ds.get("ModalityLUTSequence") or []
    try:
        item = items[0]
        descriptor = [int(v) for v in item.get("LUTDescriptor") or []]
        data = item.get("LUTData")
    except Exception as err:  # noqa: BLE001 - malformed sequence items
        raise CorruptFileError(f"ModalityLUTSequence is malformed ({err.__class__.__name__})", source=source) from err
    if len(descriptor) != 3 or not 8 <= descriptor[2] <= 16:
        raise CorruptFileError("ModalityLUTSequence: LUTDescriptor must hold 3 values with 8 to 16 bits per "
                               "entry", source=source)  # fmt: skip
    entries, first, bits = descriptor[0] or 65536, descriptor[1], descriptor[2]
    if isinstance(data, (bytes, bytearray)):
        order = _byte_order(ds, source) or "<"
        table = np.frombuffer(data, dtype=f"{order}u2", count=len(data) // 2)
    else:
        table = np.asarray([] if data is None else ([data] if isinstance(data, int) else list(data)), dtype=np.int64)
    if table.size != entries or (table.size and (table.min() < 0 or table.max() >= 1 << bits)):
        raise CorruptFileError(f"ModalityLUTSequence: LUTData holds {table.size} entries of up to {bits} bits "
                               f"where LUTDescriptor says {entries}", source=source)  # fmt: skip
    if first >= 32768 and ds.get("PixelRepresentation") == 1:
        first -= 65536  # first mapped value is signed for signed pixels
    index = np.clip(stored.astype(np.int64) - first, 0, entries - 1)
    return table.astype(np.float32)[index]


def _exact_in_float32(dtype: np.dtype, slope: float, intercept: float) -> bool:
    """Whether ``stored * slope + intercept`` is exact in float32 for every value of this
    integer dtype (all in +-2^24, integers): the usual CT rescale (slope 1, intercept -1024)
    then needs neither float64 nor an overflow check."""
    if dtype.kind not in "iu" or dtype.itemsize > 2 or not (slope.is_integer() and intercept.is_integer()):
        return False
    return abs(slope) * (1 << (8 * dtype.itemsize)) + abs(intercept) <= 1 << 24


def _modality_lut(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        return _lut(ds, stored, source)
    try:
        slope, intercept = tag_float(ds, "RescaleSlope"), tag_float(ds, "RescaleIntercept")
    except ValueError as err:
        raise CorruptFileError(f"implausible rescale: {err}", source=source) from err
    slope, intercept = 1.0 if slope is None else slope, 0.0 if intercept is None else intercept
    if slope == 0:
        raise CorruptFileError("implausible rescale (slope 0)", source=source)
    if _exact_in_float32(stored.dtype, slope, intercept):
        if slope == 1:
            return np.add(stored, np.float32(intercept), dtype=np.float32)
        values = stored.astype(np.float32)
        values *= np.float32(slope)
        values += np.float32(intercept)
        return values
    with np.errstate(over="ignore", invalid="ignore"):
        values = stored.astype(np.float64) * slope + intercept
    if not np.isfinite(values).all() or np.abs(values).max(initial=0) > np.finfo(np.float32).max:
        raise CorruptFileError("rescaled values overflow float32 (implausible RescaleSlope/Intercept)",
                               source=source)  # fmt: skip
    return values.astype(np.float32)
