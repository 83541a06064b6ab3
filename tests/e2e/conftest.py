"""A real ``medssl viewer`` server on a free port and Debian's Chromium driven by Playwright
(no browser download: ``/usr/bin/chromium`` or $MEDSSL_CHROMIUM)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = os.environ.get("MEDSSL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"viewer exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"viewer did not answer {url} within {timeout} s")


def listen_addresses(port: int) -> list[str]:
    """Local addresses of LISTEN sockets on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                if len(addr) == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    words = [bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    found.append(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("MEDSSL_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (install Debian's chromium or set MEDSSL_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_viewer(args: list[str], log_path: Path) -> Iterator[tuple[str, int]]:
    """Run ``medssl viewer`` with ``args`` on a free port; yields (base url, port)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medssl", "viewer", "--port", str(port), *args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc)
            yield f"http://127.0.0.1:{port}", port
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """End the viewer's process group (the command and the streamlit server it started)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def screenshot_on_failure(request, page, artifacts_dir: Path) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        page.screenshot(path=str(artifacts_dir / f"FAILED_{request.node.name}.png"), full_page=True)
