"""The notebooks: paired sources in sync and clean (always), executed top to bottom (selected).

    pytest tests/test_notebooks.py                      # sync + structure checks, seconds
    pytest -m notebooks tests/test_notebooks.py         # also executes every notebook (small mode)

Execution runs each stored .ipynb with nbclient in a fresh kernel, in small mode
(IFCSR_SMALL=1: few steps, small crops) unless IFCSR_SMALL is already set, in a temporary
working folder. It is skipped unless selected with `-m notebooks` (or IFCSR_RUN_NOTEBOOKS=1),
so the default test run stays fast; `.ci/notebooks.sh` selects it.
"""

import os
import re
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("[0-9][0-9]_*.py"))
EXPECTED = ["01_quickstart", "02_method", "03_training", "04_tradeoff_curves", "05_classroom_demo",
            "06_gpu_inference", "07_theory", "08_risk_and_auto_gamma"]


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def _selected(config) -> bool:
    return "notebooks" in (config.getoption("markexpr") or "") or os.environ.get("IFCSR_RUN_NOTEBOOKS") == "1"


def test_the_set_of_notebooks_is_complete():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    assert {p.stem for p in SOLUTIONS} <= set(EXPECTED), "a solutions file without its notebook"


@pytest.mark.parametrize("source", NOTEBOOKS + SOLUTIONS, ids=lambda p: ("solutions/" if p.parent.name == "solutions" else "") + p.stem)
def test_pair_in_sync_and_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run `jupytext --sync {source}`"
    py_cells, nb_cells = _cells(jupytext.read(source)), _cells(jupytext.read(ipynb))
    assert py_cells == nb_cells, (
        f"{source.name} and {ipynb.name} differ (first differing cell "
        f"{next(i for i, (a, b) in enumerate(zip(py_cells + [None], nb_cells + [None])) if a != b)}); "
        f"run `jupytext --sync {source}`")
    raw = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(raw.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{ipynb.name} cell {i} has outputs"
    assert "widgets" not in raw.metadata, f"{ipynb.name} stores widget state"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_goals_and_ends_with_exercises_and_questionnaire(source):
    cells = jupytext.read(source).cells
    first_md = next(c for c in cells if c.cell_type == "markdown")
    assert "What you will learn" in first_md.source
    last = cells[-1]
    assert last.cell_type == "markdown"
    # fastbook style: a questionnaire whose answers are in the notebook closes every notebook
    assert "Questionnaire" in last.source, f"{source.name}: the last cell should be the questionnaire"
    n = len(re.findall(r"^\d+\. ", last.source, flags=re.MULTILINE))
    assert 5 <= n <= 8, f"{source.name}: {n} questionnaire questions, expected five to eight"
    last = [c for c in cells if c.cell_type == "markdown"][-2]
    assert "Exercises" in last.source
    n = len(re.findall(r"^\d+\. ", last.source, flags=re.MULTILINE))
    assert 2 <= n <= 3, f"{source.name}: {n} exercises, expected two or three"
    solutions = NOTEBOOK_DIR / "solutions" / source.name
    if solutions.is_file():
        assert f"solutions/{source.name}" in last.source, "the exercises should point to their solutions"


@pytest.mark.notebooks
@pytest.mark.parametrize("source", NOTEBOOKS + SOLUTIONS, ids=lambda p: ("solutions/" if p.parent.name == "solutions" else "") + p.stem)
def test_notebook_executes(source, tmp_path, request, monkeypatch):
    if not _selected(request.config):
        pytest.skip("executes the notebook: select with -m notebooks (or run .ci/notebooks.sh)")
    from nbclient import NotebookClient

    monkeypatch.setenv("IFCSR_SMALL", os.environ.get("IFCSR_SMALL", "1"))
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("IFCSR_CACHE", str(tmp_path / "cache"))  # no endpoint cache shared across runs
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)  # run what is stored
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    print(f"{source.stem}: {seconds:.1f} s")
