"""``CASE.png``: axial, coronal and sagittal slices through the segmented structures with the
label map overlaid, drawn exactly as the viewer draws them (radiological convention, as OHIF
and 3D Slicer show them), whatever the stored orientation:

    axial    rows top->bottom = A->P, columns left->right = R->L
    coronal  rows top->bottom = S->I, columns left->right = R->L
    sagittal rows top->bottom = S->I, columns left->right = A->P

Each view carries its orientation letters and a scale bar in mm; each slice is the one of
its plane holding the most labelled voxels, so every view cuts through the result."""

from __future__ import annotations

import io
import math

import numpy as np

from medssl.atomic import atomic_write_bytes

PLANES = ("axial", "coronal", "sagittal")
LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Array reordered to RAS axes (nibabel orientation codes), plus its spacing."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(array, ornt)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape[:3])  # of the reordered array
    spacing = np.linalg.norm(ras_affine[:3, :3], axis=0)
    return out, spacing


def _window(image: np.ndarray, modality: str) -> np.ndarray:
    if modality == "CT":
        lo, hi = 40 - 200, 40 + 200  # soft tissue 400/40
    else:
        lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0, 1)
    return np.clip((image - lo) / max(float(hi - lo), 1e-6), 0, 1)


def screen_slice(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D view of a canonical (X, Y, Z) RAS volume in screen order (rows, cols), the
    viewer's ``apps.viewer.render.extract_slice``."""
    if plane == "axial":
        return vol[::-1, ::-1, index].T
    if plane == "coronal":
        return vol[::-1, index, ::-1].T
    return vol[index, ::-1, ::-1].T


def pixel_mm(spacing: np.ndarray, plane: str) -> tuple[float, float]:
    """(row mm, column mm) of a view's pixels."""
    sx, sy, sz = (float(s) for s in spacing)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def busiest_slices(label: np.ndarray) -> tuple[int, int, int]:
    """(i, j, k): for each axis the slice with the most labelled voxels (the middle when
    none), so each plane's view cuts through the predicted structure."""
    fg = np.asarray(label) > 0
    out = []
    for axis in range(3):
        counts = fg.sum(axis=tuple(a for a in range(3) if a != axis))
        out.append(int(np.argmax(counts)) if counts.any() else fg.shape[axis] // 2)
    return out[0], out[1], out[2]


def scale_bar_mm(width_mm: float) -> float:
    """A round length (1, 2 or 5 x 10^n mm) of at most a quarter of the view's width."""
    target = max(width_mm / 4.0, 1e-3)
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def preview_png(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, modality: str = "CT") -> bytes:
    """PNG bytes: three orthogonal slices through the labelled structures (the volume's middle
    when nothing is labelled), in the viewer's orientation, with letters and a scale bar."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    img, spacing = _canonical(np.asarray(image, dtype=np.float32), affine)
    lab = _canonical(np.asarray(label), affine)[0] if label is not None else np.zeros(img.shape, np.uint8)
    centre = busiest_slices(lab)
    img = _window(img, modality)
    fig = Figure(figsize=(9, 3.5), dpi=80, facecolor="black")
    n_labels = max(int(lab.max(initial=0)), 1)
    for n, plane in enumerate(PLANES):
        ax = fig.add_subplot(1, 3, n + 1)
        index = centre[PLANE_AXIS[plane]]
        im, lb = screen_slice(img, plane, index), screen_slice(lab, plane, index)
        row_mm, col_mm = pixel_mm(spacing, plane)
        height, width = im.shape[0] * row_mm, im.shape[1] * col_mm
        extent = (0.0, width, height, 0.0)  # millimetres: square pixels, physical aspect
        ax.imshow(im, cmap="gray", extent=extent, vmin=0, vmax=1, interpolation="bilinear")
        ax.imshow(np.ma.masked_where(lb == 0, lb), cmap="tab10", extent=extent, alpha=0.45, vmin=0,
                  vmax=max(n_labels, 9), interpolation="nearest")  # fmt: skip
        _decorate(ax, plane, index, img.shape[PLANE_AXIS[plane]], width, height)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, facecolor="black")
    return buf.getvalue()


def _decorate(ax, plane: str, index: int, n: int, width: float, height: float) -> None:
    """Orientation letters on the four sides, a scale bar, the 1-based slice number."""
    top, bottom, left, right = LETTERS[plane]
    style = {"color": (1.0, 0.86, 0.0), "fontsize": 10, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    bar = scale_bar_mm(width)
    x0, y = 0.05 * width, 0.93 * height
    ax.plot([x0, x0 + bar], [y, y], color="white", linewidth=2.5, solid_capstyle="butt")
    ax.text(x0 + bar / 2, y - 0.02 * height, f"{bar:g} mm", color="white", fontsize=8, ha="center", va="bottom")
    ax.set_title(f"{plane} {index + 1}/{n}", fontsize=9, color="white")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")


def write_preview(path, image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, modality: str = "CT"):
    return atomic_write_bytes(path, preview_png(image, label, affine, modality))
