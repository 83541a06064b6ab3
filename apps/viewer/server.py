"""The viewer as an ASGI app: Streamlit's own server running ``app.py``, with the security
headers of ``apps.viewer.security`` on every response. ``medssl viewer`` runs this file
with ``streamlit run`` (which serves an ``App`` found in a script through uvicorn)."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # `streamlit run` puts only this folder on sys.path
    sys.path.insert(0, str(_REPO))

from starlette.middleware import Middleware  # noqa: E402
from streamlit.starlette import App  # noqa: E402

from apps.viewer.security import SecurityHeaders  # noqa: E402

app = App(Path(__file__).with_name("app.py"), middleware=[Middleware(SecurityHeaders)])
