#!/usr/bin/env bash
# The notebooks in CI: every notebooks/NN_*.ipynb executed top to bottom with nbclient in a
# fresh kernel, in small mode (IFCSR_SMALL=1: few steps, small crops), offline; plus the
# checks that each .py/.ipynb pair has the same cells (jupytext-read) and no stored outputs.
# Fails on any cell error. About 3 minutes on 2 CPU cores.
#
#   bash .ci/notebooks.sh                 # all notebooks
#   bash .ci/notebooks.sh -k quickstart   # extra pytest arguments select a subset
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

export IFCSR_SMALL=1 HF_HUB_OFFLINE=1 IFCSR_RUN_NOTEBOOKS=1
start=$(date +%s)
"$PY" -m pytest -q -p no:cacheprovider --durations=0 tests/test_notebooks.py "$@"
echo "notebooks: $(( $(date +%s) - start )) s"
