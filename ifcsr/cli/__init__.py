"""The `ifcsr` command line: `app` (parser, dispatch, error handler) and one module per command
(demo, train, infer, sweep, evaluate, bench, fetch_weights, fetch_data). May import everything.

`ifcsr = "ifcsr.cli:main"` is the console script; `python -m ifcsr.cli ...` runs it too.
"""

from ifcsr.cli.app import COMMANDS, build_parser, main, run_command

__all__ = ["COMMANDS", "build_parser", "main", "run_command"]
