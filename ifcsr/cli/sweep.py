"""`ifcsr sweep`: metrics for gamma on a grid and for gamma maps, with curves. Imports the standard
library, ifcsr.weights.cache and ifcsr.evaluation.names; torch and the sweep only inside `main`."""

from __future__ import annotations

from ifcsr.evaluation.names import BUILTIN_MAPS
from ifcsr.weights.cache import ifcsr_cache_dir


def common_arguments(p):
    """Options that `ifcsr sweep` and `ifcsr evaluate` share."""
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled tiny one)")
    p.add_argument("--pairs", default="samples",
                   help="'samples' (held-out photos, bicubic x4) or a folder with test_LR/ and test_HR/")
    p.add_argument("--crop", type=int, default=None, help="centred crop of each sample photo (faster)")
    p.add_argument("--out", default=None, help="output folder (default ./ifcsr-sweep or ./ifcsr-evaluate)")
    p.add_argument("--cache", default="default",
                   help=f"endpoint cache folder (default {ifcsr_cache_dir('endpoints')}; 'none' = memory only)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def cache_arg(value):
    return None if str(value).lower() == "none" else value


def add_arguments(p):
    common_arguments(p)
    p.set_defaults(out="ifcsr-sweep")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--step", type=float, default=0.05, help="gamma grid step (default 0.05: 21 values)")
    g.add_argument("--gamma", type=float, nargs="+", default=None, help="explicit gamma values instead of a grid")
    p.add_argument("--gamma-map", nargs="*", default=[], metavar="MAP",
                   help=f"per-pixel gamma maps: greyscale images (white = gamma 1), .npy, or {', '.join(BUILTIN_MAPS)}")
    p.add_argument("--metrics", nargs="+", default=None, help="metric names (default: all per-image metrics)")
    p.add_argument("--x", default=None, help="distortion axis of the perception-distortion plane (default psnr)")
    p.add_argument("--y", default=None, help="perception axis (default: niqe, musiq, ... whichever runs here)")


def main(args) -> int:
    import pandas as pd

    from ifcsr.evaluation.sweep import figure_note, format_timings, gamma_grid, sweep
    from ifcsr.widgets.figures import save_figures

    gammas = args.gamma if args.gamma is not None else gamma_grid(args.step)
    res = sweep(args.checkpoint, args.pairs, gammas=gammas, gamma_maps=args.gamma_map, metrics=args.metrics,
                cache=cache_arg(args.cache), device=args.device, crop=args.crop)
    files = res.save(args.out)
    files.update(save_figures(res.summary, args.out, note=figure_note(res.meta, res.unavailable), x=args.x, y=args.y))
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160,
                           "display.max_columns", 30):
        print(res.summary.drop(columns=["method"]).to_string(index=False))
    if res.unavailable:
        print("unavailable (no number reported): " + "; ".join(f"{k}: {v}" for k, v in res.unavailable.items()))
    print(format_timings(res.timings))
    print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0
