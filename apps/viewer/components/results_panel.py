"""Results: run a model on demand, the per-label table, class probabilities."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import streamlit as st

from medssl.errors import MedsslError
from medssl.io.path_privacy import mask_text

from ..loaded import Loaded
from ..results import label_table, model_key, model_overlay
from ..settings import Settings
from ..sources import list_models

log = logging.getLogger("medssl.viewer")


@st.cache_resource(max_entries=2, show_spinner=False)
def _predictor(path: str, mtime: float) -> Any:
    """One loaded model shared by every session (weights are not patient data)."""
    from medssl.inference import Predictor

    return Predictor.from_artifact(path, device="auto")


def _run_model(loaded: Loaded, path: Path) -> None:
    progress = st.progress(0.0, text="Loading model...")
    try:
        predictor = _predictor(*model_key(path))
        progress.progress(0.3, text="Running the model on this scan...")
        with st.spinner("Running the model..."):
            loaded.overlay = model_overlay(loaded, predictor)
        progress.progress(1.0, text="Done")
        st.session_state["overlay_on_next"] = True  # the views above are drawn: redraw them with it
        st.session_state.pop("model_error", None)
    except MedsslError as err:
        st.session_state["model_error"] = mask_text(f"The model could not run [{err.code}]: {err}", loaded.tokens)
    except Exception as err:  # noqa: BLE001 - details stay in the server log
        log.warning("viewer: model run failed with %s", err.__class__.__name__)
        st.session_state["model_error"] = "The model could not run: unexpected error (see the server log)."
    finally:
        progress.empty()
    if st.session_state.get("overlay_on_next"):
        st.rerun()


def model_runner(loaded: Loaded, settings: Settings) -> None:
    models = list_models(settings.models_dir)
    if not models:
        st.caption("No models folder given (--models-dir) or no model artifacts (*.pt) in it.")
        return
    base = settings.models_dir
    labels = {str(p.relative_to(base)) if base else p.name: p for p in models}
    c1, c2 = st.columns([3, 1])
    choice = c1.selectbox("Model", list(labels), key="model_choice")
    if c2.button("Run model", key="run_model", type="primary") and choice is not None:
        _run_model(loaded, labels[choice])
    if st.session_state.get("model_error"):
        st.error(st.session_state["model_error"])


def stats_rows(loaded: Loaded) -> list[dict[str, Any]]:
    overlay = loaded.overlay
    if overlay is None:
        return []
    return label_table(loaded.scan, overlay)


def results(loaded: Loaded, settings: Settings) -> None:
    st.subheader("Results")
    model_runner(loaded, settings)
    overlay = loaded.overlay
    if overlay is None:
        st.caption("No result yet: run a model, or open a case from a results folder.")
        return
    rows = [] if overlay.class_probs else stats_rows(loaded)
    origin = {"batch": "batch run", "label": "label file beside the scan"}.get(overlay.origin, "model run here")
    st.caption(f"Result from the {origin}.")
    if rows:
        table = [
            {
                "label": r["name"],
                "volume (mL)": f"{r['volume_ml']:.2f}",
                "mean intensity": "" if r["mean_intensity"] is None else f"{r['mean_intensity']:.0f}",
                "mean confidence": "n/a" if r["mean_confidence"] is None else f"{r['mean_confidence']:.2f}",
                "review": "LOW CONFIDENCE" if r["low_confidence"] else "",
            }
            for r in rows
        ]
        st.table(table)
        flagged = [r["name"] for r in rows if r["low_confidence"]]
        if flagged:
            st.warning("Low confidence, review carefully: " + ", ".join(flagged))
    elif overlay.class_probs is None:
        st.info("The result holds no labelled voxels.")
    if overlay.class_probs:
        st.table([{"class": k, "probability": f"{v:.3f}"} for k, v in overlay.class_probs.items()])
