"""The README's Python snippet runs as printed (issue 17: it once used an undefined name)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python snippet"
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    x, x_map, ends = scope["x"], scope["x_map"], scope["ends"]
    assert x.shape == x_map.shape == ends.fidelity.shape
    # left column is the fidelity endpoint, right column the realism one
    assert (x_map[..., 0] - ends.fidelity[..., 0]).abs().max() < 1e-6
    assert (x_map[..., -1] - ends.realism[..., -1]).abs().max() < 1e-6
