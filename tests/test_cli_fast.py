"""Issue 17: `ifcsr --help` and every `ifcsr CMD --help` answer without importing torch (the
figure in seconds is in analysis/cli_latency.py), and bad arguments are refused before any model
or torch loads."""

import subprocess
import sys

import pytest

from ifcsr.cli.app import COMMANDS

PROBE = """
import sys
from ifcsr.cli import main
try:
    code = main({argv!r})
except SystemExit as e:
    code = e.code
print("EXIT", code)
print("TORCH", "torch" in sys.modules)
"""


def _probe(argv):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=300)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("EXIT", "TORCH")))
    return lines, out


@pytest.mark.parametrize("argv", [["--help"]] + [[cmd, "--help"] for cmd in COMMANDS], ids=" ".join)
def test_help_does_not_import_torch(argv):
    lines, out = _probe(argv)
    assert lines.get("EXIT") == "0", out.stderr
    assert lines.get("TORCH") == "False", f"`ifcsr {' '.join(argv)}` imported torch"


def test_bad_argument_is_refused_before_torch_loads():
    lines, out = _probe(["demo", "--step", "not-a-number"])
    assert lines.get("EXIT") == "2" and "invalid float value" in out.stderr
    assert lines.get("TORCH") == "False"
