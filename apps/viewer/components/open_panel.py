"""Sidebar: open a scan from the data folder, a batch worklist, or an upload."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from medssl.errors import MedsslError, UnsupportedInputError
from medssl.io.path_privacy import mask_component, mask_text
from medssl.io.phi import uid_hash

from .. import privacy
from ..loaded import Loaded, mask_names, open_path, open_uploads, upload_label_overlay
from ..results import batch_overlay, label_overlay
from ..settings import Settings
from ..sources import escapes, list_data_dir, read_worklist
from .state import reset_for, reset_for_result

log = logging.getLogger("medssl.viewer")


def _load(key: str, reader: Callable[[], Loaded], tokens: frozenset[str] = frozenset()) -> Loaded | None:
    """Read once per session and selection; a failure becomes a message, never a traceback,
    with names holding patient ``tokens`` masked (it stays in the session's state)."""
    key = "scan-" + uid_hash(key)  # widget keys made from it reach the browser: a path never does
    if st.session_state.get("loaded_key") == key:
        return st.session_state.get("loaded")
    st.session_state.pop("loaded", None)  # never show the previous scan under the next one's name
    try:
        with st.spinner("Reading the scan...", show_time=True):
            loaded = reader()
    except MedsslError as err:
        st.session_state.pop("loaded", None)
        st.session_state["loaded_key"] = key
        st.session_state["load_error"] = mask_text(f"Cannot open this scan [{err.code}]: {err}", tokens)
        return None
    except Exception as err:  # noqa: BLE001 - details stay in the server log, not the page
        log.warning("viewer: unexpected %s while opening a scan", err.__class__.__name__)
        st.session_state.pop("loaded", None)
        st.session_state["loaded_key"] = key
        st.session_state["load_error"] = "Cannot open this scan: unexpected error while reading it."
        return None
    st.session_state["loaded"] = loaded
    st.session_state["loaded_key"] = key
    st.session_state.pop("load_error", None)
    reset_for(loaded)
    return loaded


def _from_data_dir(data_dir: Path) -> Loaded | None:
    entries = list_data_dir(data_dir)
    if not entries:
        st.sidebar.info("No NIfTI files or DICOM folders found in the data folder.")
        return st.session_state.get("loaded")
    by_label = {e.label: e for e in entries}
    tokens = privacy.union(e.path for e in entries)
    shown = privacy.entry_labels(entries, tokens)
    # The options are the real labels (kept on the server), the browser gets only the shown
    # ones; a shown label passed back as a value is shown as it is.
    choice = st.sidebar.selectbox("Scan", list(by_label), index=None, placeholder="Pick a scan", key="pick_data",
                                  format_func=lambda label: shown.get(label, label))  # fmt: skip
    if choice is None:
        return st.session_state.get("loaded")
    entry = by_label[choice]

    def read() -> Loaded:
        if escapes(data_dir, entry.path):
            raise UnsupportedInputError("a symbolic link in it leads out of the data folder", source=shown[entry.label])
        loaded = open_path(entry.path, origin="data")
        mask_names(loaded, tokens)
        loaded.name = entry.label
        if entry.label_path is not None:
            loaded.overlay = label_overlay(loaded, entry.label_path)
        return loaded

    return _load(f"data:{entry.path}", read, tokens)


def _from_results(settings: Settings) -> Loaded | None:
    assert settings.results_dir is not None
    cases = read_worklist(settings.results_dir, settings.data_dir)
    if not cases:
        st.sidebar.info("No results.csv in the results folder.")
        return st.session_state.get("loaded")
    tokens = privacy.union(c.source for c in cases)
    st.sidebar.dataframe(privacy.worklist_rows(cases, tokens), hide_index=True, key="worklist_table")
    by_id = {f"{c.case_id} [{c.status}]": c for c in cases}
    shown = {key: f"{privacy.case_label(c, tokens)} [{c.status}]" for key, c in by_id.items()}
    choice = st.sidebar.selectbox("Case", list(by_id), index=None, placeholder="Pick a case", key="pick_case",
                                  format_func=lambda key: shown.get(key, key))  # fmt: skip
    if choice is None:
        return st.session_state.get("loaded")
    case = by_id[choice]
    if case.source is None:
        st.sidebar.warning(f"The input scan of case {privacy.case_label(case, tokens)} is not found "
                           "(source column of results.csv).")  # fmt: skip
        return st.session_state.get("loaded")

    def read() -> Loaded:
        loaded = open_path(case.source, origin="results", series_uid=case.series)  # type: ignore[arg-type]
        mask_names(loaded, tokens)
        loaded.raw_case_id = loaded.name = case.case_id
        loaded.case_id = mask_component(case.case_id, loaded.tokens)  # for exports, if the run did not mask it
        loaded.overlay = batch_overlay(loaded, case)
        return loaded

    return _load(f"case:{settings.results_dir}:{case.case_id}", read, tokens)


UPLOAD_TYPES = ["nii", "gz", "zip", "dcm", "dicom", "ima"]  # Streamlit matches extensions, not MIME types


def _from_upload() -> Loaded | None:
    """One NIfTI / zip, or the .dcm files of a series. A refused upload is cleared from the
    widget (a new key), its message stays."""
    generation = st.session_state.setdefault("upload_generation", 0)
    files = st.sidebar.file_uploader(
        "NIfTI (.nii, .nii.gz), DICOM files (.dcm, one or many) or a zipped DICOM series (.zip)",
        type=UPLOAD_TYPES, accept_multiple_files=True, key=f"upload_{generation}",
    )  # fmt: skip
    if not files:
        return st.session_state.get("loaded")
    key = "upload:" + ",".join(f.file_id for f in files)
    loaded = _load(key, lambda: open_uploads([(f.name, f.getvalue()) for f in files]))
    if loaded is None and st.session_state.get("load_error"):
        st.session_state["upload_generation"] = generation + 1
        st.rerun()
    return loaded


def open_scan(settings: Settings) -> Loaded | None:
    st.sidebar.header("Open a scan")
    sources = ["Upload"]
    if settings.results_dir is not None:
        sources.insert(0, "Results worklist")
    if settings.data_dir is not None:
        sources.insert(0, "Data folder")
    source = st.sidebar.radio("Source", sources, key="source")
    if source == "Data folder":
        loaded = _from_data_dir(settings.data_dir)  # type: ignore[arg-type]
    elif source == "Results worklist":
        loaded = _from_results(settings)
    else:
        loaded = _from_upload()
    if st.session_state.get("load_error"):
        st.sidebar.error(st.session_state["load_error"])
    if loaded is not None:
        _label_upload(loaded)
    return loaded


def _label_upload(loaded: Loaded) -> None:
    """A label map (e.g. CASE_label.nii.gz) uploaded for the open scan becomes its overlay."""
    upload = st.sidebar.file_uploader("Label map for this scan (.nii, .nii.gz)", type=["nii", "gz"],
                                      key=f"label_upload_{st.session_state.get('loaded_key')}")  # fmt: skip
    if upload is None or st.session_state.get("label_upload_id") == upload.file_id:
        return
    st.session_state["label_upload_id"] = upload.file_id
    try:
        loaded.overlay = upload_label_overlay(loaded, upload.name, upload.getvalue())
        st.session_state["overlay_on"] = True
        reset_for_result(loaded)
    except MedsslError as err:
        st.sidebar.error(mask_text(f"Cannot show this label map [{err.code}]: {err}", loaded.tokens))

