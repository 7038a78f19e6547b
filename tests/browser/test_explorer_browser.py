"""Real-browser test of the live explorer (ifcsr.widgets.explorer.BlendExplorer) in notebooks/01_quickstart.

Voila serves the quickstart on localhost (small mode); Debian's headless Chromium, driven
by Playwright with the system browser, drags the gamma slider and checks that the gamma
readout and the displayed image change. A screenshot of the explorer goes to $IFCSR_SCREENSHOT
(analysis/explorer_screenshot.py sets it to analysis/results/explorer_screenshot.png and records
its provenance), else to the test's temporary folder: a test run never rewrites a results file.

Selected with `-m browser` (or IFCSR_RUN_BROWSER=1); `.ci/browser.sh` installs Chromium,
Playwright and Voila and runs it. When selected, a missing browser or package is a failure,
not a skip.
"""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which this closed
# network refuses many times a second.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 420_000  # Voila executes the whole notebook before the explorer appears


def _selected(config) -> bool:
    return "browser" in (config.getoption("markexpr") or "") or os.environ.get("IFCSR_RUN_BROWSER") == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gamma(text: str) -> float:
    m = re.search(r"gamma = ([0-9.]+)", text)
    assert m, f"no gamma in the readout {text!r}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def voila_url(request, tmp_path_factory):
    if not _selected(request.config):
        pytest.skip("drives a real browser: select with -m browser (or run .ci/browser.sh)")
    missing = [name for name in ("playwright", "voila") if __import__("importlib").util.find_spec(name) is None]
    if missing or not Path(CHROMIUM).is_file():
        pytest.fail(f"missing {missing + ([CHROMIUM] if not Path(CHROMIUM).is_file() else [])}: "
                    "run `bash .ci/browser.sh --install-only`")
    tmp = tmp_path_factory.mktemp("voila")
    port = _free_port()
    env = dict(os.environ, IFCSR_SMALL=os.environ.get("IFCSR_SMALL", "1"),
               HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), IFCSR_CACHE=str(tmp / "cache"))
    with open(tmp / "voila.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--VoilaExecutor.timeout=600"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
        try:
            deadline = time.time() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"voila exited with {proc.returncode}:\n{(tmp / 'voila.log').read_text()[-3000:]}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.time() > deadline:
                    pytest.fail(f"voila did not listen on port {port} within 90 s")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/"
        finally:
            # Voila and the kernels it started share the session we created for it.
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def test_dragging_the_slider_changes_image_and_gamma_readout(voila_url, tmp_path):
    screenshot = Path(os.environ.get("IFCSR_SCREENSHOT") or tmp_path / "explorer_screenshot.png")
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(voila_url, timeout=PAGE_TIMEOUT_MS)
            readout = page.locator(".ifcsr-readout .ifcsr-gamma")
            readout.wait_for(timeout=PAGE_TIMEOUT_MS)
            image = page.locator("img.ifcsr-explorer-image")
            image.scroll_into_view_if_needed()
            g0, src0 = _gamma(readout.inner_text()), image.get_attribute("src")
            pixels0 = np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB"), dtype=int)
            assert g0 == pytest.approx(0.5)

            # drag the gamma slider's handle to the right, as a person would
            handle = page.locator(".ifcsr-explorer .widget-slider .noUi-handle").first
            handle.scroll_into_view_if_needed()
            box = handle.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 150, y, steps=15)
            page.mouse.up()

            page.wait_for_function(
                "g => !document.querySelector('.ifcsr-readout .ifcsr-gamma').textContent.includes(g)",
                arg=f"gamma = {g0:.2f}", timeout=30_000)
            page.wait_for_function("s => document.querySelector('img.ifcsr-explorer-image').src !== s",
                                   arg=src0, timeout=30_000)
            page.wait_for_timeout(500)  # let the last continuous update land
            g1 = _gamma(readout.inner_text())
            slider_readout = float(page.locator(".ifcsr-explorer .widget-slider .widget-readout").first.inner_text())
            pixels1 = np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB"), dtype=int)

            assert g1 > g0 and g1 == pytest.approx(slider_readout, abs=0.011)
            assert image.get_attribute("src") != src0
            assert pixels1.shape == pixels0.shape and np.abs(pixels1 - pixels0).sum() > 0
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".ifcsr-explorer").screenshot(path=str(screenshot))
            widget_errors = [e for e in errors if "widget" in e.lower() or "ifcsr" in e.lower()]
            assert not widget_errors, f"JavaScript errors from the widgets: {widget_errors[:3]}"
        finally:
            browser.close()
    print(f"gamma {g0:.2f} -> {g1:.2f}; screenshot {screenshot}")
