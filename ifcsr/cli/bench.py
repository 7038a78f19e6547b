"""`ifcsr bench`: cost of control, inference, training, tiling (ifcsr.evaluation.bench). Imports the
standard library; torch and the benchmarks only inside `main`."""

from __future__ import annotations

import sys
from pathlib import Path


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="CI-sized run: small images, few repeats (about a minute)")
    p.add_argument("--parts", default="a,b,c,d,e",
                   help="comma-separated subset of a,b,c,d,e; sd = e (SD 2.1-base-sized, GPU: endpoints, blend, "
                        "training steps and peak memory)")
    p.add_argument("--out", default="bench-results", help="folder for benchmarks.csv")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: bundled, else random weights)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs of network work (median)")
    p.add_argument("--blend-repeats", type=int, default=None, help="timed runs of blends and copies")
    p.add_argument("--sizes-a", type=_sizes, default=None, help="output sides for part a, e.g. 256,1024")
    p.add_argument("--sizes-b", type=_sizes, default=None, help="output sides for part b")
    p.add_argument("--sizes-d", type=_sizes, default=None, help="output sides for part d, e.g. 512,1024,2048")
    p.add_argument("--untiled-max", type=int, default=None, help="part d: largest side run untiled")


def config_from_args(args):
    """The BenchConfig the options ask for."""
    from ifcsr.evaluation.bench_common import BenchConfig

    kw = dict(parts=tuple(s.strip() for s in args.parts.split(",") if s.strip()), threads=args.threads,
              checkpoint=args.checkpoint)
    for k in ("repeats", "blend_repeats", "sizes_a", "sizes_b", "sizes_d", "untiled_max"):
        if getattr(args, k, None) is not None:
            kw[k] = getattr(args, k)
    return BenchConfig.quick_config(**kw) if args.quick else BenchConfig(**kw)


def main(args) -> int:
    import warnings

    from ifcsr.evaluation.bench import format_table, run, write_csv

    warnings.filterwarnings("ignore", message=".*peft_config.*")
    bc = config_from_args(args)
    path = Path(args.out) / "benchmarks.csv"
    rows = run(bc, log=lambda m: print(m, file=sys.stderr, flush=True), csv_path=path)
    write_csv(rows, path)
    print(format_table(rows))
    print(f"\nwrote {path}")
    return 0
