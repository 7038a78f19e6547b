"""notebooks/strip_solutions.py: the student copy has no solutions and no pointers to them,
and is otherwise the notebooks themselves, pairs still in sync."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
spec = importlib.util.spec_from_file_location("strip_solutions", NOTEBOOK_DIR / "strip_solutions.py")
strip_solutions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(strip_solutions)


def test_student_copy_has_no_solutions_and_no_pointers(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    sources = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    with_pointer = [p for p in sources if "Worked solutions: `notebooks/solutions/" in p.read_text()]
    assert with_pointer, "no notebook points to its solutions: nothing to strip"
    out = tmp_path / "student"
    assert strip_solutions.main([str(out)]) == 0
    names = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert not (out / "solutions").exists() and not any("solutions" in n for n in names)
    assert names == sorted([p.name for p in sources] + [p.with_suffix(".ipynb").name for p in sources]
                           + ["jupytext.toml"])
    for src in sources:
        for suffix in (".py", ".ipynb"):
            assert "Worked solutions" not in (out / src.name).with_suffix(suffix).read_text()
        got = [(c.cell_type, c.source.strip()) for c in jupytext.read(out / src.name).cells]
        got_nb = [(c.cell_type, c.source.strip()) for c in jupytext.read(out / src.with_suffix(".ipynb").name).cells]
        assert got == got_nb, f"{src.name}: the student pair is out of sync"
        want = [(c.cell_type, c.source.strip()) for c in jupytext.read(src).cells]
        assert len(got) == len(want)
        changed = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        if src in with_pointer:  # only the Exercises cell changes, and only by the pointer line
            assert len(changed) == 1 and "Exercises" in got[changed[0]][1]
            expected = re.sub(r"\n\nWorked solutions: `notebooks/solutions/[^`]+`\.?", "", want[changed[0]][1])
            assert got[changed[0]][1] == expected
        else:
            assert changed == []


def test_strip_ipynb_keeps_other_lines_and_the_list_form():
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [
        "## Exercises\n", "\n", "1. Do it.\n", "\n", "Worked solutions: `notebooks/solutions/01_x.py`."]},
        {"cell_type": "code", "metadata": {}, "source": ["# Worked solutions: `notebooks/solutions/01_x.py`."],
         "outputs": [], "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    cells = json.loads(strip_solutions.strip_ipynb(json.dumps(nb)))["cells"]
    assert cells[0]["source"] == ["## Exercises\n", "\n", "1. Do it."]
    assert cells[1] == nb["cells"][1]  # code cells are never touched


def test_strip_py_pointer_at_the_top_or_the_end_of_the_cell():
    top = "# %% [markdown]\n# ## Exercises\n#\n# Worked solutions: `notebooks/solutions/07_t.py`.\n#\n# 1. Do.\n"
    assert strip_solutions.strip_py(top) == "# %% [markdown]\n# ## Exercises\n#\n# 1. Do.\n"
    end = "# ## Exercises\n#\n# 1. Do.\n#\n# Worked solutions: `notebooks/solutions/01_x.py`.\n\n# %%\nx = 1\n"
    assert strip_solutions.strip_py(end) == "# ## Exercises\n#\n# 1. Do.\n\n# %%\nx = 1\n"


def test_refuses_a_non_empty_target_and_a_target_inside_the_notebooks(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert strip_solutions.main([str(tmp_path / "used")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="outside the notebooks folder"):
        strip_solutions.strip(NOTEBOOK_DIR, NOTEBOOK_DIR / "student")
    with pytest.raises(FileNotFoundError, match="no NN_"):
        strip_solutions.strip(tmp_path / "used", tmp_path / "new")
