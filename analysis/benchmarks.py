"""Benchmarks: the cost of control, inference, training and large images (the "Performance" issue).

    python analysis/benchmarks.py                  # the full run: tens of minutes on 2 CPU cores
    python analysis/benchmarks.py --quick          # CI-sized, about a minute
    python analysis/benchmarks.py --parts a,b      # a subset

Prints the table and writes analysis/results/benchmarks.csv. The logic and the options are
those of `ifcsr bench` (ifcsr/cli/bench.py, ifcsr/evaluation/bench.py); this script only sets the output folder.
"""

import argparse
import sys
from pathlib import Path

from ifcsr.cli import bench
from ifcsr.models import BUNDLED_CHECKPOINT
from ifcsr.provenance import record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    parser.set_defaults(out=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    rc = bench.main(args)
    # Timings: expensive (tens of minutes), and only the architecture and config matter, but the
    # bundled checkpoint is what ran.
    record(Path(args.out) / "benchmarks.csv", inputs=[args.checkpoint or BUNDLED_CHECKPOINT], expensive=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
