"""The README's first command and what it prints: ``medssl demo`` (a shortened sweep through
``--set``, every other step as shipped), then the viewer command the demo prints, run as
printed, opens every result of the demo's batch run with its overlay in Chromium.
Screenshots go to $MEDSSL_TEST_ARTIFACTS."""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.io import uid_hash
from tests.conftest import REPO
from tests.e2e.conftest import screenshot_on_failure, start_viewer
from tests.e2e.viewer_page import WAIT_MS, assert_page_has_no_phi, overlay_pixels, pick, scroll_top, settle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUICK = ["train.max_steps=40", "train.val_every=20", "train.progress=false", "sweep.seeds=[0,1]", "sweep.bootstrap=100",
         "sweep.pretrain_overrides=[train.max_steps=30,train.progress=false,monitor.rank_every=15]"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    argv = [sys.executable, "-m", "medssl", "demo", "--out", str(out)]
    for kv in QUICK:
        argv += ["--set", kv]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    command = lines[lines.index("Open the viewer on these results:") + 1].strip()
    return {"out": out, "stdout": proc.stdout, "command": shlex.split(command)}


def test_demo_prints_the_difference_honestly(demo):
    text = demo["stdout"]
    assert re.search(r"pretrained - scratch at 4 labeled cases: [+-]\d+\.\d Dice points, 95 % interval "
                     r"\[-?\d+\.\d, -?\d+\.\d\] \((not )?significant\); seeds \[0, 1\]", text), text[-2000:]


def test_the_printed_viewer_command_opens_every_result_with_its_overlay(demo, browser, request, artifacts_dir):
    cmd = demo["command"]
    assert Path(cmd[0]).name == "medssl" and cmd[1] == "viewer", cmd
    assert Path(cmd[0]).is_file(), f"the printed viewer command names {cmd[0]}, which does not exist"
    results = Path(cmd[cmd.index("--results-dir") + 1])
    with (results / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    scans = [r for r in rows if r["code"] != "not_an_image"]  # the label files beside the scans are refused
    phantoms = [r for r in scans if r["case_id"].startswith(("phantom", "case-"))]
    assert len(phantoms) == 6 and all(r["status"] in ("ok", "warning") for r in phantoms), rows
    gen = start_viewer(cmd[2:], demo["out"].parent / "viewer.log")  # the printed arguments, a free port
    url, _ = next(gen)
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(url)
        page.get_by_text("Open a scan", exact=True).wait_for()
        for row in scans:
            page.get_by_text("Results worklist", exact=True).click()
            pick(page, "Case", f"{row['case_id']} [{row['status']}]")
            page.get_by_role("heading", name=re.compile(
                f"^({re.escape(row['case_id'])}|case {uid_hash(row['case_id'])} \\(name hidden)")).wait_for()
            page.get_by_text("Result from the batch run").wait_for()
            frames = settle(page)
            assert "not found" not in page.inner_text('[data-testid="stSidebar"]')
            if row in phantoms:  # the demo's model segments the phantoms' liver (label 1, red)
                drawn = {plane: overlay_pixels(f) for plane, f in frames.items()}
                assert all(n > 0 for n in drawn.values()), (row["case_id"], drawn)
            else:  # the real head CT: shown, and flagged as outside what the model was trained on
                assert row["status"] == "warning" and "out_of_domain" in row["code"], row
            assert_page_has_no_phi(page, f"demo case {row['case_id']}")
            scroll_top(page)
            page.screenshot(path=str(artifacts_dir / f"demo_result_{row['case_id']}.png"), full_page=True)
    finally:
        screenshot_on_failure(request, page, artifacts_dir)
        page.close()
        gen.close()
