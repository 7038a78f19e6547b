"""Real-world benchmark tables: IFCSR, bicubic, baselines and peers' output folders on RealSR/DRealSR.
Imports torch, pandas, the core, ifcsr.data, ifcsr.weights and ifcsr.evaluation (sweep, baselines, metrics,
tables); never matplotlib.

    res = evaluate_benchmark("realsr", compare={"osediff": "results_osediff/"})
    print(res.text)                  # the table, then the protocol card
    res.save("out/")                 # table.md/.csv, summary.csv, per_image.csv, provenance.json

One protocol for every row (OSEDiff's `test_metrics.py`, which calls pyiqa): each output is an
8-bit image (peers' PNG files as they are; our blends and baselines rounded to 8 bits, as a
saved PNG), scored whole against its HR with the metrics of `ifcsr.evaluation.metrics`: PSNR and SSIM on
the Y channel of studio-range BT.601 YCbCr, no border crop. IFCSR's endpoints are inferred once
per image (cached on disk by `EndpointCache`) and every gamma is a pixel blend.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ifcsr.errors import InputError, MissingFileError
from ifcsr.evaluation.benchmark_sets import BenchmarkSet, OutputCache, load_benchmark, load_outputs, parse_gammas
from ifcsr.evaluation.endpoint_cache import EndpointCache, _safe, default_cache_dir
from ifcsr.evaluation.names import BASELINE_NAMES
from ifcsr.evaluation.sweep import TIDY_COLUMNS, _score, as_model, describe_model, make_suite, summarize, sweep
from ifcsr.evaluation.tables import PAPER_HEADERS, metric_cells
from ifcsr.provenance import checkpoint_sha256

PAPER_TABLE_GAMMAS = (0.0, 0.2, 0.6, 1.0)  # the gammas the paper reports on RealSR


# ------------------------------------------------------------------------------ provenance


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ifcsr", "pyiqa", "torch", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def protocol_card(bset: BenchmarkSet, metrics, unavailable: dict, *, quantized: bool = True) -> str:
    """The conventions every number of the table was computed with, as markdown bullets."""
    v = _versions()
    lines = [
        f"- Images: {bset.describe()}.",
        "- Whole images, no border crop (crop_border 0); every output is an 8-bit image: peers' PNG files "
        "as they are" + ("; IFCSR's blends and the baselines rounded to 8 bits, as a saved PNG." if quantized
                         else "; IFCSR's blends scored as floats (not quantised)."),
        "- PSNR, SSIM: Y channel of studio-range BT.601 YCbCr, Y = 16 + (65.481 R + 128.553 G + 24.966 B) "
        "for RGB in [0, 1], divided by 255 (MATLAB rgb2ycbcr, pyiqa `psnr`/`ssim` with test_y_channel=True, "
        "color_space='ycbcr', as OSEDiff's and PiSA-SR's evaluation). PSNR: data range 1, no rounding. SSIM: "
        "Y rounded to 0..255 integers, 11x11 Gaussian window sigma 1.5, no downsampling.",
    ]
    if "niqe" in metrics:
        lines.append("- NIQE: pyiqa `niqe` (Y of YIQ, 96x96 blocks), with the NIQE pristine model shipped in "
                     "ifcsr/assets when pyiqa's file is not cached; lower is better.")
    if "piqe" in metrics:
        lines.append("- PIQE* (not in the paper): pyiqa `piqe`, block-wise (16x16) distortion of mean-subtracted "
                     "contrast-normalised coefficients, no weights to download; lower is better.")
    lines.append(f"- Metric code: ifcsr.evaluation.metrics; pyiqa {v['pyiqa']}, torch {v['torch']}, numpy {v['numpy']}, "
                 f"scipy {v['scipy']}. Means over the images listed; `n` gives their number per row.")
    for m, why in unavailable.items():
        lines.append(f"- {PAPER_HEADERS.get(m, m)} unavailable here: {why}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ evaluation


@dataclass
class BenchmarkResult:
    tidy: pd.DataFrame              # TIDY_COLUMNS, one row per method/image/gamma/metric
    table: pd.DataFrame             # one row per method (and gamma), one column per metric, plus n
    unavailable: dict               # metric -> reason
    skipped: dict                   # method -> reason it did not run
    card: str                       # the protocol card (markdown)
    timings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        return summarize(self.tidy)

    @property
    def text(self) -> str:
        lines = [table_cells(self.table, self.unavailable).to_string(), "", "Protocol:", self.card]
        if self.skipped:
            lines += ["", "Not run:"] + [f"- {k}: {v}" for k, v in self.skipped.items()]
        return "\n".join(lines)

    def markdown(self) -> str:
        cells = table_cells(self.table, self.unavailable)
        head = "| method | " + " | ".join(cells.columns) + " |"
        sep = "|---|" + "---|" * len(cells.columns)
        rows = [f"| {i} | " + " | ".join(r) + " |" for i, r in zip(cells.index, cells.to_numpy())]
        out = [head, sep, *rows, "", "Protocol:", "", self.card]
        if self.skipped:
            out += ["", "Not run:", ""] + [f"- {k}: {v}" for k, v in self.skipped.items()]
        return "\n".join(out)

    def save(self, out) -> dict:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"table_md": out / "table.md", "table_csv": out / "table.csv", "summary": out / "summary.csv",
                 "per_image": out / "per_image.csv", "provenance": out / "provenance.json"}
        files["table_md"].write_text(self.markdown() + "\n")
        self.table.to_csv(files["table_csv"])
        self.summary.to_csv(files["summary"], index=False)
        self.tidy.to_csv(files["per_image"], index=False)
        files["provenance"].write_text(json.dumps(dict(meta=self.meta, timings=self.timings,
                                                       unavailable=self.unavailable, skipped=self.skipped),
                                                  indent=2, default=str) + "\n")
        return files


def row_label(method: str, gamma) -> str:
    """"IFCSR gamma=0.2" for a point of a curve, the method's name for a single point (gamma NaN)."""
    return f"{method} gamma={gamma:g}" if gamma == gamma else method


def benchmark_table(tidy: pd.DataFrame, metrics, *, table_gammas=None) -> pd.DataFrame:
    """Mean per row (method, and gamma for the curves): columns n + metrics. table_gammas:
    the gammas of the curves to show (default all that were scored)."""
    summ = summarize(tidy)
    if table_gammas is not None:
        keep = summ["gamma"].isna() | summ["gamma"].round(6).isin([round(g, 6) for g in table_gammas])
        summ = summ[keep]
    rows = []
    for r in summ.to_dict("records"):
        rows.append(dict(method=row_label(r["method"], r["gamma"]), n=int(r["n_images"]),
                         **{m: r.get(m, np.nan) for m in metrics}))
    return pd.DataFrame(rows, columns=["method", "n", *metrics]).set_index("method")


def table_cells(table: pd.DataFrame, unavailable: dict) -> pd.DataFrame:
    """A benchmark table (one row per method and gamma, with the image count n) as strings."""
    cells = pd.DataFrame(index=table.index)
    cells["n"] = [str(int(v)) for v in table["n"]]
    return metric_cells(table, unavailable, cells)


def _frame(suite, x, hr, *, name, gamma, method):
    return _score(suite, x, hr, image=name, gamma=gamma, method=method)


def evaluate_benchmark(dataset="realsr", *, checkpoint=None, gammas=PAPER_TABLE_GAMMAS, table_gammas=None,
                       metrics=None, compare=None, no_model: bool = False, baselines=BASELINE_NAMES,
                       ablations=None, every: int = 1, limit: int | None = None, names=None, cache="default",
                       batch_size: int = 4, device=None, progress: bool = True, log=print) -> BenchmarkResult:
    """Score bicubic, the `compare` folders and (unless no_model) IFCSR at `gammas` plus the
    `baselines` on a test set, all with one MetricSuite and one protocol (module docstring).

    checkpoint: IFCSR checkpoint folder or model (None: the bundled tiny one). metrics: per-image
    names (default the paper's; FID is a folder statistic and is scored when its weights are
    here). compare: {name: folder of outputs}. baselines: any of "realesrgan", "single-stage",
    "k1", "dni"; ablations: folder holding single_stage/ and k1/ (default analysis/checkpoints
    next to the package). cache: endpoint and output cache folder ("default", a folder, None).
    """
    from ifcsr.evaluation.metrics import REGISTRY
    from ifcsr.evaluation.sweep import PAPER_METRICS

    t_start = time.perf_counter()
    metrics = list(PAPER_METRICS if metrics is None else metrics)
    for m in metrics:
        if m not in REGISTRY:
            raise InputError(f"unknown metric {m!r}; known: {', '.join(REGISTRY)}")
    unknown = [b for b in baselines if b not in BASELINE_NAMES]
    if unknown:
        raise InputError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINE_NAMES)}")
    gammas = parse_gammas(gammas)
    compare = {k: Path(v) for k, v in (compare or {}).items()}
    for name, folder in compare.items():
        if not folder.is_dir():  # before any model loads or image is scored
            raise MissingFileError(f"--compare {name}={folder}: not a folder")
    bset = load_benchmark(dataset, every=every, limit=limit, names=names)
    per_image = [m for m in metrics if REGISTRY[m].kind != "dataset"]
    cache_dir = default_cache_dir() if cache == "default" else cache
    suite = make_suite(per_image, device=device or "cpu",
                       min_side=min(min(p["hr"].shape[-2:]) for p in bset.pairs))
    frames, timings, skipped = [], {}, {}
    fid_outputs: dict[str, dict] = {}  # row label -> {name: 8-bit tensor}, only when FID runs
    want_fid = "fid" in metrics
    unavailable = dict(suite.unavailable)
    if want_fid:
        from ifcsr.evaluation.metrics import available_metrics

        ok = available_metrics(["fid"]).iloc[0]
        if not ok["available"]:
            unavailable["fid"] = ok["reason"]
            want_fid = False
        elif len(bset.pairs) < 2:
            unavailable["fid"] = "needs at least 2 images"
            want_fid = False

    def score_outputs(method, outs, gamma=float("nan")):
        t0 = time.perf_counter()
        for p, x in zip(bset.pairs, outs):
            frames.append(_frame(suite, x, p["hr"][None], name=p["name"], gamma=gamma, method=method))
            if want_fid:
                fid_outputs.setdefault(row_label(method, gamma), {})[p["name"]] = x
        timings[f"{row_label(method, gamma)} metrics_s"] = time.perf_counter() - t0

    from ifcsr.data.degradations import quantize
    from ifcsr.evaluation.baselines import BICUBIC, bicubic_upscale

    score_outputs(BICUBIC, [quantize(bicubic_upscale(p["lr"][None], 4)) for p in bset.pairs])
    for name, folder in compare.items():
        score_outputs(name, load_outputs(folder, bset, label=name))

    meta = dict(dataset=bset.name, root=str(bset.root), selection=bset.selection, images=bset.names,
                gammas=gammas, metrics=metrics, compare={k: str(v) for k, v in compare.items()},
                command=" ".join(sys.argv), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=_versions())
    if not no_model:
        model = as_model(checkpoint, device)
        if model.scale != 4:
            raise InputError(f"the checkpoint is x{model.scale}; the test sets are x4")
        ck = checkpoint if isinstance(checkpoint, (str, Path)) else None
        if ck is None:
            from ifcsr.models import BUNDLED_CHECKPOINT

            ck = BUNDLED_CHECKPOINT if checkpoint is None else None
        meta.update(model=describe_model(model), tiny=model.backbone.is_tiny,
                    checkpoint=str(ck) if ck else "in-memory model",
                    checkpoint_sha256=checkpoint_sha256(ck) if ck else None)
        ends_cache = EndpointCache(model, cache_dir)
        meta["model_fingerprint"] = ends_cache.fingerprint
        t0 = time.perf_counter()
        inferred = ends_cache.fill(bset.pairs, batch_size=batch_size, progress=progress)
        timings["IFCSR endpoints_s"] = time.perf_counter() - t0
        timings["IFCSR images_inferred"] = inferred
        res = sweep(model, bset.pairs, gammas=gammas, suite=suite, cache=ends_cache, progress=progress,
                    quantize=True)
        frames.append(res.tidy)
        timings["IFCSR sweep"] = res.timings
        if want_fid:
            for g in gammas:
                fid_outputs[row_label("IFCSR", g)] = {
                    p["name"]: quantize(ends_cache.endpoints(p["name"], p["lr"]).blend(g)) for p in bset.pairs}
        _run_baselines(model, bset, suite, gammas, baselines, ablations, cache_dir, batch_size, progress,
                       frames, timings, skipped, fid_outputs if want_fid else None, log)
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TIDY_COLUMNS)
    table = benchmark_table(tidy, [m for m in metrics], table_gammas=table_gammas)
    if want_fid:
        _fid_column(table, fid_outputs, bset, unavailable)
    timings["total_s"] = time.perf_counter() - t_start
    card = protocol_card(bset, metrics, unavailable)
    return BenchmarkResult(tidy, table, unavailable, skipped, card, timings, meta)


def _run_baselines(model, bset, suite, gammas, baselines, ablations, cache_dir, batch_size, progress,
                   frames, timings, skipped, fid_outputs, log):
    from ifcsr.evaluation.ablations import K1, SINGLE_STAGE, ablations_dir, load_ablation
    from ifcsr.evaluation.baselines import DNI, REALESRGAN, LoraInterpolation

    def keep(method, gamma, outs):
        if fid_outputs is not None:
            fid_outputs[row_label(method, gamma)] = dict(zip(bset.names, outs))

    if "realesrgan" in baselines:
        from ifcsr.evaluation.baselines import realesrgan_upscale
        from ifcsr.weights.realesrgan import SHA256, RealESRGANWeightsError, load_realesrgan

        try:
            net = load_realesrgan(device=model.device)
        except (RealESRGANWeightsError, OSError) as err:
            skipped[REALESRGAN] = str(err)
            log(f"{REALESRGAN}: not run ({err})")
        else:
            oc = OutputCache(None if cache_dir is None else Path(cache_dir) / "outputs",
                             "realesrgan-" + hashlib.sha256(json.dumps(SHA256, sort_keys=True).encode()).hexdigest())
            t0 = time.perf_counter()
            outs = [oc.get(p["name"], p["lr"][None], "x4", lambda p=p: realesrgan_upscale(net, p["lr"][None]))
                    for p in _bar(bset.pairs, REALESRGAN, progress)]
            timings[f"{REALESRGAN} s"] = time.perf_counter() - t0
            timings[f"{REALESRGAN} network_calls"] = oc.calls
            for p, x in zip(bset.pairs, outs):
                frames.append(_frame(suite, x, p["hr"][None], name=p["name"], gamma=float("nan"), method=REALESRGAN))
            keep(REALESRGAN, float("nan"), outs)
            del net
    folder = Path(ablations) if ablations is not None else ablations_dir()
    for key, sub, method in (("single-stage", "single_stage", SINGLE_STAGE), ("k1", "k1", K1)):
        if key not in baselines:
            continue
        try:
            other = load_ablation(folder / sub, device=model.device)
        except (FileNotFoundError, ValueError) as err:
            skipped[method] = str(err)
            log(f"{method}: not run ({err})")
            continue
        oc = EndpointCache(other, cache_dir)
        t0 = time.perf_counter()
        oc.fill(bset.pairs, batch_size=batch_size, progress=progress)
        res = sweep(other, bset.pairs, gammas=gammas, suite=suite, cache=oc, method=method, progress=progress,
                    quantize=True)
        timings[f"{method} s"] = time.perf_counter() - t0
        frames.append(res.tidy)
        if fid_outputs is not None:
            from ifcsr.data.degradations import quantize

            for g in gammas:
                keep(method, g, [quantize(oc.endpoints(p["name"], p["lr"]).blend(g)) for p in bset.pairs])
    if "dni" in baselines:
        from ifcsr.evaluation.endpoint_cache import model_fingerprint

        fp = model_fingerprint(model)
        t0 = time.perf_counter()
        with LoraInterpolation(model) as dni:
            for g in gammas:
                oc = OutputCache(None if cache_dir is None else Path(cache_dir) / "outputs", f"dni-{fp}")
                outs = [oc.get(p["name"], p["lr"][None], f"a{g:.4f}",
                               lambda p=p, g=g: dni.infer(p["lr"][None], [g])[0])
                        for p in _bar(bset.pairs, f"DNI gamma={g:g}", progress)]
                for p, x in zip(bset.pairs, outs):
                    frames.append(_frame(suite, x, p["hr"][None], name=p["name"], gamma=g, method=DNI))
                keep(DNI, g, outs)
        timings[f"{DNI} s"] = time.perf_counter() - t0


def _bar(items, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not progress)


def _fid_column(table, fid_outputs, bset, unavailable):
    from ifcsr.data.images import save_image
    from ifcsr.evaluation.metrics import MetricUnavailableError, fid_between

    with tempfile.TemporaryDirectory(prefix="ifcsr-fid-") as tmp:
        hr_dir = Path(tmp) / "hr"
        for p in bset.pairs:
            save_image(p["hr"], hr_dir / f"{_safe(p['name'])}.png")
        try:
            for i, (label, outs) in enumerate(fid_outputs.items()):
                if label not in table.index:
                    continue
                d = Path(tmp) / f"row{i}"
                for name, x in outs.items():
                    save_image(x, d / f"{_safe(name)}.png")
                table.loc[label, "fid"] = fid_between(d, hr_dir)
        except MetricUnavailableError as err:
            unavailable["fid"] = str(err)
            table["fid"] = np.nan


# ------------------------------------------------------------------------------ reading saved results


def load_results(folder=None) -> dict:
    """The RealSR results written by analysis/paper_table.py: {"summary", "per_image", "table"}
    DataFrames (and "markdown", the table's text). folder: default analysis/results next to
    the package."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[2] / "analysis" / "results"
    files = {"summary": folder / "realsr_summary.csv", "per_image": folder / "realsr_per_image.csv",
             "table": folder / "paper_table.csv", "markdown": folder / "paper_table.md"}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise MissingFileError(f"no RealSR results: {', '.join(missing)} missing; run analysis/paper_table.py")
    out = {k: pd.read_csv(files[k]) for k in ("summary", "per_image", "table")}
    out["summary"]["gamma_map"] = out["summary"]["gamma_map"].fillna("")
    out["markdown"] = files["markdown"].read_text()
    return out


def best_gamma_per_image(tidy: pd.DataFrame, metrics=("psnr", "niqe"), *, method: str = "IFCSR") -> pd.DataFrame:
    """For each image and metric, the gamma of `method`'s curve with the best value (the lowest
    for lower-is-better metrics): columns image, metric, best_gamma, best, at_0, at_1.
    Ties go to the smallest gamma."""
    from ifcsr.evaluation.metrics import REGISTRY

    t = tidy[(tidy["method"] == method) & tidy["gamma_map"].fillna("").eq("") & tidy["metric"].isin(metrics)]
    if t.empty:
        raise InputError(f"no {method!r} values for {list(metrics)} in the table")
    rows = []
    for (image, metric), g in t.groupby(["image", "metric"], sort=True):
        g = g.sort_values("gamma")
        vals = g["value"].to_numpy(float)
        i = int(np.argmin(vals) if REGISTRY[metric].lower_better else np.argmax(vals))
        gam = g["gamma"].to_numpy(float)
        rows.append(dict(image=image, metric=metric, best_gamma=gam[i], best=vals[i],
                         at_0=vals[np.argmin(np.abs(gam))], at_1=vals[np.argmin(np.abs(gam - 1))]))
    return pd.DataFrame(rows, columns=["image", "metric", "best_gamma", "best", "at_0", "at_1"])
