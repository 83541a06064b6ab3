"""Seeded mutation fuzzing of the readers (no tests here): structured mutations of a few real
DICOM slices and a real NIfTI volume, plus byte-level damage. ``run_case`` reads one mutated
input and says how it ended: ``ok`` (a read that passed the sanity checks), ``error:<code>``
(a typed ``MedsslError``), or ``untyped:<class>`` / ``bad_read:<why>`` / ``phi_leak`` (bugs).

Used by ``tests/unit/io/test_io_fuzz.py`` (a few hundred cases) and ``benchmarks/fuzz_readers.py``
(thousands)."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medssl.errors import MedsslError
from medssl.io import ReadLimits, probe, read_scan

SENTINELS = ("SENTINEL", "DONOTLEAK", "PHI-SENTINEL")
N_SLICES = 8  # consecutive real slices per DICOM case: enough for a stack, quick to copy
NIFTI_CROP = (48, 40, 10)
FUZZ_LIMITS = ReadLimits(max_bytes=256 * 1024**2)  # a case that needs more is refused, never allocated


@dataclass
class Corpus:
    """Base inputs built once from the real files: a short DICOM series and a NIfTI volume."""

    dicom: Path  # folder of N_SLICES real slices
    nifti: bytes  # an uncompressed .nii (real voxels, cropped)
    dicom_array: np.ndarray | None = None  # what each base input reads as
    nifti_array: np.ndarray | None = None


def build_corpus(real_data: Path, work: Path) -> Corpus:
    series = real_data / "dicom" / "head_ct_series"
    by_z = sorted(series.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                          .ImagePositionPatient[2]))  # fmt: skip
    folder = work / "base_series"
    folder.mkdir(parents=True, exist_ok=True)
    start = len(by_z) // 2
    for p in by_z[start:start + N_SLICES]:
        shutil.copy(p, folder / p.name)
    img = nib.load(real_data / "mr" / "brain1.nii.gz")
    x, y, z = NIFTI_CROP
    cropped = img.slicer[100:100 + x, 100:100 + y, 8:8 + z]
    out = nib.Nifti1Image(np.asarray(cropped.dataobj), cropped.affine, cropped.header)
    corpus = Corpus(folder, out.to_bytes(), read_scan(folder).array)
    (work / "base.nii").write_bytes(corpus.nifti)
    corpus.nifti_array = read_scan(work / "base.nii").array
    return corpus


# Mutations after which a successful read must give exactly the base input's voxels.
SAME_VOXELS = {"rows", "columns", "bits_allocated", "bits_stored", "high_bit", "pixel_representation", "samples",
               "frames", "pixel_spacing", "orientation", "transfer_syntax", "instance_number",
               "images_in_acquisition", "image_type", "position", "raw_element", "files", "series_uid", "modality",
               "sop_class", "vox_offset", "dim0", "pixdim", "qform_code", "sform_code", "quatern", "qoffset",
               "srow_x", "srow_z", "sizeof_hdr", "magic", "extension", "noext_stray", "link_loop"}  # fmt: skip


def _voxels_differ(label: str, scan, corpus: Corpus, path: Path) -> bool:
    kind, _, name = label.partition(":")
    if name in ("scl_slope", "scl_inter"):  # scaled: what nibabel reads (with float32 overflow allowed)
        with np.errstate(all="ignore"):
            expected = nib.load(path).get_fdata(dtype=np.float32)
        return not np.allclose(scan.array, expected, rtol=1e-6)
    base = corpus.nifti_array if kind.startswith("nifti") else corpus.dicom_array
    if name not in SAME_VOXELS or base is None or scan.array.shape != base.shape:
        return False  # another shape (a file removed, another series chosen) is judged by _sane alone
    return not np.array_equal(scan.array, base)


# ---------------------------------------------------------------- DICOM mutations
def assign(ds: Dataset, keyword: str, value) -> None:
    """``ds.keyword = value``, or the value's text as raw bytes when pydicom refuses it."""
    try:
        setattr(ds, keyword, value)
    except (ValueError, TypeError, OverflowError, struct.error):
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
        raw = text.encode() + (b" " if len(text) % 2 else b"")
        tag = pydicom.tag.Tag(pydicom.datadict.tag_for_keyword(keyword))
        ds[tag] = pydicom.dataelem.RawDataElement(tag, pydicom.datadict.dictionary_VR(tag), len(raw), raw,
                                                  0, False, True)  # fmt: skip


def _ds_set(keyword: str, values: list) -> Callable[[Dataset, np.random.Generator], None]:
    def mutate(ds: Dataset, rng: np.random.Generator) -> None:
        value = values[int(rng.integers(len(values)))]
        if value is None:
            if keyword in ds:
                del ds[keyword]
        else:
            assign(ds, keyword, value)
    return mutate


def _bad_lut(ds: Dataset, rng: np.random.Generator) -> None:
    item = Dataset()
    variant = int(rng.integers(5))
    if variant != 0:
        item.add_new(0x00283002, "US", [[0, 0, 16], [4096, 0, 13], [0], [2, 0, 16], [256, 0, 8]][variant])
    item.add_new(0x00283006, "US", [] if variant in (0, 1) else list(range(int(rng.integers(0, 5)))))
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = Sequence([item] if rng.random() < 0.9 else [])


def _pixel_data(ds: Dataset, rng: np.random.Generator) -> None:
    data = ds.PixelData
    choice = int(rng.integers(5))
    if choice == 0:
        ds.PixelData = data[: int(rng.integers(0, len(data)))]
    elif choice == 1:
        ds.PixelData = data + bytes(int(rng.integers(1, 4096)) * 2)
    elif choice == 2:
        del ds.PixelData
    elif choice == 3:
        ds.PixelData = bytes(rng.integers(0, 256, len(data), dtype=np.uint8))
    else:
        ds.PixelData = data[: len(data) - 512]


def _position(ds: Dataset, rng: np.random.Generator) -> None:
    pos = [float(v) for v in ds.ImagePositionPatient]
    choice = int(rng.integers(6))
    if choice == 0:
        pos[2] += float(rng.normal(0, 0.02))  # scanner jitter: must still read
    elif choice == 1:
        pos[2] += float(rng.choice([0.7, 1.5, 3.0, 1e3, -1e6]))
    elif choice == 2:
        pos[int(rng.integers(3))] = float("nan")
    elif choice == 3:
        pos[0] += float(rng.choice([0.5, 5.0]))
    elif choice == 4:
        assign(ds, "ImagePositionPatient", ["abc", "1", "2"] if rng.random() < 0.5 else pos[:2])
        return
    else:
        pos[2] = 1e300
    ds.ImagePositionPatient = pos


RAW_TAGS = [(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0100), (0x0028, 0x0101), (0x0028, 0x0103),
            (0x0020, 0x0013), (0x0028, 0x0030), (0x0020, 0x0032), (0x0020, 0x0037), (0x0028, 0x1053),
            (0x0020, 0x000E), (0x0008, 0x0060), (0x0008, 0x0016), (0x0028, 0x0002)]  # fmt: skip


def raw_element_damage(data: bytes, rng: np.random.Generator) -> bytes:
    """An element pydicom only fails on when its value is first used: an unknown VR, an odd
    length of a US element, a sequence VR over text (explicit VR little endian bytes)."""
    group, elem = RAW_TAGS[int(rng.integers(len(RAW_TAGS)))]
    at = data.find(struct.pack("<HH", group, elem), 132 + 200)
    if at < 0:
        return data
    arr = bytearray(data)
    if rng.random() < 0.6:
        arr[at + 4:at + 6] = [b"ZZ", b"SQ", b"OB", b"UN", b"DS", b"US", b"AT"][int(rng.integers(7))]
    else:
        length = struct.unpack("<H", bytes(arr[at + 6:at + 8]))[0]
        arr[at + 6:at + 8] = struct.pack("<H", max(0, length + int(rng.choice([-1, 1, 3]))))
    return bytes(arr)


DICOM_MUTATIONS: dict[str, Callable[[Dataset, np.random.Generator], None]] = {
    "rows": _ds_set("Rows", [0, 1, 255, 257, 4000, 65535, None]),
    "columns": _ds_set("Columns", [0, 255, 257, 4000, None]),
    "bits_allocated": _ds_set("BitsAllocated", [0, 1, 8, 12, 32, 64, None]),
    "bits_stored": _ds_set("BitsStored", [0, 1, 8, 12, 17, 40, None]),
    "high_bit": _ds_set("HighBit", [0, 7, 11, 16, 31]),
    "pixel_representation": _ds_set("PixelRepresentation", [1, 2, None]),
    "samples": _ds_set("SamplesPerPixel", [0, 3, None]),
    "photometric": _ds_set("PhotometricInterpretation", ["RGB", "PALETTE COLOR", "", "YBR_FULL"]),
    "frames": _ds_set("NumberOfFrames", [0, 2, 108, "x", -1]),
    "pixel_spacing": _ds_set("PixelSpacing", [[0, 0], [-1, 1], [1e9, 1e9], [1e-6, 1e-6], ["nan", "1"],
                                              ["1"], ["abc", "d"], None]),
    "orientation": _ds_set("ImageOrientationPatient", [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0],
                                                       [1, 0, 0, 0, 0.9, 0.1], [0, 1, 0, 1, 0, 0],
                                                       ["x"] * 6, None]),
    "slope": _ds_set("RescaleSlope", ["0", "inf", "abc", "1e308", "-1", None]),
    "intercept": _ds_set("RescaleIntercept", ["nan", "1e308", "x", None]),
    "transfer_syntax": None,  # file meta: see _mutate_dicom_file
    "sop_class": _ds_set("SOPClassUID", ["1.2.840.10008.5.1.4.1.1.481.3", "1.2.3", "", None]),
    "modality": _ds_set("Modality", ["SR", "SEG", "", "MR", None]),
    "series_uid": _ds_set("SeriesInstanceUID", ["1.2.3.999", "", None]),
    "instance_number": _ds_set("InstanceNumber", [0, -5, 999, "x", None]),
    "images_in_acquisition": _ds_set("ImagesInAcquisition", [N_SLICES + 3, 0, "x"]),
    "image_type": _ds_set("ImageType", [["ORIGINAL", "PRIMARY", "LOCALIZER"], ["DERIVED"]]),
    "modality_lut": _bad_lut,
    "pixel_data": _pixel_data,
    "position": _position,
    "raw_element": None,  # bytes: see raw_element_damage
}
SYNTAXES = ["1.2.3.4", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2\\1.2.840.10008.1.2.1", "", "1.2.840.10008.1.2.4.90", "garbage"]  # fmt: skip


def _mutate_dicom_file(path: Path, name: str, rng: np.random.Generator) -> None:
    ds = pydicom.dcmread(path)
    if name == "transfer_syntax":
        path.write_bytes(claiming_syntax(ds, SYNTAXES[int(rng.integers(len(SYNTAXES)))]))
        return
    if name == "raw_element":
        path.write_bytes(raw_element_damage(path.read_bytes(), rng))
        return
    DICOM_MUTATIONS[name](ds, rng)
    ds.save_as(path, enforce_file_format=False)


def claiming_syntax(ds: Dataset, syntax: str) -> bytes:
    """The file encoded explicit VR little endian while its file meta claims ``syntax``."""
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    old, new = b"1.2.840.10008.1.2.1\x00", syntax.encode() + (b"\x00" if len(syntax) % 2 else b"")
    at = data.find(b"\x02\x00\x10\x00UI")  # (0002,0010) UI, 2-byte length, value
    if at < 0 or data[at + 8: at + 8 + len(old)] != old:
        return data
    body = data[:at] + b"\x02\x00\x10\x00UI" + struct.pack("<H", len(new)) + new + data[at + 8 + len(old):]
    glen_at = 132 + 8  # (0002,0000) UL value, right after the preamble and DICM
    glen = struct.unpack("<I", body[glen_at:glen_at + 4])[0] + len(new) - len(old)
    return body[:glen_at] + struct.pack("<I", glen) + body[glen_at + 4:]


def _byte_damage(data: bytes, rng: np.random.Generator) -> bytes:
    arr = bytearray(data)
    choice = int(rng.integers(5))
    if choice == 0:
        return bytes(arr[: int(rng.integers(0, len(arr)))])
    if choice == 1:
        for pos in rng.integers(0, len(arr), int(rng.integers(1, 64))):
            arr[int(pos)] = int(rng.integers(256))
        return bytes(arr)
    if choice == 2:
        at = int(rng.integers(0, min(len(arr), 2048)))
        return bytes(arr[:at] + bytes(rng.integers(0, 256, int(rng.integers(1, 256)), dtype=np.uint8)) + arr[at:])
    if choice == 3:
        at = int(rng.integers(0, min(len(arr), 1500)))
        arr[at:at + 4] = b"\xff\xff\xff\xff"  # a huge length field
        return bytes(arr)
    at = int(rng.integers(0, len(arr)))
    arr[at:at + 4096] = bytes(min(4096, len(arr) - at))
    return bytes(arr)


def dicom_case(corpus: Corpus, work: Path, rng: np.random.Generator) -> tuple[str, Path]:
    folder = work / "series"
    shutil.copytree(corpus.dicom, folder)
    files = sorted(folder.iterdir())
    kind = str(rng.choice(["struct", "struct", "struct", "bytes", "files", "zip"]))
    if kind in ("struct", "zip"):
        name = str(rng.choice(list(DICOM_MUTATIONS)))
        targets = files if rng.random() < 0.3 else [files[int(rng.integers(len(files)))]]
        for p in targets:
            _mutate_dicom_file(p, name, rng)
        label = f"dicom:{name}"
    elif kind == "bytes":
        p = files[int(rng.integers(len(files)))]
        p.write_bytes(_byte_damage(p.read_bytes(), rng))
        label = "dicom:bytes"
    elif rng.random() < 0.5:
        choice = int(rng.integers(3))
        if choice == 0:
            files[int(rng.integers(len(files)))].unlink()
        elif choice == 1:
            shutil.copy(files[0], folder / "copy.dcm")
        else:
            (folder / "notes").write_bytes(b"not dicom at all")
        label = "dicom:files"
    else:
        return _tree_case(folder, files, work, rng)
    if kind == "zip":
        archive = work / "series.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, f"s/{p.name}")
        if rng.random() < 0.15:  # damage the archive itself (directory, local headers, streams)
            archive.write_bytes(_byte_damage(archive.read_bytes(), rng))
            return "zip:archive_bytes", archive
        return f"zip:{label.split(':')[1]}", archive
    return label, folder


def _tree_case(folder: Path, files: list[Path], work: Path, rng: np.random.Generator) -> tuple[str, Path]:
    """Folder layouts: PACS names (no extension) with one slice damaged or with stray files
    beside, a link back up the tree, the series nested deeper than the read limit allows."""
    choice = str(rng.choice(["noext_damaged", "noext_stray", "link_loop", "too_deep"]))
    if choice.startswith("noext"):
        for n, p in enumerate(files):
            p.rename(folder / f"IM{n:04d}")
        victim = folder / f"IM{int(rng.integers(len(files))):04d}"
        if choice == "noext_damaged":
            data = victim.read_bytes()
            victim.write_bytes(rng.bytes(len(data)) if rng.random() < 0.5 else b"\0" * 132 + data[132:])
        else:
            for name in ("DICOMDIR", "LOCKFILE", "AUTORUN.INF"):
                (folder / name).write_bytes(rng.bytes(int(rng.integers(16, 4000))))
    elif choice == "link_loop":
        (folder / "loop").symlink_to(".")
    else:
        deep = work / "deep"
        inner = deep.joinpath(*["d"] * (ReadLimits().max_depth + int(rng.integers(1, 4))))
        inner.parent.mkdir(parents=True)
        folder.rename(inner)
        return f"tree:{choice}", deep
    return f"tree:{choice}", folder


# ---------------------------------------------------------------- NIfTI mutations
def _hdr_set(field: str, values: list) -> Callable[[nib.Nifti1Header, np.random.Generator], None]:
    def mutate(hdr: nib.Nifti1Header, rng: np.random.Generator) -> None:
        value = values[int(rng.integers(len(values)))]
        arr = hdr.structarr[field]
        if arr.shape:
            idx = int(rng.integers(1, 4)) if arr.shape[0] >= 4 else int(rng.integers(arr.shape[0]))
            if field.startswith("srow"):
                idx = int(rng.integers(4))
            new = arr.copy()
            new[idx] = value
            hdr.structarr[field] = new
        else:
            hdr.structarr[field] = value
    return mutate


NIFTI_MUTATIONS = {
    "vox_offset": _hdr_set("vox_offset", [0, 100, 348, 351, np.inf, 1e20, -1, np.nan, 4e9]),
    "dim": _hdr_set("dim", [0, -1, 1, 30000, 2**15 - 1]),
    "dim0": _hdr_set("dim", [0, 8, 2, -3]),
    "datatype": _hdr_set("datatype", [0, 1, 128, 1536, 2048, 32, 2304, 7]),
    "bitpix": _hdr_set("bitpix", [0, 7, 64]),
    "pixdim": _hdr_set("pixdim", [0.0, -1.0, np.nan, np.inf, 1e30, 1e-9]),
    "qform_code": _hdr_set("qform_code", [0, 1, 5, -1]),
    "sform_code": _hdr_set("sform_code", [0, 1, 5, -1]),
    "quatern": _hdr_set("quatern_b", [2.0, np.nan, 0.9, np.inf]),
    "qoffset": _hdr_set("qoffset_x", [np.nan, np.inf, 1e30]),
    "srow_x": _hdr_set("srow_x", [0.0, np.nan, np.inf, 1e12, -1e12]),
    "srow_z": _hdr_set("srow_z", [0.0, 1e-9, np.nan]),
    "scl_slope": _hdr_set("scl_slope", [0.0, np.nan, np.inf, 1e38, -1.0]),
    "scl_inter": _hdr_set("scl_inter", [np.nan, np.inf, 1e38]),
    "sizeof_hdr": _hdr_set("sizeof_hdr", [0, 540, 1000]),
    "magic": _hdr_set("magic", [b"n+2", b"xxx", b"ni1"]),
}


def nifti_case(corpus: Corpus, work: Path, rng: np.random.Generator) -> tuple[str, Path]:
    data = corpus.nifti
    kind = str(rng.choice(["struct", "struct", "bytes", "tail", "extension"]))
    if kind == "extension":  # the extension flag set, then a garbage or hostile esize / ecode
        esize = int(rng.choice([0, 7, 16, 2**31 - 1, -16, 1 << 20]))
        ext = struct.pack("<4B", 1, 0, 0, 0) + struct.pack("<ii", esize, int(rng.integers(-5, 50)))
        hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(data[:348]), check=False)
        hdr.structarr["vox_offset"] = 352 + 16
        data = hdr.binaryblock + ext + bytes(8) + data[352:]
        label = "nifti:extension"
    elif kind == "struct":
        name = str(rng.choice(list(NIFTI_MUTATIONS)))
        hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(data[:348]), check=False)
        NIFTI_MUTATIONS[name](hdr, rng)
        data = hdr.binaryblock + data[348:]
        label = f"nifti:{name}"
    elif kind == "bytes":
        data = _byte_damage(data, rng)
        label = "nifti:bytes"
    else:
        data = data[: int(rng.integers(348, len(data)))] if rng.random() < 0.5 else data + bytes(1000)
        label = "nifti:tail"
    gz = rng.random() < 0.5
    path = work / ("case.nii.gz" if gz else "case.nii")
    if gz:
        packed = gzip.compress(data, compresslevel=1)
        if rng.random() < 0.2:  # damage the compressed stream itself
            packed = _byte_damage(packed, rng)
        path.write_bytes(packed)
    else:
        path.write_bytes(data)
    return ("nifti-gz:" if gz else "nifti:") + label.split(":")[1], path


# ---------------------------------------------------------------- running a case
def _sane(scan) -> str | None:
    """Why a successful read is not a correct one, or None."""
    if scan.array.ndim != 3 or min(scan.array.shape) < 2 or not np.isfinite(scan.array).all():
        return "array"
    spacing = np.asarray(scan.spacing)
    if not np.isfinite(scan.affine).all() or (spacing < 0.01).any() or (spacing > 100).any():
        return "geometry"
    return None


def run_case(make: Callable[[Corpus, Path, np.random.Generator], tuple[str, Path]], corpus: Corpus,
             work: Path, seed: int) -> tuple[str, str]:  # fmt: skip
    """(category, outcome) of one seeded case; ``work`` must be an empty folder."""
    rng = np.random.default_rng(seed)
    label, path = make(corpus, work, rng)
    outcome = "ok"
    for reader in (lambda p: read_scan(p, limits=FUZZ_LIMITS), lambda p: probe(p, FUZZ_LIMITS)):
        try:
            result = reader(path)
            if hasattr(result, "array"):
                why = _sane(result) or ("voxels" if _voxels_differ(label, result, corpus, path) else None)
                if why:
                    return label, f"bad_read:{why}"
        except MedsslError as err:
            if any(s in str(err).upper() for s in SENTINELS):
                return label, "phi_leak"
            if outcome == "ok":
                outcome = f"error:{err.code}"
        except RecursionError:
            return label, "untyped:RecursionError"
        except Exception as err:  # noqa: BLE001 - exactly what the fuzzing looks for
            return label, f"untyped:{err.__class__.__name__}"
    return label, outcome


def is_bug(outcome: str) -> bool:
    return not (outcome == "ok" or outcome.startswith("error:"))


def run_many(corpus: Corpus, work: Path, seeds: range) -> tuple[Counter, list[tuple[int, str, str]]]:
    """Alternates DICOM and NIfTI cases; returns counts per outcome and the failing cases."""
    counts: Counter = Counter()
    bugs = []
    for seed in seeds:
        case_dir = work / f"c{seed}"
        case_dir.mkdir()
        make = dicom_case if seed % 2 == 0 else nifti_case
        label, outcome = run_case(make, corpus, case_dir, seed)
        counts[outcome] += 1
        if is_bug(outcome):
            bugs.append((seed, label, outcome))
        shutil.rmtree(case_dir, ignore_errors=True)
    return counts, bugs
