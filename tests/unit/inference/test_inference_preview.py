"""CASE.png views: reordered to RAS with the spacing of each reordered axis."""

from __future__ import annotations

import numpy as np

from medssl.inference.preview import _canonical, preview_png


def test_spacing_follows_a_three_cycle_axis_order():
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2], affine[3, 3] = 2.0, 3.0, 5.0, 1.0  # i->A, j->S, k->R
    array = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    ras, spacing = _canonical(array, affine)
    assert ras.shape == (8, 4, 6)
    assert np.allclose(spacing, [5.0, 2.0, 3.0])  # R, A, S
    assert ras[1, 2, 3] == array[2, 3, 1]


def test_flipped_axes_keep_their_spacing():
    affine = np.diag([-0.7, 1.5, -4.0, 1.0])
    ras, spacing = _canonical(np.zeros((5, 6, 7), np.float32), affine)
    assert ras.shape == (5, 6, 7) and np.allclose(spacing, [0.7, 1.5, 4.0])
    assert preview_png(np.zeros((5, 6, 7), np.float32), None, affine).startswith(b"\x89PNG")
