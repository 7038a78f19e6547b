"""How fast the command line answers: wall time of `ifcsr --help` and each `ifcsr CMD --help`.

    python analysis/cli_latency.py [--repeat 5]

Prints the median and the worst of `--repeat` fresh processes per command (issue 17's target:
under 1 s on the project's 2-core machine). A benchmark, not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    from ifcsr.cli.app import COMMANDS

    rows = []
    for cmd in [[]] + [[c] for c in COMMANDS]:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ifcsr.cli", *cmd, "--help"], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        rows.append((" ".join(["ifcsr", *cmd, "--help"]), statistics.median(times), max(times)))
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  median s  worst s   ({args.repeat} fresh processes each)")
    for name, med, worst in rows:
        print(f"{name:<{width}}  {med:8.3f}  {worst:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
