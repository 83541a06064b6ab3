"""CASE.png follows the viewer: same screen orientation in every plane (sagittal included),
letters and a scale bar, and each plane cut through the labelled structure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from apps.viewer.render import PLANES, extract_slice
from medssl.inference.preview import busiest_slices, preview_png, scale_bar_mm, screen_slice
from tests.e2e.viewer_data import PHANTOM_AFFINE, make_phantom


@pytest.mark.parametrize("plane", PLANES)
def test_preview_views_are_the_viewers_views(plane):
    vol = np.random.default_rng(0).normal(size=(7, 8, 9)).astype(np.float32)
    for index in (0, 3, 6):
        np.testing.assert_array_equal(screen_slice(vol, plane, index), extract_slice(vol, plane, index))


def test_slices_cut_through_the_structure_even_when_its_centroid_is_empty():
    label = np.zeros((30, 30, 30), np.uint8)
    label[2:6, 2:6, 2:6] = 1  # two blobs: their centroid (14.5, ...) lies between them
    label[24:29, 24:29, 24:29] = 1
    i, j, k = busiest_slices(label)
    assert label[i].any() and label[:, j].any() and label[:, :, k].any()
    assert busiest_slices(np.zeros((4, 6, 8))) == (2, 3, 4)


def test_scale_bar_is_a_round_length_under_a_quarter_of_the_width():
    assert scale_bar_mm(300.0) == 50.0 and scale_bar_mm(100.0) == 20.0 and scale_bar_mm(41.0) == 10.0
    assert scale_bar_mm(3.0) == 0.5


def test_preview_png_draws_the_label_in_every_view():
    image, label = make_phantom()
    png = Image.open(io.BytesIO(preview_png(image, label, PHANTOM_AFFINE, "CT"))).convert("RGB")
    rgb = np.asarray(png).astype(int)
    thirds = np.array_split(rgb, 3, axis=1)
    for part in thirds:  # tab10 colours over grey: clearly non-grey pixels in each of the three views
        assert ((np.abs(part[..., 0] - part[..., 2]) > 60)).sum() > 30
    assert ((rgb[..., 0] > 200) & (rgb[..., 1] > 170) & (rgb[..., 2] < 60)).any()  # yellow letters
