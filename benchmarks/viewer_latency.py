"""Viewer latency and memory on a CT-sized volume; one JSON line per figure.

    python benchmarks/viewer_latency.py [--shape 512 512 300] [--changes 200]

Figures (server time, no browser):
  first_image_s       upload bytes in hand -> scan read (medssl.io), reoriented, windowed,
                      three views rendered to PNG (what the page does); median of 3; target < 3 s
  first_image_apptest_s  the same through the real page script (AppTest; includes the test
                      harness pushing the upload through its mock uploader)
  render_views_ms     median of rendering the three views (window, resample, letters, PNG)
  slice_change_ms     median page rerun after a slider move (AppTest); target < 150 ms
  cpu_s / cpu_ms      CPU time of the same work (this process, all threads): what the figure
                      would be on an idle machine, since the viewer's work is single-threaded
  rss_growth_mb       resident memory after N slider moves minus after the first 20; target ~0

Figures measured in Chromium through the page (``medssl viewer`` + Playwright, Debian's
/usr/bin/chromium; benchmarks/viewer_browser.py), skipped with --no-browser:
  browser_first_image_s     scan picked in the sidebar -> all three views decoded in the page
  browser_slice_key_ms      ArrowDown in the axial view -> its new image drawn (median)
  browser_slice_wheel_ms    one wheel step over the axial view -> new image drawn (median)
  browser_zip_first_image_s zip of the DICOM series chosen in the uploader -> three views drawn
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_ct(shape: tuple[int, int, int], path: Path) -> bytes:
    """A CT-like int16 volume (air, body ellipse, bone ring) saved as .nii.gz; returns bytes."""
    import nibabel as nib

    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    r = np.sqrt((x / 0.8) ** 2 + (y / 0.6) ** 2)
    plane = np.where(r < 1, 40, -1000).astype(np.int16)
    plane[(r > 0.92) & (r < 1)] = 700
    vol = np.repeat(plane[:, :, None], shape[2], axis=2)
    vol += np.random.default_rng(0).integers(-20, 20, size=shape, dtype=np.int16)
    img = nib.Nifti1Image(vol, np.diag([-0.7, -0.7, 1.0, 1.0]))
    img.header.set_data_dtype(np.int16)
    nib.save(img, path)
    return path.read_bytes()


def emit(figure: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit, **extra}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--browser-changes", type=int, default=40, help="slice changes timed in Chromium")
    parser.add_argument("--series", type=Path, default=REPO.parent / "shared" / "data" / "real" / "dicom" / "head_ct_series",
                        help="DICOM series zipped and uploaded through the page")
    parser.add_argument("--no-browser", action="store_true", help="server-side figures only")
    args = parser.parse_args()
    shape = tuple(args.shape)

    from streamlit.testing.v1 import AppTest

    from apps.viewer.loaded import open_upload
    from apps.viewer.render import PLANES, render_view, to_png
    from apps.viewer.windowing import default_window

    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_ct(shape, Path(tmp) / "ct.nii.gz")
        os.environ["MEDSSL_VIEWER_TMP"] = tmp
        emit("upload_size_mb", len(data) / 2**20, "MB", shape=list(shape))

        firsts, reads, cpus = [], [], []
        for _ in range(3):
            gc.collect()
            cpu = time.process_time()
            start = time.perf_counter()
            loaded = open_upload("ct.nii.gz", data)
            reads.append(time.perf_counter() - start)
            view = loaded.view
            window = default_window(view.array, view.modality, view.meta)
            centre = tuple(s // 2 for s in view.shape)
            for plane in PLANES:
                to_png(render_view(view.array, plane, centre, view.spacing, window))
            firsts.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        emit("read_and_reorient_s", statistics.median(reads), "s", shape=list(shape))
        emit("first_image_s", statistics.median(firsts), "s", target=3.0, best_s=round(min(firsts), 3), cpu_s=round(statistics.median(cpus), 3),
             shape=list(shape), load_avg_1min=os.getloadavg()[0])
        ijk = tuple(s // 2 for s in view.shape)
        times, cpus = [], []
        for n in range(30):
            ijk = (ijk[0], ijk[1], n % view.shape[2])
            t, cpu = time.perf_counter(), time.process_time()
            for plane in PLANES:
                to_png(render_view(view.array, plane, ijk, view.spacing, (400, 40)))
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - cpu)
        emit("render_views_ms", 1000 * statistics.median(times), "ms", views=3, cpu_ms=round(1000 * statistics.median(cpus), 1))
        del loaded, view
        gc.collect()

        at = AppTest.from_file(str(REPO / "apps" / "viewer" / "app.py"), default_timeout=120)
        at.run()
        at.radio(key="source").set_value("Upload")
        at.run()
        at.file_uploader(key="upload_0").set_value([("ct.nii.gz", data, "application/gzip")])
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        views = [c for c in at.caption if c.value.split(" ")[0] in ("Axial", "Coronal", "Sagittal")]
        assert not at.exception and len(views) == 3, "the page did not show three views"
        emit("first_image_apptest_s", first, "s", shape=list(shape), via="AppTest upload")
        del data

        slider = "slice_axial"
        n_slices = shape[2]
        changes, change_cpus, rss_after_warmup = [], [], None
        for n in range(args.changes):
            at.slider(key=slider).set_value((n * 7) % n_slices + 1)  # 1-based slice numbers
            t, cpu = time.perf_counter(), time.process_time()
            at.run()
            changes.append(time.perf_counter() - t)
            change_cpus.append(time.process_time() - cpu)
            if n == 19:
                gc.collect()
                rss_after_warmup = rss_mb()
        gc.collect()
        rss_end = rss_mb()
        emit("slice_change_ms", 1000 * statistics.median(changes), "ms", target=150, load_avg_1min=os.getloadavg()[0],
             p95_ms=round(1000 * float(np.percentile(changes, 95)), 1),
             cpu_ms=round(1000 * statistics.median(change_cpus), 1), changes=len(changes), via="AppTest rerun")
        emit("rss_growth_mb", rss_end - (rss_after_warmup or rss_end), "MB",
             changes=args.changes, rss_end_mb=round(rss_end, 1))
        del at
        gc.collect()
        if not args.no_browser:
            from benchmarks.viewer_browser import browser_figures

            browser_figures(Path(tmp), args.browser_changes, args.series, emit)


if __name__ == "__main__":
    main()
