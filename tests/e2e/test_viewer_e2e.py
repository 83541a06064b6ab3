"""The viewer in a real browser: `medssl viewer` headless, Debian's Chromium via Playwright.
Opens the real DICOM head CT, changes slice and preset, runs a tiny model, reveals patient
data only on request, shows a phantom with its batch mask; screenshots go to
test-artifacts/ (or $MEDSSL_TEST_ARTIFACTS)."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import SENTINEL_TEXTS
from tests.e2e.conftest import listen_addresses, start_viewer
from tests.e2e.viewer_data import write_phantom, write_results, write_tiny_model
from tests.e2e.viewer_page import (WAIT_MS, assert_page_has_no_phi, caption_of, idle, overlay_pixels, pick, scroll_top,
                                   settle)

pytestmark = [pytest.mark.e2e, pytest.mark.realdata]


@pytest.fixture(scope="module")
def server(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer_e2e")
    image, label = write_phantom(root / "phantoms")
    results = write_results(root / "results", image, label)
    write_tiny_model(root / "models")
    args = ["--data-dir", str(real_data), "--results-dir", str(results), "--models-dir", str(root / "models")]
    gen = start_viewer(args, root / "viewer.log")
    yield next(gen)
    gen.close()


def _text(page) -> str:
    return page.inner_text("body") + "\n" + page.content()


def test_server_answers_on_localhost_only(server):
    url, port = server
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as resp:
        assert resp.status == 200 and resp.read().strip() == b"ok"
    addresses = listen_addresses(port)
    assert addresses and set(addresses) == {"127.0.0.1"}, addresses


def test_every_response_carries_the_security_headers(server):
    from apps.viewer.security import SECURITY_HEADERS

    url, _ = server
    for path in ("/", "/_stcore/health", "/_stcore/host-config"):
        with urllib.request.urlopen(f"{url}{path}", timeout=10) as resp:
            assert resp.status == 200, path
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers.get(name) == value, (path, name, resp.headers.get(name))


def test_head_ct_model_and_phantom_overlay_in_chromium(server, browser, artifacts_dir):
    url, _ = server
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.set_default_timeout(WAIT_MS)
    frames_served = []
    page.on("response", lambda r: frames_served.append(r) if "slice_view/index.html" in r.url else None)
    page.goto(url)
    page.get_by_text("Open a scan", exact=True).wait_for()

    pick(page, "Scan", "dicom/head_ct_series/ (DICOM)")
    page.get_by_text("Axial 55/108").wait_for()
    page.get_by_text("dicom/head_ct_series/ (DICOM)", exact=False).first.wait_for()  # its name above the views
    assert_page_has_no_phi(page, "viewer page after opening the DICOM series")

    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Axial slice").get_by_role("slider")
    thumb.focus()
    for _ in range(5):
        thumb.press("ArrowRight")
    page.get_by_text("Axial 60/108").wait_for()

    assert frames_served and all(r.headers.get("x-frame-options") == "SAMEORIGIN" for r in frames_served)
    page.get_by_text("Crosshair:").click()  # focus off the slider, then the number key
    page.keyboard.press("5")
    page.get_by_text("window 80/40").wait_for()
    settle(page)
    scroll_top(page)
    page.screenshot(path=str(artifacts_dir / "viewer_head_ct_three_planes.png"), full_page=True)

    page.get_by_text("Series information and DICOM tags").click()
    page.get_by_text("Reveal patient data").wait_for()
    page.get_by_text("DICOM tag browser").click()
    page.get_by_text("PatientName").first.wait_for()
    assert_page_has_no_phi(page, "viewer page with metadata and tags open, before reveal")
    idle(page)  # a click while the page reruns can be lost
    page.get_by_text("Reveal patient data").click()
    page.get_by_text(SENTINEL_TEXTS[0]).first.wait_for()
    assert "PHI-SENTINEL-0001" in _text(page)
    idle(page)
    page.get_by_text("Reveal patient data").click()
    page.wait_for_function(f"!document.body.innerText.includes({SENTINEL_TEXTS[0]!r})")

    page.get_by_role("button", name="Run model").click()
    page.get_by_text("Result from the model run here").wait_for()
    assert "could not run" not in page.inner_text("body")

    page.get_by_text("Results worklist", exact=True).click()
    pick(page, "Case", "phantom_000 [ok]")
    page.get_by_text("Result from the batch run").wait_for()
    page.get_by_text("Sagittal 35/48").wait_for()  # opened through the liver, on the patient's right (+i)
    frames = settle(page)
    assert caption_of(frames["sagittal"]) == "Sagittal 35/48"
    assert all(overlay_pixels(f) > 50 for f in frames.values())
    scroll_top(page)
    page.screenshot(path=str(artifacts_dir / "viewer_phantom_overlay.png"), full_page=True)
    assert "liver" in page.inner_text("body")
    page.close()
