"""The three linked views, window controls and crosshair read-out. Runs as a fragment, so
moving a slider redraws only this part of the page."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ..loaded import Loaded, world_position
from ..render import PLANE_AXIS, PLANES, render_view, snapshot, to_png
from ..windowing import CT_PRESETS
from .state import crosshair, slider_key

VIEW_PX = 384
AXIS_HINT = {"axial": "I→S", "coronal": "P→A", "sagittal": "L→R"}


def _set_window(width: float, level: float) -> None:
    st.session_state["ww"], st.session_state["wl"] = float(width), float(level)


def window_controls(modality: str) -> None:
    if modality.upper() == "CT":
        cols = st.columns(len(CT_PRESETS))
        for n, (col, (name, (width, level))) in enumerate(zip(cols, CT_PRESETS.items()), start=1):
            col.button(
                f"{name}",
                key=f"preset_{n}",
                shortcut=str(n),
                help=f"W {width:g} / L {level:g} (key {n})",
                on_click=_set_window,
                args=(width, level),
                width="stretch",
            )
    c1, c2 = st.columns(2)
    c1.number_input("Window width", min_value=1.0, step=10.0, key="ww")
    c2.number_input("Window level", step=10.0, key="wl")


def overlay_controls(loaded: Loaded) -> tuple[np.ndarray | None, float, list[int] | None]:
    overlay = loaded.overlay
    if overlay is None or not overlay.label.any():
        return None, 0.0, None
    present = [int(v) for v in np.unique(overlay.label) if v != 0]
    c1, c2, c3 = st.columns([1, 2, 4])
    on = c1.toggle("Overlay", key="overlay_on")
    opacity = c2.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="overlay_opacity")
    names = {v: overlay.names.get(v, f"label {v}") for v in present}
    visible = c3.multiselect(
        "Labels shown", present, default=present, format_func=lambda v: names[v], key=f"labels_{overlay.origin}"
    )
    return (overlay.label if on else None), opacity, visible


def render_all(loaded: Loaded, ijk: tuple[int, int, int], label: np.ndarray | None, opacity: float, visible: list[int] | None) -> list:
    window = (float(st.session_state["ww"]), float(st.session_state["wl"]))
    view = loaded.view
    return [
        render_view(view.array, plane, ijk, view.spacing, window, label=label, opacity=opacity, visible=visible, size=VIEW_PX)
        for plane in PLANES
    ]


@st.fragment
def viewer(loaded: Loaded) -> None:
    view = loaded.view
    window_controls(view.modality)
    label, opacity, visible = overlay_controls(loaded)
    columns = st.columns(3)
    slots = []
    for plane, col in zip(PLANES, columns):
        slots.append(col.empty())
        n = view.shape[PLANE_AXIS[plane]]
        if n > 1:
            col.slider(f"{plane.capitalize()} slice ({AXIS_HINT[plane]})", 0, n - 1, key=slider_key(plane))
    ijk = crosshair()
    images = render_all(loaded, ijk, label, opacity, visible)
    for plane, slot, image in zip(PLANES, slots, images):
        n = view.shape[PLANE_AXIS[plane]]
        slot.image(to_png(image), caption=f"{plane.capitalize()} {ijk[PLANE_AXIS[plane]] + 1}/{n}")
    x, y, z = world_position(view, ijk)
    value = float(view.array[ijk])
    unit = " HU" if view.modality.upper() == "CT" else ""
    st.markdown(
        f"Crosshair voxel ({ijk[0]}, {ijk[1]}, {ijk[2]}) · RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm · "
        f"value **{value:.0f}{unit}** · window {st.session_state['ww']:g}/{st.session_state['wl']:g}"
    )
    st.download_button(
        "PNG snapshot of the views",
        data=lambda: snapshot(render_all(loaded, crosshair(), label, opacity, visible), [p.capitalize() for p in PLANES]),
        file_name=f"{loaded.case_id or 'scan'}_views.png",
        mime="image/png",
        key="dl_png",
    )
