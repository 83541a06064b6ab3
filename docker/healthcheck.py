#!/usr/bin/env python3
"""Docker HEALTHCHECK of the medssl images.

When the container's main process is ``medssl viewer``, the check asks Streamlit's
``/_stcore/health`` on 127.0.0.1 (the port from ``--port``, default 8501) and is healthy
only on HTTP 200. Any other command (``predict``, ``finetune``, ...) has nothing to probe
and is healthy while it runs. Standard library only; exit 0 healthy, 1 unhealthy."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8501


def main_command(cmdline_file: str = "/proc/1/cmdline") -> list[str]:
    try:
        raw = Path(cmdline_file).read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def viewer_port(argv: list[str]) -> int | None:
    """The viewer's port when ``argv`` runs ``medssl viewer``, else None."""
    if "viewer" not in argv:
        return None
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return DEFAULT_PORT


def healthy(port: int | None, timeout: float = 3.0) -> bool:
    if port is None:
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    argv = main_command(os.environ.get("MEDSSL_HEALTHCHECK_CMDLINE", "/proc/1/cmdline"))
    sys.exit(0 if healthy(viewer_port(argv)) else 1)
