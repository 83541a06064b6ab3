"""Downloads. Each file is built only when its button is clicked (lazy data). A click does
not rerun the page (``on_click="ignore"``): a rerun re-renders the views for nothing and
retires the other buttons' pending files, so a second export clicked during it was lost."""

from __future__ import annotations

import streamlit as st

from .. import export
from ..loaded import Loaded, shown_name
from .results_panel import stats_rows


def exports(loaded: Loaded) -> None:
    overlay = loaded.overlay
    if overlay is None:
        st.caption("Exports of the label map and statistics appear once there is a result.")
        return
    case = shown_name(loaded, False, for_file=True)  # the PHI-free case id, whatever is revealed
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Label map (NIfTI)", data=lambda: export.label_nifti(loaded),
                       file_name=f"{case}_label.nii.gz", mime="application/gzip", key="dl_nifti", on_click="ignore")
    if loaded.is_dicom and (loaded.path is not None or loaded.upload is not None):
        c2.download_button("DICOM SEG", data=lambda: export.dicom_seg(loaded),
                           file_name=f"{case}_seg.dcm", mime="application/dicom", key="dl_seg", on_click="ignore")
    else:
        c2.caption("DICOM SEG needs a DICOM input.")
    c3.download_button("Statistics (CSV)", data=lambda: export.stats_csv(stats_rows(loaded)),
                       file_name=f"{case}_stats.csv", mime="text/csv", key="dl_csv", on_click="ignore")
    c4.download_button("Statistics (JSON)", data=lambda: export.stats_json(stats_rows(loaded), loaded),
                       file_name=f"{case}_stats.json", mime="application/json", key="dl_json", on_click="ignore")
