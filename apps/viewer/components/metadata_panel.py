"""Series information and the DICOM tag browser; patient fields masked until revealed."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ..loaded import Loaded, shown_case

MASK = "•••• (hidden)"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def metadata(loaded: Loaded) -> None:
    scan = loaded.scan
    st.toggle("Reveal patient data", key="reveal_phi", help="Patient fields are hidden unless you ask.")
    reveal = bool(st.session_state.get("reveal_phi"))
    info = [
        {"field": "Case", "value": shown_case(loaded, reveal)},
        {"field": "Modality", "value": scan.modality},
        {"field": "Shape (voxels)", "value": " x ".join(str(s) for s in scan.shape)},
        {"field": "Spacing (mm)", "value": " x ".join(f"{s:.3g}" for s in scan.spacing)},
        {"field": "Stored orientation", "value": scan.orientation},
    ]
    for key, value in sorted(scan.meta.items()):
        if isinstance(value, (str, int, float)):
            info.append({"field": str(key), "value": _cell(value)})
    for key, value in sorted(loaded.phi.items()):
        info.append({"field": f"Patient: {key}", "value": _cell(value) if reveal else MASK})
    st.table(info)
    if scan.series:
        st.caption("Series found in the input")
        st.table(
            [
                {"series": s.uid_hash, "modality": s.modality, "files": s.n_files, "kind": s.kind,
                 "description": (s.description if reveal else MASK) if s.description else "",
                 "note": s.skipped_reason or ""}
                for s in scan.series
            ]
        )
    rows = loaded.tags.get(reveal, [])
    if rows:
        with st.expander("DICOM tag browser"):
            st.table([_row(r) for r in rows])


def _row(row: Any) -> dict[str, str]:
    if isinstance(row, dict):
        return {str(k): _cell(v) for k, v in row.items()}
    if isinstance(row, (list, tuple)):
        return {f"c{n}": _cell(v) for n, v in enumerate(row)}
    return {"value": _cell(row)}
