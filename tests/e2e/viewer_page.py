"""Driving the viewer page in Chromium: pick from the sidebar, wait for the three views to be
drawn, find a view's component frame, count overlay pixels in what the browser shows."""

from __future__ import annotations

from tests.conftest import assert_no_phi

WAIT_MS = 60_000
PLANE_ORDER = ("axial", "coronal", "sagittal")


def pick(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text=label)
    box.click()
    page.get_by_role("option", name=option).click()


def assert_page_has_no_phi(page, where: str) -> None:
    """Visible text gets the shared check; the raw HTML the full sentinel strings only
    (Streamlit's own markup holds focus-trap 'sentinel' elements)."""
    assert_no_phi(page.inner_text("body"), where)
    html = page.content()
    for s in ("SENTINEL^PHI^DONOTLEAK", "DONOTLEAK", "PHI-SENTINEL-0001"):
        assert s not in html, f"patient sentinel {s!r} in the HTML of {where}"


def scroll_top(page) -> None:
    page.evaluate("document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")


def view_frames(page) -> dict:
    """plane -> Playwright Frame of that view's slice_view component."""
    frames = {}
    for frame in page.frames:
        if "slice_view" not in frame.url:
            continue
        try:
            caption = frame.evaluate("document.getElementById('wrap').dataset.caption || ''")
        except Exception:  # noqa: BLE001 - a frame being replaced
            continue
        for plane in PLANE_ORDER:
            if caption.lower().startswith(plane):
                frames[plane] = frame
    return frames


def iframe_of(page, plane: str):
    frame = view_frames(page)[plane]
    return frame.frame_element()


def idle(page, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the script run is over (Streamlit's "Running" widget is gone)."""
    page.wait_for_timeout(150)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)


def settle(page, timeout_ms: int = WAIT_MS) -> dict:
    """Wait until the script run is over and every view shows a decoded image; returns the frames."""
    idle(page, timeout_ms)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('iframe')).filter(f => f.src.includes('slice_view')).length >= 3",
        timeout=timeout_ms,
    )
    deadline_ms = timeout_ms
    step = 100
    while deadline_ms > 0:
        frames = view_frames(page)
        if len(frames) == 3 and all(
            f.evaluate("() => { const i = document.getElementById('img'); return i.complete && i.naturalWidth > 0; }")
            for f in frames.values()
        ):
            return frames
        page.wait_for_timeout(step)
        deadline_ms -= step
    raise TimeoutError("the three views were not drawn")


def caption_of(frame) -> str:
    return frame.evaluate("document.getElementById('wrap').dataset.caption")


def overlay_pixels(frame) -> int:
    """Pixels of the drawn view in label 1's red or label 2's green blended on grey: not grey,
    not the yellow letters, not the cyan crosshair lines."""
    return int(frame.evaluate(
        """() => {
          const img = document.getElementById('img');
          const c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          const g = c.getContext('2d'); g.drawImage(img, 0, 0);
          const d = g.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let p = 0; p < d.length; p += 4) {
            const r = d[p], gr = d[p + 1], b = d[p + 2];
            if ((r - gr > 60 && r - b > 40) || (gr - r > 40 && gr - b > 35)) n++;  // labels 1 (red), 2 (green)
          }
          return n;
        }"""
    ))


def draws(frame) -> int:
    return int(frame.evaluate("window.medssl.draws"))
