"""Write a student copy of the notebooks: no solutions/ folder, no "Worked solutions" pointers.

    python notebooks/strip_solutions.py OUT            # OUT must not exist yet (or be empty)
    python notebooks/strip_solutions.py OUT --notebooks path/to/notebooks

Copies the paired notebooks (NN_*.py and NN_*.ipynb) and jupytext.toml; leaves out
solutions/, run outputs (runs/) and this script. In every copied notebook the line
"Worked solutions: `notebooks/solutions/NN_name.py`." is removed from the Exercises cell,
in the .py and in the .ipynb alike, so the pairs stay in sync. Needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

POINTER = re.compile(r"^Worked solutions: `notebooks/solutions/[^`]+`\.?[ \t]*$")
NOT_MARKDOWN = "\0"  # what a code line or a cell separator of a py:percent file reads as
NOTEBOOK = re.compile(r"^\d\d_.+\.(py|ipynb)$")


def _drop_pointers(lines: list[str], text_of) -> list[str]:
    """Remove every pointer line, and the blank line before it when a blank line or the end
    of the cell follows (so "text, blank, pointer, blank, text" keeps one blank line).
    text_of(line) gives a line's markdown text, or NOT_MARKDOWN outside the cell."""
    out: list[str] = []
    for i, line in enumerate(lines):
        if POINTER.match(text_of(line)):
            rest = lines[i + 1 :]
            if out and text_of(out[-1]) == "" and (not rest or text_of(rest[0]) in ("", NOT_MARKDOWN)):
                out.pop()
            continue
        out.append(line)
    return out


def strip_py(text: str) -> str:
    """Remove the pointer line (`# Worked solutions: ...`) of a py:percent notebook."""
    def text_of(line: str) -> str:
        body = line.rstrip("\r\n")
        return body[2:] if body.startswith("# ") else ("" if body == "#" else NOT_MARKDOWN)

    return "".join(_drop_pointers(text.splitlines(keepends=True), text_of))


def strip_ipynb(text: str) -> str:
    """Remove the pointer line from every markdown cell of an .ipynb (JSON)."""
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell["source"]
        lines = ("".join(src) if isinstance(src, list) else src).split("\n")
        kept = _drop_pointers(lines, lambda line: line if line.strip() else "")
        if len(kept) == len(lines):
            continue
        if isinstance(src, list):  # nbformat's list form: every line but the last ends in "\n"
            cell["source"] = [line + "\n" for line in kept[:-1]] + kept[-1:]
        else:
            cell["source"] = "\n".join(kept)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def strip(notebooks: Path, out: Path) -> list[Path]:
    """Write the student copy of `notebooks` into `out`; returns the files written."""
    notebooks, out = Path(notebooks).resolve(), Path(out).resolve()
    if not notebooks.is_dir():
        raise FileNotFoundError(f"{notebooks}: no such folder of notebooks")
    if out == notebooks or notebooks in out.parents:
        raise ValueError(f"{out}: write the student copy outside the notebooks folder {notebooks}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: choose a new one")
    sources = sorted(p for p in notebooks.iterdir() if p.is_file() and NOTEBOOK.match(p.name))
    if not sources:
        raise FileNotFoundError(f"{notebooks}: no NN_*.py / NN_*.ipynb notebooks in it")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in sources:
        text = p.read_text(encoding="utf-8")
        target = out / p.name
        target.write_text(strip_py(text) if p.suffix == ".py" else strip_ipynb(text), encoding="utf-8")
        written.append(target)
    for name in ("jupytext.toml",):
        if (notebooks / name).is_file():
            written.append(Path(shutil.copy2(notebooks / name, out / name)))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="new folder for the student copy")
    p.add_argument("--notebooks", type=Path, default=Path(__file__).resolve().parent,
                   help="the notebooks folder (default: the one holding this script)")
    args = p.parse_args(argv)
    try:
        files = strip(args.notebooks, args.out)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} files to {args.out} (no solutions/, no pointers to them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
