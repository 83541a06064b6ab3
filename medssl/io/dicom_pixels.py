"""Pixel data of one DICOM slice -> float32 with the modality LUT (RescaleSlope/Intercept)
applied exactly, per slice. Compressed transfer syntaxes decode through the pydicom
plugins (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg); a missing decoder is a typed
error naming the syntax and what to install."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medssl.errors import CorruptFileError, DecoderMissingError, MedsslError, UnsupportedInputError
from medssl.io.dicom_headers import optional_float, quiet_pydicom, tag_float

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


def check_decoder(ds: Dataset, source: str) -> None:
    """Raise DecoderMissingError before decoding when no plugin can handle the syntax."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
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


def slice_pixels(ds: Dataset, source: str) -> np.ndarray:
    """(Rows, Columns) float32 after the modality LUT."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise CorruptFileError("DICOM image has no pixel data", source=source)
    if (optional_float(ds, "SamplesPerPixel", source) or 1) != 1:
        raise UnsupportedInputError("colour (multi-sample) DICOM images are not supported", source=source)
    if (optional_float(ds, "NumberOfFrames", source) or 1) > 1:
        raise UnsupportedInputError("multi-frame DICOM files are not supported yet; export single-frame "
                                    "slices", source=source)  # fmt: skip
    check_decoder(ds, source)
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
        syntax = ds.file_meta.TransferSyntaxUID
        raise DecoderMissingError(f"decoding '{syntax.name}' failed with every installed plugin; "
                                  f"{install_hint(syntax)}", source=source) from err  # fmt: skip
    except Exception as err:  # noqa: BLE001 - decoders raise many types on corrupt streams
        raise CorruptFileError(f"pixel data cannot be decoded ({err.__class__.__name__})", source=source) from err
    if stored.ndim != 2:
        raise UnsupportedInputError(f"unexpected pixel array shape {stored.shape}", source=source)
    return _modality_lut(ds, stored, source)


def _modality_lut(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    try:
        slope, intercept = tag_float(ds, "RescaleSlope"), tag_float(ds, "RescaleIntercept")
    except ValueError as err:
        raise CorruptFileError(f"implausible rescale: {err}", source=source) from err
    slope, intercept = 1.0 if slope is None else slope, 0.0 if intercept is None else intercept
    if slope == 0:
        raise CorruptFileError("implausible rescale (slope 0)", source=source)
    values = stored.astype(np.float64) * slope + intercept
    return values.astype(np.float32)
