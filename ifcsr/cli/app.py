"""The `ifcsr` command line: the parser, the dispatch and THE error handler. Imports only the
standard library; each command's module (ifcsr.cli.NAME) is imported only when that command runs.

Each subcommand lives in its own module with `add_arguments(parser)` and `main(args) -> int`.
Only the module of the command being run is imported (and none for `ifcsr --help`), so help
answers and bad arguments are rejected before torch or a model loads; the command modules
import torch only inside their functions (tests/test_cli_fast.py checks it).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, help)
COMMANDS = {
    "demo": ("ifcsr.cli.demo", "super-resolve a held-out photo with the bundled checkpoint; write images, figure, CSV"),
    "train": ("ifcsr.cli.train", "train stages 0/1/2 (e.g. `ifcsr train --preset tiny`)"),
    "infer": ("ifcsr.cli.infer", "infer both endpoints of LR images once and save them (plus blends)"),
    "sweep": ("ifcsr.cli.sweep", "gamma sweep: metrics for gamma on a grid and for gamma maps, with curves"),
    "evaluate": ("ifcsr.cli.evaluate", "the paper's table (PSNR, SSIM, LPIPS, ... FID) for a list of gammas"),
    "bench": ("ifcsr.cli.bench", "benchmarks: cost of control, inference, training, tiling"),
    "fetch-weights": ("ifcsr.cli.fetch_weights", "fetch offline weights: vgg-hed, realesrgan, or pyiqa metric names"),
    "fetch-data": ("ifcsr.cli.fetch_data", "download the RealSR / DRealSR test sets (sha256-checked) into the cache"),
}


def _requested_command(argv) -> str | None:
    """The subcommand named on the command line, if any (the first word that is one)."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser. With argv, only that command's options are built (and its module imported);
    without, every command's (slow: imports every command module)."""
    parser = argparse.ArgumentParser(prog="ifcsr", description="`ifcsr` command line: " + " | ".join(COMMANDS) + ".")
    from ifcsr import __version__

    wanted = None if argv is None else _requested_command(argv)

    parser.add_argument("--version", action="version", version=f"ifcsr {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (default: one line for expected errors)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module, _command=name)
        if argv is not None and name != wanted:
            continue  # its options are built only when it is the command being run
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return run_command(importlib.import_module(args._module).main, args, debug=args.debug)


def run_command(runner, args, *, debug: bool = False) -> int:
    """THE handler of the CLI. Expected failures (any ifcsr.errors.IFCSRError: bad input, bad or
    unsafe file, missing weights; and OSErrors of the file system) print one line naming the file
    or argument and the fix, exit status 2. Anything else is a bug in ifcsr: one line saying so,
    exit status 1, and its traceback with `ifcsr --debug ...`."""
    from ifcsr.errors import IFCSRError, describe_os_error

    cmd = args._command
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except IFCSRError as err:
        if debug:
            raise
        print(f"ifcsr {cmd}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system: read-only, full, bad name (the user's environment)
        if debug:
            raise
        print(f"ifcsr {cmd}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        print(f"ifcsr {cmd}: internal error (a bug in ifcsr, please report it): {type(err).__name__}: {err}\n"
              f"  rerun with `ifcsr --debug {cmd} ...` for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
