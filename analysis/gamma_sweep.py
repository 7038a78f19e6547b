"""Gamma sweep on the two held-out photos: IFCSR and every baseline, on the same plots.

    python analysis/train_ablations.py     # once: the single-stage and k = 1 checkpoints
    python analysis/gamma_sweep.py         # -> analysis/results/

IFCSR infers both endpoints once per photo (cached on disk); every gamma on the 0..1 grid
(and two per-pixel gamma maps) is a pixel blend. The baselines: bicubic; each endpoint
alone; the single-stage ablation blended naively; the k = 1 recipe; DNI (LoRA weight
interpolation, one UNet pass + decode per point); Real-ESRGAN x4plus.

Writes to analysis/results/: gamma_sweep.csv (tidy: method, image, gamma, gamma_map,
metric, value), gamma_sweep_summary.csv (mean over the photos per method and gamma),
gamma_sweep_positions.csv (each baseline relative to the IFCSR curve), gamma_sweep_timings.csv,
gamma_curves.png, perception_distortion.png (PSNR vs the first no-reference metric that
runs here) and perception_distortion_lpips-hed.png (PSNR vs lpips-hed).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    from ifcsr.evaluation.baselines import run_baselines
    from ifcsr.evaluation.endpoint_cache import EndpointCache, default_cache_dir
    from ifcsr.evaluation.sweep import (
        figure_note,
        gamma_grid,
        load_pairs,
        make_suite,
        min_side,
        pick_axes,
        position_vs_curve,
        summarize,
        sweep,
    )
    from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR
    from ifcsr.provenance import record
    from ifcsr.widgets.figures import save_figures

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT))
    p.add_argument("--ablations", default=str(HERE / "checkpoints"), help="folder with single_stage/ and k1/")
    p.add_argument("--step", type=float, default=0.05, help="gamma grid of IFCSR and the naive blends")
    p.add_argument("--dni-step", type=float, default=0.1, help="DNI grid (each point is a network pass)")
    p.add_argument("--crop", type=int, default=None, help="centred crop of the photos (faster; default whole)")
    p.add_argument("--metrics", nargs="+", default=None, help="default: every per-image metric that runs here")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-realesrgan", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = IFCSR.load(args.checkpoint)
    pairs = load_pairs("samples", scale=model.scale, crop=args.crop)
    suite = make_suite(args.metrics, min_side=min_side(pairs))
    cache = EndpointCache(model, default_cache_dir())
    gammas = gamma_grid(args.step)
    res = sweep(model, pairs, gammas=gammas, gamma_maps=["ramp", "center"], suite=suite, cache=cache,
                log=print)
    abl = Path(args.ablations)
    base = run_baselines(model, pairs, suite=suite, gammas=gammas, cache=cache,
                         single_stage=abl / "single_stage", k1=abl / "k1", dni_gammas=gamma_grid(args.dni_step),
                         realesrgan=not args.no_realesrgan)
    tidy = pd.concat([res.tidy, base.tidy], ignore_index=True)
    summary = summarize(tidy)
    tidy.to_csv(out / "gamma_sweep.csv", index=False)
    summary.to_csv(out / "gamma_sweep_summary.csv", index=False)
    timings = pd.DataFrame([dict(method="IFCSR", network_calls=res.timings["network_calls"],
                                 infer_s=res.timings["infer_s"] + res.timings["cache_load_s"],
                                 blend_s=res.timings["blend_s"], metrics_s=res.timings["metrics_s"],
                                 points=res.timings["gammas"], note="endpoints once per image (or read from the "
                                 "cache), then pixel blends")] + base.timings)
    timings.to_csv(out / "gamma_sweep_timings.csv", index=False)

    unavailable = dict(suite.unavailable)
    meta = dict(res.meta, pairs=f"held-out photos chelsea + coffee{f' (centre {args.crop}px)' if args.crop else ''}, "
                                f"bicubic x4")
    note = figure_note(meta, unavailable)
    if base.unavailable:
        note += "; baselines not run: " + ", ".join(base.unavailable)
    files = save_figures(summary, out, note=note, title_suffix=" - IFCSR and baselines")
    x, y = pick_axes(summary)
    positions = position_vs_curve(summary, x, y)
    positions.to_csv(out / "gamma_sweep_positions.csv", index=False)
    extra = {}
    if y != "lpips-hed" and "lpips-hed" in summary.columns and summary["lpips-hed"].notna().any():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ifcsr.widgets.figures import perception_distortion_figure

        fig = perception_distortion_figure(summary, x, "lpips-hed", note=note,
                                           title="Distortion (PSNR) against deep-feature distance (lpips-hed)")
        extra["pd_lpips_hed"] = out / "perception_distortion_lpips-hed.png"
        fig.savefig(extra["pd_lpips_hed"], dpi=120)
        plt.close(fig)
        position_vs_curve(summary, x, "lpips-hed").to_csv(out / "gamma_sweep_positions_lpips-hed.csv", index=False)
    (out / "gamma_sweep_meta.json").write_text(json.dumps(dict(
        meta=meta, unavailable_metrics=unavailable, unavailable_baselines=base.unavailable, axes=[x, y],
        checkpoint=str(args.checkpoint), ablations=str(abl), total_s=time.perf_counter() - t_start), indent=2))

    written = [out / f for f in ("gamma_sweep.csv", "gamma_sweep_summary.csv", "gamma_sweep_timings.csv",
                                 "gamma_sweep_positions.csv", "gamma_sweep_meta.json")]
    if "pd_lpips_hed" in extra:
        written.append(out / "gamma_sweep_positions_lpips-hed.csv")
    record([*written, *files.values(), *extra.values()],
           inputs=[args.checkpoint, *(p for p in (abl / "single_stage", abl / "k1") if p.is_dir())])

    cols = [c for c in summary.columns if c not in ("method", "n_images")]
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200, "display.max_rows", 200,
                           "display.max_columns", 20):
        print("\nIFCSR, mean over the photos per gamma:")
        print(summary[summary.method == "IFCSR"][cols].to_string(index=False))
        print("\nBaselines (curves: gamma 0, 0.5, 1 shown; all points in gamma_sweep_summary.csv):")
        others = summary[summary.method != "IFCSR"]
        keep = others["gamma"].isna() | others["gamma"].round(6).isin([0.0, 0.5, 1.0])
        print(others[keep][["method", *cols]].to_string(index=False))
        print(f"\nPosition relative to the IFCSR curve in ({x}, {y}):")
        print(positions[["method", "gamma", x, y, "nearest_gamma", f"d_{x}", f"d_{y}", "verdict"]]
              .to_string(index=False))
        print("\nCost:")
        print(timings.to_string(index=False))
    if unavailable:
        print("metrics unavailable here: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    if base.unavailable:
        print("baselines not run: " + "; ".join(f"{k}: {v}" for k, v in base.unavailable.items()))
    print("figures: " + ", ".join(str(f) for f in [*files.values(), *extra.values()]))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
