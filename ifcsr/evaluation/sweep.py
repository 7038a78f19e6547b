"""Gamma sweeps and the paper's table: infer each endpoint pair ONCE, then every gamma is free.
Imports torch, pandas, the core (models), ifcsr.data and ifcsr.evaluation (metrics, endpoint_cache, gamma_maps, tables).

    result = sweep("ckpt/", "samples")           # held-out photos, bicubic x4
    result.summary                               # mean per gamma: psnr, ssim, lpips-hed, ...
    result.timings                               # inference and blending timed separately
    result.save("out/")                          # sweep.csv, summary.csv, timings.json

For every image the two endpoint images f_theta(x_L) and f_phi(x_L) are inferred once
(`EndpointCache`: in memory, and on disk keyed by a fingerprint of the checkpoint and of
the LR image), then the blend (1 - gamma) * fidelity + gamma * realism is scored for gamma
on a grid (default 0..1 step 0.05) and for per-pixel gamma maps. `ifcsr sweep` and
`ifcsr evaluate` are the command lines of this module.

The paper's table (`ifcsr evaluate`, `paper_table`): PSNR, SSIM, LPIPS, DISTS, NIQE, MUSIQ,
MANIQA, CLIPIQA, FID per gamma. Metrics that cannot run here are printed as "unavailable"
with the reason, never as a number. The paper's own numbers on RealSR (SD 2.1-base backbone,
`PAPER_REALSR`) can be printed beside ours (`--paper`); they come from a different backbone,
training set and test set, so they are a reference, not a target for the tiny backbone:

    gamma   PSNR   SSIM    LPIPS   NIQE  MUSIQ  CLIPIQA
    0.0    28.00  0.7975  0.2921  7.89  47.64  0.333
    0.2    27.34  0.7764  0.2540  6.26  61.58  0.509
    0.6    24.41  0.6825  0.3008  5.24  70.12  0.671
    1.0    22.10  0.6075  0.3501  4.90  70.29  0.701
    OSEDiff 25.15 0.7341  0.2921  5.65  69.09  0.669   (peer, one point)
    PiSA-SR 25.50 0.7417  0.2672  5.50  70.15  0.670   (peer, default scales)

(LPIPS of gamma 0 equals OSEDiff's, 0.2921, in our transcription; not re-checked against the PDF:
`ifcsr.evaluation.tables.PAPER_LPIPS_NOTE`.)
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ifcsr.data.images import ImageError
from ifcsr.errors import InputError, MissingFileError
from ifcsr.evaluation.endpoint_cache import EndpointCache, _safe, default_cache_dir
from ifcsr.evaluation.gamma_maps import load_gamma_map
from ifcsr.evaluation.names import PAPER_METRICS  # the names the command line offers
from ifcsr.evaluation.tables import PAPER_GAMMAS, format_table, markdown_table, table_cells

# ------------------------------------------------------------------------------ constants

TIDY_COLUMNS = ["method", "image", "gamma", "gamma_map", "metric", "value", "lower_better"]
# Axes of the perception-distortion plane, in order of preference when available.
DISTORTION_AXES = ("psnr", "lpips", "dists", "ssim", "lpips-hed")
PERCEPTION_AXES = ("niqe", "musiq", "maniqa-pipal", "clipiqa")


def gamma_grid(step: float = 0.05) -> np.ndarray:
    """0, step, ..., 1 (step must divide 1 up to rounding)."""
    if not 0 < step <= 1:
        raise InputError(f"gamma step must be in (0, 1], got {step}")
    n = round(1 / step)
    if abs(n * step - 1) > 1e-6:
        raise InputError(f"gamma step {step} does not divide [0, 1] evenly (try 0.05, 0.1, 0.2, 0.25)")
    return np.round(np.linspace(0, 1, n + 1), 6)


def _check_gammas(gammas) -> list[float]:
    out = [float(g) for g in np.atleast_1d(np.asarray(gammas, dtype=float))]
    if not out:
        raise InputError("no gamma values given")
    bad = [g for g in out if not (math.isfinite(g) and 0 <= g <= 1)]
    if bad:
        raise InputError(f"gamma values must be in [0, 1], got {bad}")
    return out


# ------------------------------------------------------------------------------ pairs


def load_pairs(pairs="samples", *, scale: int = 4, crop: int | None = None) -> list[dict]:
    """LR/HR pairs as dicts {"lr": (3, h, w), "hr": (3, H, W), "name": str}.

    pairs: "samples" (the held-out scikit-image photos, bicubic x`scale`), a PairedFolder
    directory (`test_LR/` and `test_HR/`, RealSR/DRealSR naming), or a list of such dicts.
    crop: a centred crop x crop of each sample photo (samples only; faster sweeps).
    """
    from ifcsr.data.degradations import BicubicDegradation
    from ifcsr.data.folders import PairedFolder, pairs_from_samples
    from ifcsr.data.samples import HELD_OUT

    if isinstance(pairs, (list, tuple)):
        for i, p in enumerate(pairs):
            if not isinstance(p, dict) or not {"lr", "hr"} <= set(p):
                raise InputError(f"pairs[{i}] must be a dict with 'lr' and 'hr' (and 'name'), got {type(p).__name__}")
        return [dict(p, name=str(p.get("name", i))) for i, p in enumerate(pairs)]
    if str(pairs) == "samples":
        return pairs_from_samples(HELD_OUT, BicubicDegradation(scale), crop=crop)
    root = Path(pairs)
    if not root.is_dir():
        raise MissingFileError(f"--pairs {pairs}: neither 'samples' nor a folder with test_LR/ and test_HR/")
    if crop is not None:
        raise InputError("crop applies to the sample photos only; crop your folder's pairs beforehand")
    ds = PairedFolder(root, scale=scale)
    return [ds[i] for i in range(len(ds))]


def describe_pairs(pairs) -> str:
    if str(pairs) == "samples":
        from ifcsr.data.samples import HELD_OUT

        return f"held-out scikit-image photos ({', '.join(HELD_OUT)}), bicubic x4"
    if isinstance(pairs, (list, tuple)):
        return f"{len(pairs)} pairs ({', '.join(str(p.get('name', i)) for i, p in enumerate(pairs[:4]))}" + (
            ", ...)" if len(pairs) > 4 else ")")
    return f"paired folder {pairs}"


# ------------------------------------------------------------------------------ the sweep


def as_model(model, device=None):
    """A model from a checkpoint folder, None (the default checkpoint), or a model itself (an IFCSR
    on a diffusion backbone or a GeneratorIFCSR: anything with `infer`)."""
    from ifcsr.models import IFCSR

    if isinstance(model, torch.nn.Module) and hasattr(model, "infer"):
        return model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return IFCSR.load(model, device=device)


def describe_model(model) -> str:
    """'tiny backbone, vgg-hed loss features' or 'backbone <source>, vgg loss features'."""
    if getattr(model, "kind", "diffusion") == "generator":
        bb = f"pretrained generator {model.backbone.source} (not diffusion)"
    else:
        bb = "tiny backbone" if model.backbone.is_tiny else f"backbone {model.backbone.source}"
    return f"{bb}, losses on {model.config.loss.feature_net} features, k={model.config.loss.k:g}"


def make_suite(metrics=None, *, device="cpu", min_side: int | None = None):
    """A MetricSuite over every per-image metric (default) or the given names. Metrics that
    cannot run here -- missing weights, or images smaller than the metric's minimum size
    (`min_side`: the smallest image side of the pairs) -- are recorded in suite.unavailable
    with the reason instead of being warned about or computed."""
    from ifcsr.evaluation.metrics import DEFAULT_METRICS, REGISTRY, MetricSuite

    names = list(DEFAULT_METRICS) if metrics is None else [m for m in metrics if m != "fid"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = MetricSuite(names, device=device)
    if min_side is not None:
        for m in suite.available:
            need = REGISTRY[m].min_size
            if need > min_side:
                suite.unavailable[m] = f"needs images of at least {need}x{need} pixels; the smallest here has a side of {min_side}"
    return suite


def min_side(pairs: list[dict]) -> int:
    return min(min(p["hr"].shape[-2:]) for p in pairs)


def _score(suite, x, hr, *, image, gamma, method, gamma_map="") -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = suite(x, hr, image=image, gamma=gamma)
    df.insert(0, "method", method)
    df.insert(3, "gamma_map", gamma_map)
    return df


@dataclass
class SweepResult:
    tidy: pd.DataFrame                      # TIDY_COLUMNS, one row per method/image/gamma/metric
    timings: dict                           # infer_s, blend_s, metrics_s, network_calls, ...
    unavailable: dict = field(default_factory=dict)  # metric -> reason
    meta: dict = field(default_factory=dict)         # backbone, feature net, images, checkpoint

    @property
    def summary(self) -> pd.DataFrame:
        return summarize(self.tidy)

    def save(self, out, *, prefix: str = "") -> dict:
        """Write <prefix>sweep.csv, summary.csv, timings.json to `out`; returns {what: path}.
        The figures: ``ifcsr.widgets.figures.save_figures(result.summary, out, ...)``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"sweep": out / f"{prefix}sweep.csv", "summary": out / f"{prefix}summary.csv",
                 "timings": out / f"{prefix}timings.json"}
        self.tidy.to_csv(files["sweep"], index=False)
        self.summary.to_csv(files["summary"], index=False)
        files["timings"].write_text(json.dumps({"timings": self.timings, "unavailable": self.unavailable,
                                                "meta": self.meta}, indent=2, default=str))
        return files


def sweep(model=None, pairs="samples", *, gammas=None, gamma_maps=(), metrics=None, cache=None,
          method: str = "IFCSR", device=None, suite=None, progress: bool = True, crop: int | None = None,
          log=None, quantize: bool = False) -> SweepResult:
    """Score the blend of cached endpoints for every gamma (and gamma map) on every pair.

    model: an IFCSR, a checkpoint folder, or None (the bundled checkpoint).
    pairs: "samples", a PairedFolder directory or a list of {"lr", "hr", "name"} dicts.
    gammas: default 0..1 step 0.05. gamma_maps: built-in names, files or GammaMap objects.
    metrics: names (default: every per-image metric in ifcsr.evaluation.metrics.REGISTRY).
    cache: an EndpointCache, a folder, "default" (default_cache_dir()) or None (memory).
    The network runs once per image (both endpoints in one pass); `timings` separates the
    inference time from the blending time and the metric time.
    quantize: score each blend rounded to 8 bits, as a saved PNG (the benchmark protocol,
    where peers' outputs are PNG files); default False scores the float blend.
    """
    t_start = time.perf_counter()
    model = as_model(model, device)
    pair_list = load_pairs(pairs, scale=model.scale, crop=crop)
    gammas = _check_gammas(gamma_grid(0.05) if gammas is None else gammas)
    maps = [load_gamma_map(m) for m in gamma_maps]
    if isinstance(cache, EndpointCache):
        if cache.model is not model:
            raise InputError("the EndpointCache belongs to another model")
    else:
        cache = EndpointCache(model, default_cache_dir() if cache == "default" else cache)
    suite = suite or make_suite(metrics, device=model.device, min_side=min_side(pair_list))
    from ifcsr.data.degradations import quantize as quantize_8bit

    calls0, infer0, load0 = cache.calls, cache.infer_s, cache.load_s
    frames, blend_s, metrics_s, n_blends = [], 0.0, 0.0, 0
    from tqdm.auto import tqdm

    for pair in tqdm(pair_list, desc=f"sweep {method}", disable=not progress):
        name = pair["name"]
        ends = cache.endpoints(name, pair["lr"])
        hr = pair["hr"][None] if pair["hr"].ndim == 3 else pair["hr"]
        if ends.fidelity.shape != hr.shape:
            raise ImageError(f"{name}: output {tuple(ends.fidelity.shape[-2:])} and HR {tuple(hr.shape[-2:])} "
                             f"differ in size (model scale x{model.scale}); check the pairs' scale")
        H, W = hr.shape[-2:]
        jobs = [(g, g, "") for g in gammas] + [(m.resized(H, W), None, m.name) for m in maps]
        for g, g_label, map_name in jobs:
            t0 = time.perf_counter()
            x = ends.blend(g)  # pixel blend only: no network call
            if quantize:
                x = quantize_8bit(x)
            blend_s += time.perf_counter() - t0
            n_blends += 1
            if g_label is None:
                g_label = float(g.mean())
            t0 = time.perf_counter()
            frames.append(_score(suite, x, hr, image=name, gamma=g_label, method=method, gamma_map=map_name))
            metrics_s += time.perf_counter() - t0
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TIDY_COLUMNS)
    timings = dict(
        method=method, images=len(pair_list), gammas=len(gammas), gamma_maps=len(maps),
        network_calls=cache.calls - calls0, infer_s=cache.infer_s - infer0, cache_load_s=cache.load_s - load0,
        blends=n_blends, blend_s=blend_s, blend_ms_per_image=1000 * blend_s / max(n_blends, 1),
        metrics_s=metrics_s, total_s=time.perf_counter() - t_start,
    )
    meta = dict(method=method, model=describe_model(model), backbone=model.backbone.source,
                tiny=model.backbone.is_tiny, feature_net=model.config.loss.feature_net,
                images=[p["name"] for p in pair_list], pairs=describe_pairs(pairs),
                fingerprint=cache.fingerprint[:16], cache=str(cache.folder) if cache.folder else None)
    if log:
        log(format_timings(timings))
    return SweepResult(tidy, timings, dict(suite.unavailable), meta)


def format_timings(t: dict) -> str:
    s = (f"{t['method']}: {t['images']} images x ({t['gammas']} gammas + {t['gamma_maps']} maps); "
         f"inference {t['infer_s']:.2f} s in {t['network_calls']} network calls")
    if t.get("cache_load_s"):
        s += f" (+{t['cache_load_s']:.2f} s reading cached endpoints)"
    return s + (f"; blending {t['blend_s'] * 1000:.1f} ms for {t['blends']} blends "
                f"({t['blend_ms_per_image']:.2f} ms each); metrics {t['metrics_s']:.1f} s")


# ------------------------------------------------------------------------------ summaries


def summarize(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean over images per (method, gamma, gamma_map): one row each, one column per metric.

    Methods without a gamma (bicubic, Real-ESRGAN) have gamma NaN; a gamma-map row's gamma is
    the map's mean. `n_images` says how many images each mean is over."""
    if tidy.empty:
        return pd.DataFrame(columns=["method", "gamma", "gamma_map", "n_images"])
    t = tidy.copy()
    t["gamma_map"] = t["gamma_map"].fillna("")
    is_map = t["gamma_map"] != ""
    # maps: one row per (method, map) whatever the per-image mean gamma; gamma = mean over images
    t["_g"] = np.where(is_map, -1.0, t["gamma"].round(6).fillna(-2.0))
    keys = ["method", "gamma_map", "_g"]
    wide = t.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", sort=False)
    g = t.groupby(keys, sort=False).agg(gamma=("gamma", "mean"), n_images=("image", "nunique"))
    out = g.join(wide).reset_index().drop(columns="_g")
    metric_cols = [m for m in dict.fromkeys(t["metric"]) if m in out.columns]
    out = out[["method", "gamma", "gamma_map", "n_images", *metric_cols]]
    order = {m: i for i, m in enumerate(dict.fromkeys(t["method"]))}
    out = out.sort_values(["method", "gamma_map", "gamma"], key=lambda s: s.map(order) if s.name == "method" else s,
                          kind="stable").reset_index(drop=True)
    out.columns.name = None
    return out


def pick_axes(summary: pd.DataFrame, x: str | None = None, y: str | None = None) -> tuple[str, str]:
    """Perception-distortion axes: x = the first distortion metric present (PSNR, LPIPS, ...),
    y = the first no-reference perception metric present (NIQE, MUSIQ, ...). When no NR
    metric could run, y falls back to another full-reference metric (lpips-hed), and the
    figure says so."""
    present = [c for c in summary.columns if c not in ("method", "gamma", "gamma_map", "n_images")
               and summary[c].notna().any()]
    if not present:
        raise InputError("the summary holds no metric values")
    if x is None:
        x = next((m for m in DISTORTION_AXES if m in present), present[0])
    if y is None:
        y = next((m for m in PERCEPTION_AXES if m in present), None)
        if y is None:
            y = next((m for m in ("lpips-hed", "lpips", "dists", "ssim", "psnr") if m in present and m != x), x)
    for m in (x, y):
        if m not in present:
            raise InputError(f"metric {m!r} has no values here (present: {', '.join(present)})")
    return x, y


def _better(a, b, lower_better: bool):
    return a < b if lower_better else a > b


def position_vs_curve(summary: pd.DataFrame, x: str, y: str, *, curve: str = "IFCSR") -> pd.DataFrame:
    """Where every non-curve point falls relative to the `curve` method in the (x, y) plane.

    For each point: the nearest curve gamma (in axes normalised by the curve's range), the
    curve gammas that dominate it (at least as good on both axes), those it dominates, and a
    verdict: "on the IFCSR curve" (the same point, e.g. an endpoint alone), "dominated by
    IFCSR" (some gamma is at least as good on both axes), "dominates part of IFCSR", or "on
    the trade-off" (neither).
    """
    from ifcsr.evaluation.metrics import REGISTRY

    lx, ly = REGISTRY[x].lower_better, REGISTRY[y].lower_better
    summary = summary.assign(gamma_map=summary["gamma_map"].fillna(""))  # as read back from a CSV
    c = summary[(summary["method"] == curve) & (summary["gamma_map"] == "")].sort_values("gamma")
    if c.empty:
        raise InputError(f"no {curve!r} curve in the summary")
    cx, cy, cg = c[x].to_numpy(float), c[y].to_numpy(float), c["gamma"].to_numpy(float)
    sx = (np.nanmax(cx) - np.nanmin(cx)) or 1.0
    sy = (np.nanmax(cy) - np.nanmin(cy)) or 1.0
    rows = []
    others = summary[(summary["method"] != curve) | (summary["gamma_map"] != "")]
    tol_x, tol_y = 1e-3 * sx, 1e-3 * sy  # "the same point": equal up to round-off (batched vs single passes)

    def at_least(a, b, lower, tol):  # a at least as good as b
        return a <= b + tol if lower else a >= b - tol

    for r in others.to_dict("records"):
        px, py = float(r[x]), float(r[y])
        if not (math.isfinite(px) and math.isfinite(py)):
            continue
        d = np.hypot((cx - px) / sx, (cy - py) / sy)
        near = int(np.nanargmin(d))
        same = [g for g, vx, vy in zip(cg, cx, cy) if abs(vx - px) <= tol_x and abs(vy - py) <= tol_y]
        dominating = [g for g, vx, vy in zip(cg, cx, cy) if g not in same
                      and at_least(vx, px, lx, tol_x) and at_least(vy, py, ly, tol_y)]
        dominated = [g for g, vx, vy in zip(cg, cx, cy) if g not in same
                     and at_least(px, vx, lx, tol_x) and at_least(py, vy, ly, tol_y)]
        if same:
            verdict = f"on the {curve} curve (gamma={same[0]:g})"
        elif dominating:
            verdict = f"dominated by {curve}"
        elif dominated:
            verdict = f"dominates part of {curve}"
        else:
            verdict = "on the trade-off"
        label = r["method"] + (f" [{r['gamma_map']}]" if r["gamma_map"] else "")
        rows.append(dict(method=label, gamma=r["gamma"], **{x: px, y: py}, nearest_gamma=cg[near],
                         **{f"d_{x}": px - cx[near], f"d_{y}": py - cy[near]}, verdict=verdict,
                         dominated_by_gammas=" ".join(f"{g:g}" for g in dominating),
                         dominates_gammas=" ".join(f"{g:g}" for g in dominated)))
    return pd.DataFrame(rows)


def figure_note(meta: dict, unavailable: dict | None = None) -> str:
    """What a figure was computed with: backbone, loss features, metric networks, images."""
    bits = [meta.get("model", ""), f"images: {meta.get('pairs', ', '.join(meta.get('images', [])))}"]
    if meta.get("tiny"):
        bits.append("tiny backbone: shows the mechanics of IFCSR, not the paper's quality")
    if unavailable:
        bits.append("unavailable here: " + ", ".join(sorted(unavailable)))
    bits.append("lpips-hed = HED-VGG16 features with equal channel weights, NOT LPIPS")
    return "; ".join(b for b in bits if b)


# ------------------------------------------------------------------------------ the paper's table


def paper_table(model=None, pairs="samples", *, gammas=PAPER_GAMMAS, metrics=PAPER_METRICS, cache=None,
                device=None, out=None, crop: int | None = None, progress: bool = True) -> dict:
    """The paper's table for `gammas`: one row per gamma, one column per metric.

    Returns {"table": DataFrame of floats (NaN where unavailable), "text": the printable table
    with "unavailable" cells, "unavailable": metric -> reason, "timings", "files"}. FID is
    computed between the folder of outputs at each gamma and the folder of HR images (it needs
    at least 2 images; it is a dataset statistic, meaningless on a handful of images).
    """
    from ifcsr.data.images import save_image
    from ifcsr.evaluation.metrics import REGISTRY, MetricUnavailableError, available_metrics, fid_between

    metrics = list(metrics)
    for m in metrics:
        if m not in REGISTRY:
            raise InputError(f"unknown metric {m!r}; known: {', '.join(REGISTRY)}")
    per_image = [m for m in metrics if REGISTRY[m].kind != "dataset"]
    want_fid = "fid" in metrics
    model = as_model(model, device)
    if not isinstance(cache, EndpointCache):
        cache = EndpointCache(model, default_cache_dir() if cache == "default" else cache)
    res = sweep(model, pairs, gammas=gammas, metrics=per_image, cache=cache, device=device,
                progress=progress, crop=crop)
    unavailable = dict(res.unavailable)
    summary = res.summary.set_index("gamma")
    table = pd.DataFrame(index=pd.Index([float(g) for g in gammas], name="gamma"))
    for m in per_image:
        table[m] = summary[m] if m in summary.columns and m not in unavailable else np.nan
    if want_fid:
        table["fid"] = np.nan
        ok = available_metrics(["fid"]).iloc[0]
        pair_list = load_pairs(pairs, scale=model.scale, crop=crop)
        if not ok["available"]:
            unavailable["fid"] = ok["reason"]
        elif len(pair_list) < 2:
            unavailable["fid"] = f"needs at least 2 images, the pairs hold {len(pair_list)}"
        else:
            with tempfile.TemporaryDirectory(prefix="ifcsr-fid-") as tmp:
                hr_dir = Path(tmp) / "hr"
                for p in pair_list:
                    save_image(p["hr"], hr_dir / f"{_safe(p['name'])}.png")
                try:
                    for g in gammas:
                        d = Path(tmp) / f"gamma_{g:.2f}"
                        for p in pair_list:  # the sweep's endpoints, from the cache's memory
                            save_image(cache.endpoints(p["name"], p["lr"]).blend(float(g)),
                                       d / f"{_safe(p['name'])}.png")
                        table.loc[float(g), "fid"] = fid_between(d, hr_dir, device=model.device)
                except MetricUnavailableError as err:
                    unavailable["fid"] = str(err)
                    table["fid"] = np.nan
    table = table[metrics]  # the caller's column order (the paper's by default), FID included
    text = format_table(table, unavailable)
    result = dict(table=table, text=text, unavailable=unavailable, timings=res.timings, meta=res.meta,
                  sweep=res)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"table_csv": out / "table.csv", "table_md": out / "table.md",
                 "unavailable": out / "unavailable.csv"}
        shown = table_cells(table, unavailable)
        shown.to_csv(files["table_csv"])
        files["table_md"].write_text(markdown_table(table, unavailable, note=figure_note(res.meta)) + "\n")
        pd.DataFrame([dict(metric=k, reason=v) for k, v in unavailable.items()],
                     columns=["metric", "reason"]).to_csv(files["unavailable"], index=False)
        result["files"] = files
    return result


