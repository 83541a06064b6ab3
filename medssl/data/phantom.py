"""Procedural CT-like torso phantoms: the built-in data for the demo, tests and benchmarks.

``make_phantom(seed)`` draws one subject: body shape, organ positions and sizes, lesions,
noise, in-plane spacing (field of view) and slice thickness all vary with the seed, and the
same seed always gives the same subject. ``anatomy="varied"`` deforms the whole body by a
smooth random field, for the shape variation between real patients. ``appearance="multiphase"``
draws a contrast phase per subject (native, arterial, portal venous, delayed) with the organ
enhancement of that phase, kidney cortex and medulla, hepatic vessels and phase-dependent
lesion contrast, as a hospital archive mixes them; the anatomy and labels of a seed are the
same in both appearances. Images are integer HU stored as float32; labels follow ``LABELS``. Anatomy is laid out in RAS+ millimetres around the body centre and then
sampled on the voxel grid, so any grid orientation gives the same patient.

The affine has LPS axis codes (i towards patient left, j posterior, k superior), the grid
of an ordinary axial DICOM series, so a subject written as DICOM reads back on the same
grid as its NIfTI twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LABELS: dict[str, str] = {
    "0": "background",
    "1": "liver",
    "2": "kidney",
    "3": "spleen",
    "4": "lung",
    "5": "bone",
    "6": "lesion",
}
LIVER, KIDNEY, SPLEEN, LUNG, BONE, LESION = 1, 2, 3, 4, 5, 6
HU_MIN, HU_MAX = -1024, 3071
APPEARANCES = ("uniform", "multiphase")
ANATOMIES = ("regular", "varied")
# lesion radius (mm) drawn per lesion: small 4-15 (0.8-3 cm across, hard to see at 5 mm
# voxels), large 8-25 (1.6-5 cm, the metastases a staging CT shows)
LESION_RADII = {"small": (4.0, 15.0), "large": (8.0, 25.0)}
# image noise per dose: standard draws white noise of 6-22 HU standard deviation; low draws
# 30-60 HU with the fine grain of a reconstruction kernel (correlated over about a voxel), as
# in low-dose or thin-slice CT, where one voxel's value no longer tells the organ
DOSES = ("standard", "low")
_LOW_DOSE_SD = (30.0, 60.0)
PHASES = ("native", "arterial", "portal", "delayed")
# Mean HU ranges per contrast phase (abdominal CT literature values, rounded). Liver and
# spleen overlap in the portal and delayed phases, so only shape and position tell them apart.
_PHASE_HU: dict[str, dict[str, tuple[float, float]]] = {
    "native": {"liver": (55, 65), "spleen": (42, 50), "cortex": (30, 38), "medulla": (28, 35),
               "aorta": (35, 45), "vessel": (35, 45), "muscle": (40, 55)},
    "arterial": {"liver": (65, 80), "spleen": (90, 130), "cortex": (150, 220), "medulla": (50, 80),
                 "aorta": (250, 300), "vessel": (80, 120), "muscle": (45, 60)},
    "portal": {"liver": (100, 125), "spleen": (105, 130), "cortex": (150, 190), "medulla": (140, 180),
               "aorta": (140, 180), "vessel": (160, 200), "muscle": (50, 65)},
    "delayed": {"liver": (80, 95), "spleen": (80, 95), "cortex": (110, 140), "medulla": (120, 160),
                "aorta": (100, 130), "vessel": (100, 130), "muscle": (50, 60)},
}
# liver lesion contrast against the parenchyma, HU: (low, high) of |contrast|, sign
_LESION_CONTRAST = {"native": ((10, 30), -1), "arterial": ((30, 80), +1), "portal": ((30, 70), -1),
                    "delayed": ((15, 40), -1)}
DEFAULT_INPLANE = 96
SLICE_THICKNESSES = (1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass(frozen=True)
class _Grid:
    x: np.ndarray  # RAS+ mm of each voxel, broadcastable (X,1,1) / (1,Y,1) / (1,1,Z)
    y: np.ndarray
    z: np.ndarray


def phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                   centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxel -> RAS+ mm affine with LPS axis codes, grid centred on ``centre`` (mm)."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    half = (np.asarray(shape, dtype=float) - 1) / 2
    affine[:3, 3] = np.asarray(centre, dtype=float) - affine[:3, :3] @ half
    return affine


def _grid(shape: tuple[int, int, int], affine: np.ndarray) -> _Grid:
    # The affine is diagonal, so each world axis depends on one voxel axis only.
    axes = [affine[a, a] * np.arange(n, dtype=np.float32) + affine[a, 3] for a, n in enumerate(shape)]
    return _Grid(axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])


def _ellipsoid(g: _Grid, centre, radii, angle: float = 0.0) -> np.ndarray:
    """Boolean mask of an ellipsoid, rotated by ``angle`` (rad) about the z axis."""
    dx, dy, dz = g.x - centre[0], g.y - centre[1], g.z - centre[2]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (dz / radii[2]) ** 2 <= 1.0


def _ellipse_r(g: _Grid, a: float | np.ndarray, b: float | np.ndarray, cy: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius in the axial plane (1.0 on the ellipse)."""
    return np.sqrt((g.x / a) ** 2 + ((g.y - cy) / b) ** 2)


def _warped(g: _Grid, shape: tuple[int, int, int], rng: np.random.Generator, amplitude: float) -> _Grid:
    """The grid's world coordinates displaced by a smooth random field (``amplitude`` mm
    standard deviation per axis, varying over about a third of the volume): every structure
    drawn on it is deformed the same way, so organs change shape, size and place together."""
    fields = [_smooth_field(rng, shape, amplitude, coarse=(4, 4, 3)) for _ in range(3)]
    return _Grid(g.x + fields[0], g.y + fields[1], g.z + fields[2])


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], amplitude: float,
                  coarse: tuple[int, int, int] = (6, 6, 4)) -> np.ndarray:
    coarse = rng.normal(0.0, amplitude, size=coarse).astype(np.float32)
    return ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse.shape)], order=1)[
        : shape[0], : shape[1], : shape[2]
    ]


def _draw_spacing(rng: np.random.Generator, shape: tuple[int, int, int] | None, body_width: float):
    inplane = body_width * rng.uniform(1.08, 1.35)  # field of view across, mm
    thickness = float(rng.choice(SLICE_THICKNESSES))
    if shape is None:
        nz = int(np.clip(round(rng.uniform(150.0, 260.0) / thickness), 40, 80))
        shape = (DEFAULT_INPLANE, DEFAULT_INPLANE, nz)
    else:
        thickness = float(np.clip(rng.uniform(150.0, 260.0) / shape[2], 1.5, 5.0))
    return shape, (inplane / shape[0], inplane / shape[1], thickness)


def _lesions(rng, g: _Grid, host: np.ndarray, count: int, base_hu: float, image, label,
             contrast_of=None, radii_mm: tuple[float, float] = LESION_RADII["small"]) -> None:
    """Paints ``count`` ellipsoidal lesions centred inside ``host``, clipped to it.
    ``contrast_of()``, when given, replaces the drawn contrast (the main stream's draws are
    kept, so the geometry does not depend on the appearance)."""
    idx = np.flatnonzero(host)
    if idx.size == 0:
        return
    for flat in rng.choice(idx, size=min(count, idx.size), replace=False):
        i, j, k = np.unravel_index(flat, host.shape)
        centre = tuple(float(np.broadcast_to(a, host.shape)[i, j, k]) for a in (g.x, g.y, g.z))
        radius = rng.uniform(*radii_mm)
        radii = radius * rng.uniform(0.7, 1.3, size=3)
        mask = _ellipsoid(g, centre, radii, rng.uniform(0, np.pi)) & host
        contrast = rng.choice([-1.0, 1.0]) * rng.uniform(20.0, 60.0)
        if contrast_of is not None:
            contrast = contrast_of()
        image[mask] = base_hu + contrast
        label[mask] = LESION


def _paint_body(rng, g: _Grid, shape, a: float, b: float, image: np.ndarray, muscle_hu: float | None = None):
    """Subcutaneous fat, muscle wall (``muscle_hu`` for a contrast phase) and the
    abdominal/thoracic cavity's soft tissue. Returns the cavity mask and its semi-axes (mm)."""
    taper = 1.0 + 0.0008 * g.z  # a little wider towards the chest
    fat_mm = rng.uniform(8.0, 30.0)
    body = np.broadcast_to(_ellipse_r(g, a * taper, b * taper) <= 1.0, shape)
    muscle = np.broadcast_to(_ellipse_r(g, a * taper - fat_mm, b * taper - fat_mm) <= 1.0, shape)
    ca, cb = a - fat_mm - 12.0, b - fat_mm - 12.0
    cavity = np.broadcast_to(_ellipse_r(g, ca * taper, cb * taper) <= 1.0, shape)
    image[body] = rng.uniform(-110.0, -90.0)
    unenhanced = rng.uniform(40.0, 55.0)  # drawn either way: the anatomy's random stream stays the same
    image[muscle] = unenhanced if muscle_hu is None else muscle_hu
    soft = rng.uniform(15.0, 35.0) + _smooth_field(rng, shape, 25.0)  # bowel / visceral fat mix
    image[cavity] = soft[cavity]
    return cavity, ca, cb


def _paint_organs(rng, g: _Grid, cavity, ca: float, cb: float, dome: float, image, label,
                  phase_hu: dict[str, float] | None = None, rng2=None) -> None:
    """Lungs, liver, spleen, kidneys (ellipsoids inside the cavity) and the aorta (unlabelled).
    ``phase_hu`` (multiphase) replaces the organ values and adds kidney medulla and hepatic
    vessels, drawn from ``rng2`` so that the main stream, and so the anatomy, is unchanged."""
    jitter = lambda s=0.08: rng.uniform(1 - s, 1 + s)  # noqa: E731
    lung_r = lambda: (0.45 * ca * jitter(), 0.85 * cb * jitter(), 150.0)  # noqa: E731
    organ_r = lambda rx, ry, rz: (rx * jitter(), ry * jitter(), rz)  # noqa: E731
    organs = [  # (label, HU, centre, radii, angle about z), RAS+ mm; later entries paint over
        (LUNG, rng.uniform(-870, -830), (0.5 * ca, -0.05 * cb, dome + 125), lung_r(), 0.0),
        (LUNG, rng.uniform(-870, -830), (-0.5 * ca, -0.05 * cb, dome + 135), lung_r(), 0.0),
        (LIVER, rng.uniform(55, 68), (0.35 * ca, 0.05 * cb, dome - 60),
         organ_r(0.55 * ca, 0.72 * cb, rng.uniform(65, 85)), rng.uniform(-0.3, 0.3)),
        (SPLEEN, rng.uniform(42, 52), (-0.6 * ca, -0.35 * cb, dome - 50),
         organ_r(0.18 * ca, 0.32 * cb, rng.uniform(40, 55)), rng.uniform(-0.5, 0.5)),
        (KIDNEY, rng.uniform(25, 35), (0.38 * ca, -0.5 * cb, dome - rng.uniform(110, 135)),
         organ_r(24, 30, 52 * jitter()), rng.uniform(-0.4, 0.4)),
        (KIDNEY, rng.uniform(25, 35), (-0.38 * ca, -0.5 * cb, dome - rng.uniform(100, 125)),
         organ_r(24, 30, 52 * jitter()), rng.uniform(-0.4, 0.4)),
    ]
    names = {LIVER: "liver", SPLEEN: "spleen", KIDNEY: "cortex"}
    for lab, hu, centre, radii, angle in organs:
        centre = np.add(centre, rng.uniform(-6, 6, size=3))
        mask = _ellipsoid(g, centre, radii, angle) & cavity
        if phase_hu is not None and lab in names:
            hu = phase_hu[names[lab]] + rng2.uniform(-4, 4)
        image[mask] = hu
        label[mask] = lab
        if phase_hu is not None and lab == KIDNEY:  # medulla: the inner 60 % of the kidney
            inner = _ellipsoid(g, centre, tuple(0.6 * r for r in radii), angle) & mask
            image[inner] = phase_hu["medulla"] + rng2.uniform(-4, 4)
        if phase_hu is not None and lab == LIVER:
            _vessels(rng2, g, centre, radii, mask, phase_hu["vessel"], image)
    aorta = np.broadcast_to(np.hypot(g.x + 12.0, g.y + 0.45 * cb) <= 11.0, cavity.shape) & cavity
    aorta_hu = rng.uniform(35, 45)
    image[aorta & (label == 0)] = aorta_hu if phase_hu is None else phase_hu["aorta"]


def _vessels(rng, g: _Grid, centre, radii, liver: np.ndarray, hu: float, image: np.ndarray) -> None:
    """A few hepatic vessels: straight tubes (4-7 mm across) through the liver's centre
    region, labelled liver as reference segmentations do."""
    for _ in range(int(rng.integers(3, 6))):
        start = np.asarray(centre) + rng.uniform(-0.3, 0.3, size=3) * np.asarray(radii)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        r = rng.uniform(2.0, 3.5)
        px, py, pz = g.x - start[0], g.y - start[1], g.z - start[2]
        along = px * d[0] + py * d[1] + pz * d[2]
        dist2 = px**2 + py**2 + pz**2 - along**2
        image[(dist2 <= r * r) & liver] = hu


def phantom_phase(seed: int) -> str:
    """The contrast phase a multiphase phantom of ``seed`` is drawn in."""
    return PHASES[int(np.random.default_rng([seed, 1]).integers(len(PHASES)))]


_OPTIONS = {"appearance": APPEARANCES, "anatomy": ANATOMIES, "lesions": tuple(LESION_RADII), "dose": DOSES}


def check_options(error: type[Exception] = ValueError, **options: str) -> None:
    """Each of ``appearance``, ``anatomy``, ``lesions``, ``dose`` given is one of its values,
    else ``error`` naming the option and its choices."""
    for name, value in options.items():
        allowed = _OPTIONS[name]
        if value not in allowed:
            raise error(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    appearance: str = "uniform",
    anatomy: str = "regular",
    lesions: str = "small",
    dose: str = "standard",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CT-like torso subject.

    Returns ``(image, label, affine)``: image (X, Y, Z) float32 integer HU in [-1024, 3071],
    label (X, Y, Z) uint8 per ``LABELS``, affine (4, 4) voxel -> RAS+ mm. ``shape`` defaults
    to 96 x 96 x (40..80) and ``spacing`` to a field of view drawn around the body.
    ``appearance``: "uniform" (one unenhanced look) or "multiphase" (see the module).
    ``anatomy``: "regular" or "varied" (the whole body deformed by a smooth random field of
    15 mm standard deviation, so organ shape, size and position vary as between patients).
    ``lesions``: "small" or "large" (``LESION_RADII``; the same count, places and contrast).
    ``dose``: "standard" or "low" (``DOSES``; the same subject under stronger, grainier noise)."""
    check_options(appearance=appearance, anatomy=anatomy, lesions=lesions, dose=dose)
    rng = np.random.default_rng(seed)
    rng2 = np.random.default_rng([seed, 1])  # the multiphase draws; first draw = phantom_phase
    phase = PHASES[int(rng2.integers(len(PHASES)))]
    phase_hu = ({k: float(rng2.uniform(*v)) for k, v in _PHASE_HU[phase].items()}
                if appearance == "multiphase" else None)
    a, b = rng.uniform(125.0, 170.0), rng.uniform(90.0, 120.0)  # body semi-axes LR, AP (mm)
    drawn_shape, drawn_spacing = _draw_spacing(rng, shape, 2 * a)
    shape = tuple(int(n) for n in (shape or drawn_shape))  # type: ignore[assignment]
    # rounded so that DICOM's decimal strings hold the geometry exactly
    spacing = tuple(round(float(s), 4) for s in (spacing or drawn_spacing))  # type: ignore[assignment]
    dome = rng.uniform(10.0, 40.0)  # z of the diaphragm dome; kidneys below, lungs above
    centre_z = dome - 35.0 + rng.uniform(-0.15, 0.15) * shape[2] * spacing[2]  # slab shown
    centre = np.round([rng.uniform(-10, 10), rng.uniform(-10, 10), centre_z], 2)
    affine = phantom_affine(shape, spacing, tuple(centre))
    g = _grid(shape, affine)
    if anatomy == "varied":
        g = _warped(g, shape, np.random.default_rng([seed, 2]), 15.0)

    image = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    cavity, ca, cb = _paint_body(rng, g, shape, a, b, image, phase_hu["muscle"] if phase_hu else None)
    _paint_organs(rng, g, cavity, ca, cb, dome, image, label, phase_hu, rng2)
    bone = _bones(rng, g, shape, ca, cb, dome)
    image[bone] = rng.uniform(650.0, 750.0) + 150.0 * (rng.random(int(bone.sum()), dtype=np.float32) - 0.5)
    label[bone] = BONE

    liver_base = float(np.mean(image[label == LIVER])) if (label == LIVER).any() else 60.0
    liver_contrast = cyst_contrast = None
    if phase_hu is not None:
        (lo, hi), sign = _LESION_CONTRAST[phase]
        liver_contrast = lambda: sign * rng2.uniform(lo, hi)  # noqa: E731
        cyst_contrast = lambda: rng2.uniform(0.0, 20.0) - 40.0  # non-enhancing cysts, 0-20 HU  # noqa: E731
    radii = LESION_RADII[lesions]
    _lesions(rng, g, label == LIVER, int(rng.integers(1, 5)), liver_base, image, label, liver_contrast, radii)
    _lesions(rng, g, (label == KIDNEY) | (label == SPLEEN), int(rng.integers(0, 3)), 40.0, image, label,
             cyst_contrast, radii)

    image = ndimage.gaussian_filter(image, sigma=0.6, truncate=2.0)  # partial-volume blur
    if dose == "low":  # own draws, so the anatomy stays that of the seed
        rng3 = np.random.default_rng([seed, 3])
        grain = ndimage.gaussian_filter(rng3.normal(0.0, 1.0, size=shape).astype(np.float32), sigma=0.7)
        image += grain * np.float32(rng3.uniform(*_LOW_DOSE_SD) / max(float(grain.std()), 1e-6))
    else:
        image += rng.normal(0.0, rng.uniform(6.0, 22.0), size=shape).astype(np.float32)
    image = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.float32)
    return image, label, affine


def _bones(rng, g: _Grid, shape, ca: float, cb: float, dome: float) -> np.ndarray:
    """Vertebral column (with discs and a spinous process) and a rib cage above the kidneys."""
    sy = -cb - 5.0  # vertebral body centre, just behind the cavity
    pitch = rng.uniform(26.0, 32.0)
    disc = np.abs(((g.z - rng.uniform(0, pitch)) % pitch) - pitch / 2) < 3.0
    body = (np.hypot(g.x, g.y - sy) <= rng.uniform(16.0, 21.0)) & ~disc
    process = (np.abs(g.x) <= 5.0) & (g.y < sy - 10.0) & (g.y > sy - 45.0) & ~disc
    ring = _ellipse_r(g, ca + 6.0, cb + 6.0)
    width = 7.0 / min(ca, cb)
    band = np.sin(2 * np.pi * (g.z - rng.uniform(0, 30.0)) / rng.uniform(24.0, 30.0)) > 0.3
    front = (g.y > 0.55 * cb) & (np.abs(g.x) < 0.3 * ca)  # no ribs over the sternum gap
    ribs = (np.abs(ring - 1.0) <= width / 2) & band & (g.z > dome - 70.0) & ~front
    return np.broadcast_to(body | process | ribs, shape)


def make_sphere_phantom(
    radius_mm: float,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    shape: tuple[int, int, int] = (48, 48, 48),
    inside_hu: float = 60.0,
    outside_hu: float = -100.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noiseless sphere of known radius at the grid centre, for volume checks.

    Returns ``(image, label, affine)`` as ``make_phantom``; label is 1 inside the sphere.
    Its exact volume is ``4/3 pi r^3`` mm^3; the voxelised one converges to it as spacing
    shrinks (``label.sum() * prod(spacing)``)."""
    affine = phantom_affine(shape, spacing)
    g = _grid(shape, affine)
    inside = np.broadcast_to(g.x**2 + g.y**2 + g.z**2 <= radius_mm**2, shape)
    image = np.where(inside, inside_hu, outside_hu).astype(np.float32)
    return image, inside.astype(np.uint8), affine
