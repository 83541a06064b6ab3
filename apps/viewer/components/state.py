"""Per-session viewer state: slice positions, window and toggles, reset when a scan opens."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ..loaded import Loaded
from ..render import PLANE_AXIS, PLANES
from ..windowing import default_window


def slider_key(plane: str) -> str:
    return f"slice_{plane}"


def reset_for(loaded: Loaded) -> None:
    """Centre the crosshair, pick the default window, hide patient data again, forget the
    measurement. Slider values are 1-based slice numbers."""
    shape = loaded.view.shape
    centre = result_centre(loaded) or tuple(n // 2 for n in shape[:3])
    for plane in PLANES:
        st.session_state[slider_key(plane)] = int(centre[PLANE_AXIS[plane]]) + 1
    st.session_state.pop("measure", None)
    width, level = default_window(loaded.view.array, loaded.view.modality, loaded.view.meta)
    st.session_state["ww"], st.session_state["wl"] = float(width), float(level)
    st.session_state["reveal_phi"] = False
    st.session_state["overlay_on"] = True


def reset_for_result(loaded: Loaded) -> None:
    """Move the crosshair into a result that has just been added to the open scan."""
    centre = result_centre(loaded)
    if centre is not None:
        for plane in PLANES:
            st.session_state[slider_key(plane)] = int(centre[PLANE_AXIS[plane]]) + 1


def result_centre(loaded: Loaded) -> tuple[int, int, int] | None:
    """Voxel (canonical grid) at the centre of the result's labelled voxels, so a case opens on
    slices that cut through the predicted structure; None without labels."""
    overlay = loaded.overlay
    if overlay is None or not overlay.label.any():
        return None
    coords = np.nonzero(overlay.label)
    return tuple(int(round(float(np.median(c)))) for c in coords)  # type: ignore[return-value]


def slice_numbers() -> dict[str, int]:
    """plane -> 1-based slice number, from the sliders."""
    return {p: int(st.session_state.get(slider_key(p), 1)) for p in PLANES}


def crosshair() -> tuple[int, int, int]:
    """(i, j, k), 0-based, of the canonical volume from the three sliders."""
    n = slice_numbers()
    return n["sagittal"] - 1, n["coronal"] - 1, n["axial"] - 1
