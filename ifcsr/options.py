"""Command-line options of the commands whose code needs torch (sweep, evaluate, bench), and
the names those options offer. Imports only the standard library and ifcsr.cache.

`ifcsr CMD --help` and argument errors are answered from here without loading torch; the
command's module (`ifcsr.sweep`, `ifcsr.benchmark`, `ifcsr.bench`) is imported only to run it.
"""

from __future__ import annotations

from .cache import ifcsr_cache_dir

PAPER_METRICS = ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa-pipal", "clipiqa", "fid")
BUILTIN_MAPS = ("ramp", "ramp-y", "center")  # ifcsr.sweep.builtin_gamma_map
BASELINE_NAMES = ("realesrgan", "single-stage", "k1", "dni")  # ifcsr.benchmark


def _common_arguments(p):
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled tiny one)")
    p.add_argument("--pairs", default="samples",
                   help="'samples' (held-out photos, bicubic x4) or a folder with test_LR/ and test_HR/")
    p.add_argument("--crop", type=int, default=None, help="centred crop of each sample photo (faster)")
    p.add_argument("--out", default=None, help="output folder (default ./ifcsr-sweep or ./ifcsr-evaluate)")
    p.add_argument("--cache", default="default",
                   help=f"endpoint cache folder (default {ifcsr_cache_dir('endpoints')}; 'none' = memory only)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def add_sweep_arguments(p):
    _common_arguments(p)
    p.set_defaults(out="ifcsr-sweep")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--step", type=float, default=0.05, help="gamma grid step (default 0.05: 21 values)")
    g.add_argument("--gamma", type=float, nargs="+", default=None, help="explicit gamma values instead of a grid")
    p.add_argument("--gamma-map", nargs="*", default=[], metavar="MAP",
                   help=f"per-pixel gamma maps: greyscale images (white = gamma 1), .npy, or {', '.join(BUILTIN_MAPS)}")
    p.add_argument("--metrics", nargs="+", default=None, help="metric names (default: all per-image metrics)")
    p.add_argument("--x", default=None, help="distortion axis of the perception-distortion plane (default psnr)")
    p.add_argument("--y", default=None, help="perception axis (default: niqe, musiq, ... whichever runs here)")


def add_evaluate_arguments(p):
    _common_arguments(p)
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


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def add_bench_arguments(p) -> None:
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
