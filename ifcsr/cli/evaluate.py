"""`ifcsr evaluate`: the paper's table for a list of gammas, on the sample photos or (--dataset)
a real-world test set. Imports the standard library, ifcsr.errors, ifcsr.evaluation.names and
ifcsr.cli.sweep; torch and the evaluation only inside `main`."""

from __future__ import annotations

import time

from ifcsr.cli.sweep import cache_arg, common_arguments
from ifcsr.errors import InputError
from ifcsr.evaluation.names import BASELINE_NAMES, PAPER_METRICS


def add_arguments(p):
    common_arguments(p)
    p.set_defaults(out="ifcsr-evaluate")
    p.add_argument("--gamma", type=float, nargs="+", default=None,
                   help="gammas, one row each (default 0 0.2 0.4 0.6 0.8 1; with --dataset: added to the "
                   "paper's 0 0.2 0.6 1)")
    p.add_argument("--metrics", nargs="+", default=list(PAPER_METRICS),
                   help="columns (default the paper's: psnr ssim lpips dists niqe musiq maniqa-pipal clipiqa fid)")
    p.add_argument("--paper", action="store_true",
                   help="also print the paper's RealSR numbers (SD 2.1-base; a different backbone and data)")
    add_dataset_arguments(p)


def add_dataset_arguments(p):
    """Options of `ifcsr evaluate` that apply with --dataset (added to its parser)."""
    g = p.add_argument_group("real-world test sets (with --dataset)")
    g.add_argument("--dataset", default=None,
                   help="realsr, drealsr, or a folder with test_LR/ and test_HR/ (paired by name)")
    g.add_argument("--gammas", nargs="+", default=None, metavar="G",
                   help="IFCSR gammas on top of the paper's 0 0.2 0.6 1: numbers or START:STOP:STEP (0:1:0.05)")
    g.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="a folder of another method's outputs, scored the same way (repeatable)")
    g.add_argument("--no-model", action="store_true", help="only bicubic and the --compare folders: no network")
    g.add_argument("--baselines", nargs="*", default=list(BASELINE_NAMES), choices=BASELINE_NAMES,
                   help="baselines to run (default all; single-stage and k1 need their checkpoints)")
    g.add_argument("--ablations", default=None, help="folder with single_stage/ and k1/ (default analysis/checkpoints)")
    g.add_argument("--every", type=int, default=1, help="score every k-th pair by name (default 1: all)")
    g.add_argument("--limit", type=int, default=None, help="score at most this many pairs")
    g.add_argument("--images", nargs="+", default=None, metavar="NAME", help="score only these pairs (by name)")
    g.add_argument("--batch-size", type=int, default=4, help="LR images per network call (default 4)")


def main(args) -> int:
    from ifcsr.evaluation.sweep import format_timings, paper_table
    from ifcsr.evaluation.tables import PAPER_GAMMAS, paper_reference_table

    if args.dataset is not None:  # a real-world test set: ifcsr.evaluation.benchmark
        return main_dataset(args)
    dataset_only = [o for o, v in (("--gammas", args.gammas), ("--compare", args.compare),
                                   ("--no-model", args.no_model)) if v]
    if dataset_only:
        raise InputError(f"{', '.join(dataset_only)} need --dataset (realsr, drealsr or a folder)")
    res = paper_table(args.checkpoint, args.pairs, gammas=args.gamma or list(PAPER_GAMMAS), metrics=args.metrics,
                      cache=cache_arg(args.cache), device=args.device, out=args.out, crop=args.crop)
    print(f"IFCSR, {res['meta']['model']}; {res['meta']['pairs']}")
    print(res["text"])
    if args.paper:
        print("\nThe paper's numbers on RealSR (SD 2.1-base backbone, trained ~24 h per stage on an H100;"
              " NOT the same backbone or test images as above):")
        quoted = paper_reference_table(as_text=True)
        print(quoted.to_string())
        for note in quoted.attrs.get("notes", []):
            print(f"  note: {note}")
    print(format_timings(res["timings"]))
    if "files" in res:
        print("wrote " + ", ".join(str(f) for f in res["files"].values()))
    return 0


def main_dataset(args) -> int:
    """`ifcsr evaluate --dataset ...`: ifcsr.evaluation.benchmark on a real-world test set."""
    from ifcsr.evaluation.benchmark import PAPER_TABLE_GAMMAS, evaluate_benchmark
    from ifcsr.evaluation.benchmark_sets import parse_compare, parse_gammas

    explicit_gamma = args.gamma is not None
    gammas = list(PAPER_TABLE_GAMMAS) + parse_gammas(args.gammas or []) + (list(args.gamma) if explicit_gamma else [])
    t0 = time.perf_counter()
    res = evaluate_benchmark(args.dataset, checkpoint=args.checkpoint, gammas=gammas,
                             metrics=args.metrics or list(PAPER_METRICS), compare=parse_compare(args.compare),
                             no_model=args.no_model, baselines=args.baselines, ablations=args.ablations,
                             every=args.every, limit=args.limit, names=args.images, cache=None if str(args.cache).lower() == "none"
                             else args.cache, batch_size=args.batch_size, device=args.device)
    wall = time.perf_counter() - t0
    res.timings["wall_s"] = wall
    title = res.meta.get("model", "no model (--no-model)")
    print(f"{res.meta['dataset']}: {res.meta['selection']}; IFCSR: {title}")
    print(res.text)
    files = res.save(args.out)
    print(f"wall time {wall:.1f} s; wrote " + ", ".join(str(f) for f in files.values()))
    return 0
