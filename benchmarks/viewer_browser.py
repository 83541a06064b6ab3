"""Viewer latency as a user sees it: ``medssl viewer`` on a free port, Debian's Chromium driven
by Playwright; each figure runs from the user's action to the new image decoded in the page.
Used by ``benchmarks/viewer_latency.py``."""

from __future__ import annotations

import io
import os
import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_viewer
from tests.e2e.viewer_page import pick, settle

# Dispatch the key in the view and resolve when its <img> has decoded the next image.
KEY_TO_DRAW_JS = """(key) => new Promise(resolve => {
  const img = document.getElementById('img');
  const t0 = performance.now();
  img.addEventListener('load', () => resolve(performance.now() - t0), {once: true});
  document.getElementById('wrap').dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true}));
})"""


def _zip_series(series: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(series.iterdir()):
            if f.is_file():
                zf.write(f, f.name)
    return buf.getvalue()


def browser_figures(data_dir: Path, changes: int, series: Path | None, emit: Callable[..., None]) -> None:
    if not Path(CHROMIUM).is_file():
        emit("browser_skipped", 0, "", reason=f"no Chromium at {CHROMIUM}")
        return
    from playwright.sync_api import sync_playwright

    gen = start_viewer(["--data-dir", str(data_dir)], data_dir / "viewer_bench.log")
    url, _ = next(gen)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_text("Open a scan", exact=True).wait_for()
            start = time.perf_counter()
            pick(page, "Scan", "ct.nii.gz")
            frames = settle(page, timeout_ms=120_000)
            emit("browser_first_image_s", time.perf_counter() - start, "s", target=3.0, load_avg_1min=os.getloadavg()[0])
            axial = frames["axial"]
            axial.evaluate(KEY_TO_DRAW_JS, "ArrowDown")  # warm-up: the first value of a new view
            keys = [float(axial.evaluate(KEY_TO_DRAW_JS, "ArrowDown" if n % 40 < 20 else "ArrowUp")) for n in range(changes)]
            emit("browser_slice_key_ms", statistics.median(keys), "ms", target=250, changes=len(keys),
                 p95_ms=round(sorted(keys)[int(0.95 * (len(keys) - 1))], 1), load_avg_1min=os.getloadavg()[0])
            box = axial.frame_element().bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["width"] / 3)
            wheels = []
            for n in range(changes):
                before = int(axial.evaluate("window.medssl.draws"))
                t = time.perf_counter()
                page.mouse.wheel(0, 120 if n % 40 < 20 else -120)
                axial.wait_for_function(f"window.medssl.draws > {before}")
                wheels.append(1000 * (time.perf_counter() - t))
            emit("browser_slice_wheel_ms", statistics.median(wheels), "ms", target=250, changes=len(wheels),
                 p95_ms=round(sorted(wheels)[int(0.95 * (len(wheels) - 1))], 1), via="Playwright wheel, timed from Python")
            if series is not None and series.is_dir():
                data = _zip_series(series)
                page.close()
                page = browser.new_page(viewport={"width": 1600, "height": 1200})  # a fresh session
                page.set_default_timeout(120_000)
                page.goto(url)
                page.locator('[data-testid="stSidebar"] [data-testid="stRadio"] label').filter(has_text="Upload").click()
                chooser = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').first
                start = time.perf_counter()
                chooser.set_input_files(files=[{"name": "series.zip", "mimeType": "application/zip", "buffer": data}])
                page.get_by_text("Axial 55/108").wait_for()
                settle(page, timeout_ms=120_000)
                emit("browser_zip_first_image_s", time.perf_counter() - start, "s", target=5.0,
                     upload_mb=round(len(data) / 2**20, 1), files=len(zipfile.ZipFile(io.BytesIO(data)).namelist()))
            browser.close()
    finally:
        gen.close()
