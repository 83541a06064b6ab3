"""``CASE.png``: axial, coronal and sagittal slices through the segmented structures with the
label map overlaid. Views are drawn in RAS+ (neurological convention: patient right on
the image's right, anterior and superior up), whatever the stored orientation."""

from __future__ import annotations

import io

import numpy as np

from medssl.atomic import atomic_write_bytes


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


def preview_png(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, modality: str = "CT") -> bytes:
    """PNG bytes: three orthogonal mid-slices (through the labelled centroid when any)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    img, spacing = _canonical(np.asarray(image, dtype=np.float32), affine)
    lab = _canonical(label, affine)[0] if label is not None else np.zeros(img.shape, np.uint8)
    fg = np.argwhere(lab > 0)
    centre = fg.mean(0).round().astype(int) if len(fg) else np.array(img.shape) // 2
    img = _window(img, modality)
    views = [  # (2D image with rows = up axis, columns = right axis), aspect
        (img[:, :, centre[2]].T, lab[:, :, centre[2]].T, spacing[1] / spacing[0], "axial"),
        (img[:, centre[1], :].T, lab[:, centre[1], :].T, spacing[2] / spacing[0], "coronal"),
        (img[centre[0], :, :].T, lab[centre[0], :, :].T, spacing[2] / spacing[1], "sagittal"),
    ]
    fig = Figure(figsize=(9, 3.3), dpi=80)
    n_labels = max(int(lab.max(initial=0)), 1)
    for ax_i, (im, lb, aspect, title) in enumerate(views):
        ax = fig.add_subplot(1, 3, ax_i + 1)
        ax.imshow(im, cmap="gray", origin="lower", aspect=aspect, vmin=0, vmax=1)
        masked = np.ma.masked_where(lb == 0, lb)
        ax.imshow(masked, cmap="tab10", origin="lower", aspect=aspect, alpha=0.45, vmin=0, vmax=max(n_labels, 9))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_preview(path, image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, modality: str = "CT"):
    return atomic_write_bytes(path, preview_png(image, label, affine, modality))
