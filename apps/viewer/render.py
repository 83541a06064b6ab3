"""Turn a canonical (RAS) volume into the three screen views a radiologist expects.

Volumes here are indexed ``vol[i, j, k]`` with +i = patient Right, +j = Anterior,
+k = Superior (``medssl.io.to_canonical``). Screen conventions (radiological, as OHIF and
3D Slicer show them):

    axial    rows top->bottom = A->P, columns left->right = R->L
    coronal  rows top->bottom = S->I, columns left->right = R->L
    sagittal rows top->bottom = S->I, columns left->right = A->P

Every view is resampled to square pixels so anisotropic voxels keep their physical aspect.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
# (top, bottom, left, right) letters of each view.
LETTERS: dict[str, tuple[str, str, str, str]] = {
    "axial": ("A", "P", "R", "L"),
    "coronal": ("S", "I", "R", "L"),
    "sagittal": ("S", "I", "A", "P"),
}
# Voxel axis a view's slider moves along.
PLANE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}

# Distinct label colours (label 1 gets the first); Slicer-like anatomy tones.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)


def label_color(label: int) -> tuple[int, int, int]:
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def extract_slice(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D view of ``vol`` (X, Y, Z canonical) at ``index`` along the plane's axis, in screen
    order (rows, cols). Returns a view (no copy) where numpy allows."""
    if plane == "axial":
        return vol[::-1, ::-1, index].T
    if plane == "coronal":
        return vol[::-1, index, ::-1].T
    if plane == "sagittal":
        return vol[index, ::-1, ::-1].T
    raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")


def pixel_spacing(spacing: Sequence[float], plane: str) -> tuple[float, float]:
    """(row mm, column mm) of a view's pixels, from the volume's (x, y, z) spacing."""
    sx, sy, sz = (float(s) for s in spacing)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def crosshair_pixel(plane: str, ijk: Sequence[int], shape: Sequence[int]) -> tuple[int, int]:
    """(row, col) in the extracted slice of the voxel ``ijk``."""
    i, j, k = (int(v) for v in ijk)
    nx, ny, nz = (int(s) for s in shape[:3])
    return {
        "axial": (ny - 1 - j, nx - 1 - i),
        "coronal": (nz - 1 - k, nx - 1 - i),
        "sagittal": (nz - 1 - k, ny - 1 - j),
    }[plane]


def display_size(rows: int, cols: int, row_mm: float, col_mm: float, target: int) -> tuple[int, int]:
    """(height, width) in screen pixels: square pixels, longest side ``target``."""
    height_mm, width_mm = rows * row_mm, cols * col_mm
    scale = target / max(height_mm, width_mm)
    return max(1, round(height_mm * scale)), max(1, round(width_mm * scale))


def apply_window(img: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map intensities to uint8 grey with a window (width, level), as DICOM VOI LUT does."""
    width = max(float(width), 1e-6)
    lo = float(level) - width / 2.0
    out = (np.asarray(img, dtype=np.float32) - lo) * (255.0 / width)
    return np.clip(out, 0.0, 255.0, out=out).astype(np.uint8)


def blend_labels(
    rgb: np.ndarray,
    label: np.ndarray,
    opacity: float,
    visible: Iterable[int] | None = None,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Alpha-blend label colours onto ``rgb`` (H, W, 3 uint8); ``label`` (H, W) integers.
    Only labels in ``visible`` (all non-zero when None) are drawn."""
    present = [int(v) for v in np.unique(label) if v != 0]
    shown = present if visible is None else [v for v in present if v in set(visible)]
    if not shown or opacity <= 0:
        return rgb
    out = rgb.astype(np.float32)
    for value in shown:
        mask = label == value
        color = np.asarray((colors or {}).get(value, label_color(value)), dtype=np.float32)
        out[mask] = (1.0 - opacity) * out[mask] + opacity * color
    return out.astype(np.uint8)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw_letters(draw: ImageDraw.ImageDraw, plane: str, height: int, width: int) -> None:
    top, bottom, left, right = LETTERS[plane]
    font = _font(max(14, max(height, width) // 24))
    style = {"font": font, "fill": (255, 220, 0), "stroke_width": 2, "stroke_fill": (0, 0, 0)}
    pad = 4
    draw.text((width / 2, pad), top, anchor="mt", **style)
    draw.text((width / 2, height - pad), bottom, anchor="mb", **style)
    draw.text((pad, height / 2), left, anchor="lm", **style)
    draw.text((width - pad, height / 2), right, anchor="rm", **style)


def render_view(
    vol: np.ndarray,
    plane: str,
    ijk: Sequence[int],
    spacing: Sequence[float],
    window: tuple[float, float],
    *,
    label: np.ndarray | None = None,
    opacity: float = 0.4,
    visible: Iterable[int] | None = None,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
    size: int = 384,
    crosshair: bool = True,
    letters: bool = True,
) -> Image.Image:
    """One screen view through the crosshair ``ijk``: windowed, square pixels, optional label
    overlay, crosshair lines and orientation letters. ``window`` is (width, level)."""
    index = int(ijk[PLANE_AXIS[plane]])
    src = extract_slice(vol, plane, index)
    rows, cols = src.shape
    height, width = display_size(rows, cols, *pixel_spacing(spacing, plane), target=size)
    grey = Image.fromarray(np.ascontiguousarray(apply_window(src, *window)), mode="L")
    rgb = np.asarray(grey.resize((width, height), Image.Resampling.BILINEAR).convert("RGB"))
    if label is not None:
        lab = np.ascontiguousarray(extract_slice(label, plane, index), dtype=np.uint8)
        lab_big = np.asarray(Image.fromarray(lab, mode="L").resize((width, height), Image.Resampling.NEAREST))
        rgb = blend_labels(rgb, lab_big, opacity, visible, colors)
    image = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(image)
    if crosshair:
        r, c = crosshair_pixel(plane, ijk, vol.shape)
        y, x = (r + 0.5) * height / rows, (c + 0.5) * width / cols
        draw.line([(0, y), (width, y)], fill=(0, 200, 255), width=1)
        draw.line([(x, 0), (x, height)], fill=(0, 200, 255), width=1)
    if letters:
        _draw_letters(draw, plane, height, width)
    return image


def to_png(image: Image.Image) -> bytes:
    """Small, fast PNG (compression level 1: encoding time matters more than size here)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def snapshot(images: Sequence[Image.Image], titles: Sequence[str], gap: int = 8) -> bytes:
    """The views side by side on black with a caption each, as one PNG."""
    caption_h = 22
    height = max(im.height for im in images) + caption_h
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    sheet = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for im, title in zip(images, titles):
        draw.text((x + 4, 3), title, fill=(230, 230, 230), font=_font(14))
        sheet.paste(im, (x, caption_h))
        x += im.width + gap
    return to_png(sheet)
