"""The explorer screenshot, analysis/results/explorer_screenshot.png, from the real-browser test.

Runs `bash .ci/browser.sh` (Voila serves notebooks/01_quickstart in small mode with the bundled
checkpoint; headless Chromium drags the slider) with IFCSR_SCREENSHOT pointing here, then
records the screenshot in analysis/results/MANIFEST.json. Needs Chromium, Playwright and
Voila: `bash .ci/browser.sh --install-only` installs them (root, apt-get).

    python analysis/explorer_screenshot.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ifcsr.models import BUNDLED_CHECKPOINT
from ifcsr.provenance import record

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "analysis" / "results" / "explorer_screenshot.png"


def main() -> int:
    env = dict(os.environ, IFCSR_SCREENSHOT=str(OUT), PYTHON=os.environ.get("PYTHON", sys.executable))
    env.pop("IFCSR_CHECKPOINT", None)  # the quickstart's default: the bundled checkpoint
    before = OUT.stat().st_mtime if OUT.is_file() else None
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "browser.sh")], cwd=ROOT, env=env)
    if proc.returncode != 0:
        print(f"browser test failed (exit {proc.returncode}); {OUT} not recorded", file=sys.stderr)
        return proc.returncode
    if not OUT.is_file() or (before is not None and OUT.stat().st_mtime == before):
        print(f"the browser test passed but wrote no new {OUT}", file=sys.stderr)
        return 1
    record(OUT, inputs=[BUNDLED_CHECKPOINT])
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
