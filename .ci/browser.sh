#!/usr/bin/env bash
# Real-browser test of the live explorer: Voila serves notebooks/01_quickstart.ipynb (small
# mode) on localhost, Debian's headless Chromium driven by Playwright drags the gamma slider
# and checks that the image and the gamma readout change; the screenshot goes to
# analysis/results/explorer_screenshot.png. Installs what it needs first (root: apt-get).
#
#   bash .ci/browser.sh                  # install what is missing, then run the test
#   bash .ci/browser.sh --install-only   # install only
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

# Debian's Chromium (Playwright's own browser downloads are not reachable from here).
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
# Playwright drives the system browser; Voila serves the notebook. Never `playwright install`.
if ! "$PY" -c "import playwright, voila" 2>/dev/null; then
  "$PY" -m pip install -q "playwright==1.65.2" "voila==0.5.13"
fi
if [ "${1:-}" = "--install-only" ]; then
  echo "browser test: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright and voila installed"
  exit 0
fi

export IFCSR_SMALL=1 HF_HUB_OFFLINE=1 IFCSR_RUN_BROWSER=1
"$PY" -m pytest -q -p no:cacheprovider -m browser tests/browser "$@"
