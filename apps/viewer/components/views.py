"""The three linked views, their tools, window controls and crosshair read-out. Runs as a
fragment, so a slice change redraws only this part of the page.

Each view is the ``slice_view`` component (``slice_view_frontend/index.html``, shipped with
the package, no network): clicks, wheel, keys and drags come back as events that
``apps.viewer.interaction`` turns into slice numbers, window values and millimetres."""

from __future__ import annotations

import base64
from functools import partial
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from ..interaction import apply_event
from ..loaded import Loaded, shown_name, world_position
from ..render import PLANE_AXIS, PLANES, render_view, snapshot, to_png
from ..windowing import CT_PRESETS
from .state import crosshair, slice_numbers, slider_key

VIEW_PX = 512  # drawn size of a view's longest side; the browser fits it to the column width
AXIS_HINT = {"axial": "I→S", "coronal": "P→A", "sagittal": "L→R"}
TOOLS = {"Crosshair": "crosshair", "Window": "window", "Pan": "pan", "Measure": "measure"}
_slice_view = components.declare_component("slice_view", path=str(Path(__file__).with_name("slice_view_frontend")))


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
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.number_input("Window width", min_value=1.0, step=10.0, key="ww")
    c2.number_input("Window level", step=10.0, key="wl")
    c3.segmented_control(
        "Tool (left button)", list(TOOLS), default="Crosshair", key="tool",
        help="Click: crosshair. Wheel or Up/Down/PgUp/PgDn: slice. Ctrl+wheel or +/-: zoom, "
        "double-click resets. Right-drag: window. Shift- or middle-drag: pan. Measure: two clicks.",
    )  # fmt: skip


def overlay_controls(loaded: Loaded) -> tuple[np.ndarray | None, float, list[int] | None]:
    overlay = loaded.overlay
    if overlay is None or not overlay.label.any():
        return None, 0.0, None
    present = [int(v) for v in np.unique(overlay.label) if v != 0]
    if st.session_state.pop("overlay_on_next", False):  # a model has just run
        st.session_state["overlay_on"] = True
    c1, c2, c3 = st.columns([1, 2, 4])
    on = c1.toggle("Overlay", key="overlay_on")
    opacity = c2.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="overlay_opacity")
    names = {v: overlay.names.get(v, f"label {v}") for v in present}
    visible = c3.multiselect(
        "Labels shown", present, default=present, format_func=lambda v: names[v], key=f"labels_{overlay.origin}"
    )
    return (overlay.label if on else None), opacity, visible


def current_window() -> tuple[float, float]:
    return float(st.session_state["ww"]), float(st.session_state["wl"])


def render_all(loaded: Loaded, ijk: tuple[int, int, int], window: tuple[float, float], label: np.ndarray | None,
               opacity: float, visible: list[int] | None) -> list:  # fmt: skip
    view = loaded.view
    return [
        render_view(view.array, plane, ijk, view.spacing, window, label=label, opacity=opacity, visible=visible, size=VIEW_PX)
        for plane in PLANES
    ]


def _on_view_event(key: str, loaded: Loaded) -> None:
    """A view's event, applied before the fragment reruns (widget state may change here)."""
    event = st.session_state.get(key)
    if not isinstance(event, dict) or event.get("seq") == st.session_state.get(f"{key}_seq"):
        return
    st.session_state[f"{key}_seq"] = event.get("seq")
    if event.get("type") == "preset" and loaded.view.modality.upper() != "CT":
        return
    view = loaded.view
    change = apply_event(event, slice_numbers(), current_window(), view.shape, view.spacing)
    for plane, number in change.get("slices", {}).items():
        st.session_state[slider_key(plane)] = number
    if "window" in change:
        _set_window(*change["window"])
    if "measure" in change:
        st.session_state["measure"] = change["measure"]


def _measure_for(plane: str, numbers: dict[str, int]) -> dict[str, Any] | None:
    m = st.session_state.get("measure")
    if not m or m.get("plane") != plane or m.get("slice") != numbers[plane]:
        return None
    return {"p1": m["p1"], "p2": m["p2"], "label": f"{m['mm']:.1f} mm"}


def scan_header(loaded: Loaded) -> None:
    """The open scan's name (masked when it holds patient data) and its key facts."""
    scan = loaded.scan
    name = shown_name(loaded, bool(st.session_state.get("reveal_phi")))
    facts = [scan.modality, " × ".join(str(s) for s in scan.shape[:3]) + " voxels",
             " × ".join(f"{s:.3g}" for s in scan.spacing) + " mm", f"stored {scan.orientation}"]  # fmt: skip
    if loaded.overlay is not None:
        facts.append("result: " + ("batch run" if loaded.overlay.origin == "batch" else
                                   "label file" if loaded.overlay.origin == "label" else "model run here"))  # fmt: skip
    st.markdown(f"#### {name}\n{' · '.join(facts)}")


@st.fragment
def viewer(loaded: Loaded) -> None:
    view = loaded.view
    scan_header(loaded)
    window_controls(view.modality)
    label, opacity, visible = overlay_controls(loaded)
    mode = TOOLS.get(st.session_state.get("tool") or "Crosshair", "crosshair")
    # The sliders come first: a slice set by a click (a callback) is only final once its
    # slider exists in this run. No placeholders either: they would remount the views.
    columns = st.columns(3)
    for plane, col in zip(PLANES, columns):
        n = view.shape[PLANE_AXIS[plane]]
        if n > 1:
            col.slider(f"{plane.capitalize()} slice ({AXIS_HINT[plane]})", 1, n, key=slider_key(plane))
    ijk, numbers, window = crosshair(), slice_numbers(), current_window()
    images = render_all(loaded, ijk, window, label, opacity, visible)
    for plane, col, image in zip(PLANES, columns, images):
        caption = f"{plane.capitalize()} {numbers[plane]}/{view.shape[PLANE_AXIS[plane]]}"
        key = f"view_{plane}"
        with col:
            _slice_view(
                image="data:image/png;base64," + base64.b64encode(to_png(image)).decode(),
                plane=plane, mode=mode, caption=caption, measure=_measure_for(plane, numbers),
                ack=st.session_state.get(f"{key}_seq") or 0, key=key, default=None,
                on_change=partial(_on_view_event, key, loaded),
            )  # fmt: skip
            st.caption(caption)
    x, y, z = world_position(view, ijk)
    value = float(view.array[ijk])
    unit = " HU" if view.modality.upper() == "CT" else ""
    line = (
        f"Crosshair: sagittal {numbers['sagittal']}, coronal {numbers['coronal']}, axial {numbers['axial']} · "
        f"RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm · value **{value:.0f}{unit}** · window {window[0]:g}/{window[1]:g}"
    )
    m = st.session_state.get("measure")
    if m:
        line += f" · distance **{m['mm']:.1f} mm** ({m['plane']} {m['slice']})"
    st.markdown(line)
    titles = [f"{p.capitalize()} {numbers[p]}/{view.shape[PLANE_AXIS[p]]}" for p in PLANES]
    st.download_button(
        "PNG snapshot of the views",
        data=snapshot_builder(loaded, ijk, window, label, opacity, visible, titles),
        file_name=f"{shown_name(loaded, False, for_file=True)}_views.png",
        mime="image/png",
        key="dl_png",
        on_click="ignore",  # a download re-renders nothing (see export_panel)
    )


def snapshot_builder(loaded: Loaded, ijk: tuple[int, int, int], window: tuple[float, float], label: np.ndarray | None,
                     opacity: float, visible: list[int] | None, titles: list[str]) -> Callable[[], bytes]:  # fmt: skip
    """The PNG download's deferred data. Streamlit calls it when the browser asks for the
    file, outside any script run, where session state is out of reach: every value it needs
    is bound here."""
    return lambda: snapshot(render_all(loaded, ijk, window, label, opacity, visible), titles)
