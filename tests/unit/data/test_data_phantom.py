"""Phantom generator: determinism, HU per tissue, label/image consistency, variation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medssl.data.phantom import BONE, KIDNEY, LABELS, LESION, LIVER, LUNG, SPLEEN, make_phantom, make_sphere_phantom

SHAPE = (40, 40, 24)


@pytest.fixture(scope="module")
def subject():
    return make_phantom(7, shape=SHAPE)


def test_same_seed_same_subject(subject):
    image, label, affine = make_phantom(7, shape=SHAPE)
    assert np.array_equal(image, subject[0])
    assert np.array_equal(label, subject[1])
    assert np.array_equal(affine, subject[2])


def test_types_shapes_and_integer_hu(subject):
    image, label, affine = subject
    assert image.shape == label.shape == SHAPE
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert affine.shape == (4, 4)
    assert np.array_equal(image, np.rint(image))
    assert image.min() >= -1024 and image.max() <= 3071
    assert set(np.unique(label)) <= {int(k) for k in LABELS}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tissue_hu_is_plausible(seed):
    image, label, _ = make_phantom(seed, shape=(48, 48, 32))
    inner = lambda m: ndimage.binary_erosion(m, iterations=1)  # noqa: E731 - away from blurred edges
    expected = {LIVER: (40, 80), SPLEEN: (30, 65), KIDNEY: (15, 50), LUNG: (-900, -750), BONE: (350, 1000)}
    for lab, (lo, hi) in expected.items():
        mask = inner(label == lab)
        if mask.sum() < 10:
            continue
        median = float(np.median(image[mask]))
        assert lo <= median <= hi, f"{LABELS[str(lab)]} median {median} HU outside [{lo}, {hi}]"
    outside = image[:2, :2, :]  # grid corners are air
    assert np.median(outside) < -950
    body = (label == 0) & (image > -500)
    assert -150 < np.median(image[body]) < 80  # fat, muscle, soft tissue


def test_every_subject_has_liver_and_labels_match_image():
    for seed in range(4):
        image, label, _ = make_phantom(seed, shape=(32, 32, 20))
        assert (label == LIVER).sum() > 50
        assert np.all(image[label == LUNG] < -300)
        assert np.all(label[image < -980] == 0)  # air is never labelled


def test_lesions_differ_from_their_organ():
    seen = 0
    for seed in range(6):
        image, label, _ = make_phantom(seed)  # default size: lesions span several voxels
        lesion = ndimage.binary_erosion(label == LESION)
        liver = ndimage.binary_erosion(label == LIVER)
        if lesion.sum() >= 5 and liver.sum() >= 5:
            seen += 1
            assert abs(np.median(image[lesion]) - np.median(image[liver])) > 10
    assert seen >= 2


def test_subjects_vary_between_seeds():
    a_img, a_lab, a_aff = make_phantom(0)
    b_img, b_lab, b_aff = make_phantom(1)
    assert not np.array_equal(a_lab, b_lab) or a_img.shape != b_img.shape
    spacings = {tuple(np.round(np.abs(np.diag(make_phantom(s, shape=(16, 16, 8))[2])[:3]), 3)) for s in range(6)}
    assert len(spacings) >= 4  # field of view and slice thickness vary
    liver = [int((make_phantom(s, shape=(24, 24, 16))[1] == LIVER).sum()) for s in range(4)]
    assert len(set(liver)) == 4


def test_default_size_and_affine_axis_codes():
    import nibabel as nib

    image, _, affine = make_phantom(3)
    assert image.shape[:2] == (96, 96) and 40 <= image.shape[2] <= 80
    assert "".join(nib.aff2axcodes(affine)) == "LPS"
    assert 1.5 <= affine[2, 2] <= 5.0


def test_liver_on_patient_right():
    image, label, affine = make_phantom(4, shape=(48, 48, 32))
    i, j, k = np.nonzero(label == LIVER)
    world = affine @ np.stack([i, j, k, np.ones_like(i)])
    assert world[0].mean() > 0  # RAS+: x > 0 is the patient's right


def test_sphere_phantom_volume():
    radius, spacing = 10.0, (1.0, 1.0, 1.0)
    image, label, affine = make_sphere_phantom(radius, spacing, shape=(32, 32, 32))
    volume = label.sum() * np.prod(spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.03)
    assert set(np.unique(image)) == {-100.0, 60.0}
    assert np.allclose(np.abs(np.diag(affine)[:3]), spacing)


def test_multiphase_keeps_the_anatomy_and_changes_only_the_look():
    for seed in (0, 5):
        uni_image, uni_label, uni_affine = make_phantom(seed, shape=(48, 48, 24))
        mp_image, mp_label, mp_affine = make_phantom(seed, shape=(48, 48, 24), appearance="multiphase")
        np.testing.assert_array_equal(uni_label, mp_label)
        np.testing.assert_array_equal(uni_affine, mp_affine)
        assert not np.array_equal(uni_image, mp_image)
    with pytest.raises(ValueError, match="appearance"):
        make_phantom(0, shape=(16, 16, 8), appearance="contrast")


def _organ_hu(seed: int) -> dict[str, float]:
    image, label, _ = make_phantom(seed, shape=(64, 64, 40), appearance="multiphase")
    # eroded masks: the organ's own value, away from partial-volume edges and lesions
    core = lambda k: ndimage.binary_erosion(label == k, iterations=2)  # noqa: E731
    return {"liver": float(np.median(image[core(LIVER)])), "kidney": float(np.percentile(image[core(KIDNEY)], 90)),
            "spleen": float(np.median(image[core(SPLEEN)]))}


def test_multiphase_enhancement_follows_the_phase():
    from medssl.data.phantom import PHASES, phantom_phase

    by_phase: dict[str, list[dict[str, float]]] = {}
    for seed in range(40):
        by_phase.setdefault(phantom_phase(seed), []).append(_organ_hu(seed))
    assert set(by_phase) == set(PHASES)  # 40 subjects draw every phase
    mean = {p: {k: np.mean([v[k] for v in vals]) for k in vals[0]} for p, vals in by_phase.items()}
    assert mean["native"]["liver"] < 70 < mean["portal"]["liver"] - 25
    assert mean["native"]["kidney"] < 60 and mean["arterial"]["kidney"] > 120  # cortex enhances
    assert mean["arterial"]["spleen"] > mean["arterial"]["liver"] - 5
    assert abs(mean["portal"]["liver"] - mean["portal"]["spleen"]) < 20  # only shape and place separate them


def test_multiphase_cohort_records_each_phase(tmp_path):
    import json

    from medssl.data.phantom_io import synth_cohort
    from medssl.errors import ConfigError

    synth_cohort(tmp_path / "c", 3, fmt="nifti", shape=(24, 24, 12), appearance="multiphase")
    entries = json.loads((tmp_path / "c" / "dataset.json").read_text())["training"]
    assert all(e["phase"] in ("native", "arterial", "portal", "delayed") for e in entries)
    with pytest.raises(ConfigError, match="appearance"):
        synth_cohort(tmp_path / "d", 1, appearance="dark")


def test_varied_anatomy_deforms_the_body_reproducibly():
    regular = make_phantom(3, shape=(48, 48, 24))
    varied = make_phantom(3, shape=(48, 48, 24), anatomy="varied")
    again = make_phantom(3, shape=(48, 48, 24), anatomy="varied")
    np.testing.assert_array_equal(varied[1], again[1])
    np.testing.assert_array_equal(regular[2], varied[2])  # same grid, other shapes
    changed = np.mean(regular[1] != varied[1])
    assert 0.02 < changed < 0.5
    for k in (LIVER, KIDNEY, SPLEEN):
        assert (varied[1] == k).sum() > 0.3 * (regular[1] == k).sum()  # deformed, not destroyed
    with pytest.raises(ValueError, match="anatomy"):
        make_phantom(0, shape=(16, 16, 8), anatomy="alien")


def test_large_lesions_are_bigger_in_the_same_places_and_nothing_else_moves():
    small_img, small, _ = make_phantom(1, shape=(48, 48, 32), appearance="multiphase")
    large_img, large, _ = make_phantom(1, shape=(48, 48, 32), appearance="multiphase", lesions="large")
    assert (large == LESION).sum() > 2 * (small == LESION).sum() > 0
    assert ((small == LESION) & (large == LESION)).sum() == (small == LESION).sum()  # grown around the same centres
    others = (small != LESION) & (large != LESION)
    assert (small[others] == large[others]).all()
    with pytest.raises(ValueError, match="lesions must be one of small, large"):
        make_phantom(1, shape=(16, 16, 8), lesions="huge")


def test_low_dose_is_the_same_subject_under_stronger_noise():
    std_img, std_lab, std_aff = make_phantom(2, shape=(48, 48, 32), appearance="multiphase")
    low_img, low_lab, low_aff = make_phantom(2, shape=(48, 48, 32), appearance="multiphase", dose="low")
    assert (std_lab == low_lab).all() and np.allclose(std_aff, low_aff)
    liver = std_lab == LIVER
    assert abs(float(std_img[liver].mean()) - float(low_img[liver].mean())) < 10  # same enhancement
    assert low_img[liver].std() > 1.5 * std_img[liver].std()
    # the grain: neighbouring voxels' noise correlates, unlike the standard white noise
    resid = low_img - std_img
    inner = liver[:-1] & liver[1:]
    corr = np.corrcoef(resid[:-1][inner], resid[1:][inner])[0, 1]
    assert corr > 0.2
    with pytest.raises(ValueError, match="dose must be one of standard, low"):
        make_phantom(1, shape=(16, 16, 8), dose="ultra")
