"""medssl viewer: open a scan, read it in three planes, see and export the model's result.

Start it with ``medssl viewer`` (hardened Streamlit settings); folders come from the
MEDSSL_VIEWER_*_DIR environment variables that command sets."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # `streamlit run` puts only this folder on sys.path
    sys.path.insert(0, str(_REPO))

import streamlit as st

st.set_page_config(page_title="medssl viewer", layout="wide")
# The first run of a server process imports the readers and renderers (seconds on a small
# CPU); say so instead of a blank page. Later reruns find them imported.
_starting = st.empty()
_starting.caption("Starting the viewer ...")

from apps.viewer.components.auth import require_login  # noqa: E402
from apps.viewer.components.export_panel import exports  # noqa: E402
from apps.viewer.components.metadata_panel import metadata  # noqa: E402
from apps.viewer.components.open_panel import open_scan  # noqa: E402
from apps.viewer.components.results_panel import results  # noqa: E402
from apps.viewer.components.views import viewer  # noqa: E402
from apps.viewer.settings import from_env  # noqa: E402

_starting.empty()
require_login()
settings = from_env()
loaded = open_scan(settings)
if loaded is None:
    st.title("medssl viewer")
    st.info("Open a scan from the sidebar: the data folder, a results worklist, or an upload.")
    st.stop()

viewer(loaded)
results(loaded, settings)
with st.expander("Series information and DICOM tags"):
    metadata(loaded)
with st.expander("Export"):
    exports(loaded)
