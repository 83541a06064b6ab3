"""Per-session viewer state: slice positions, window and toggles, reset when a scan opens."""

from __future__ import annotations

import streamlit as st

from ..loaded import Loaded
from ..render import PLANE_AXIS, PLANES
from ..windowing import default_window


def slider_key(plane: str) -> str:
    return f"slice_{plane}"


def reset_for(loaded: Loaded) -> None:
    """Centre the crosshair, pick the default window, hide patient data again."""
    shape = loaded.view.shape
    for plane in PLANES:
        st.session_state[slider_key(plane)] = shape[PLANE_AXIS[plane]] // 2
    width, level = default_window(loaded.view.array, loaded.view.modality, loaded.view.meta)
    st.session_state["ww"], st.session_state["wl"] = float(width), float(level)
    st.session_state["reveal_phi"] = False
    st.session_state["overlay_on"] = True


def crosshair() -> tuple[int, int, int]:
    """(i, j, k) of the canonical volume from the three sliders."""
    return tuple(int(st.session_state.get(slider_key(p), 0)) for p in ("sagittal", "coronal", "axial"))  # type: ignore[return-value]
