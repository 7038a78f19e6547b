"""Risk-aware vs scalar gamma, and auto-gamma vs the oracle, on RealSR (evaluation only).

Part 2 of issue 18: for each mean gamma m in --means, the scalar blend at gamma = m against the
risk-aware blend whose per-pixel gamma map has the same mean m
(``ifcsr.risk.risk_aware_gamma(ghosting_risk(F, R), m)``), scored by PSNR-Y (higher better),
NIQE (lower better) and the ghost-edge energy against HR (``ifcsr.risk.ghost_edge_energy``,
lower better).

Part 3: per image, ``ifcsr.evaluation.autogamma.auto_gamma`` with "psnr" (closed form, uses HR), "niqe" and
"piqe" (grid of 11 + golden section), and "knee" (11-point grid, NIQE vs RMSE-Y to the fidelity
endpoint: no HR); each choice is scored by PSNR-Y, NIQE, PIQE and, with --lpips-hed, the
full-reference lpips-hed against HR, and compared with the per-image oracle (per image, the best
of every gamma scored: the 0.1 grid and each objective's choice) and with the best single gamma
for the whole set (on the 0.1 grid), by ``ifcsr.evaluation.autogamma.compare_with_oracles``:
recovered = (auto - best single) / (oracle - best single), per metric, on the set means.
A choice scored on the very index it optimised (column ``optimised``: "psnr" on PSNR-Y, "niqe" on
NIQE, "piqe" on PIQE) finds its oracle by construction; the other indices are the independent
check (for "niqe": PIQE, and lpips-hed against HR, which no objective without HR sees).

Endpoints come from ``ifcsr.evaluation.endpoint_cache.EndpointCache`` (the shared on-disk cache of the bundled
model's endpoints): by default only images already cached are used (inference costs minutes
per 512x512 image on a busy 2-core CPU); --infer infers the missing ones.

    python analysis/risk_realsr.py                      # -> analysis/results/risk_realsr*.csv, risk_realsr.png
    python analysis/risk_realsr.py --limit 3 --out /tmp/r   # a quick look
    python analysis/risk_realsr.py --lpips-hed          # also lpips-hed vs HR (HED-VGG16 at 512 px:
                                                        # seconds per blend, 15 blends per image)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ifcsr.provenance import bundle_sha256

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "results"
DATA = ROOT.parent / "shared" / "data" / "realsr"


def pairs(root: Path):
    """(name, LR path, HR path) of RealSR's test set: files named alike in test_LR/ and test_HR/."""
    lr = sorted((root / "test_LR").glob("*.png"))
    if not lr:
        raise FileNotFoundError(f"{root}/test_LR: no PNG images (expected the RealSR test set)")
    out = []
    for p in lr:
        h = root / "test_HR" / p.name
        if not h.is_file():
            h = root / "test_HR" / p.name.replace("_LR4", "_HR")
        if h.is_file():
            out.append((p.stem.replace("_LR4", ""), p, h))
    return out


def scores(x, hr, niqe, piqe, hed=None) -> dict:
    """PSNR-Y, NIQE, PIQE, the ghost-edge energy and (hed given) lpips-hed of one blend against HR."""
    from ifcsr.evaluation.ymetrics import psnr_y
    from ifcsr.risk import ghost_edge_energy

    out = dict(psnr=float(psnr_y(x, hr)[0]), niqe=niqe(x), piqe=piqe(x), ghost=float(ghost_edge_energy(x, hr)[0]))
    if hed is not None:
        out["lpips-hed"] = float(hed(x, hr, names=["lpips-hed"])["value"].iloc[0])
    return out


# metric -> lower_better, for compare_with_oracles (a metric absent from the CSVs is left out)
AUTO_METRICS = {"psnr": False, "niqe": True, "piqe": True, "lpips-hed": True}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--means", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--every", type=int, default=1, help="every k-th image by name (default 1: all)")
    p.add_argument("--infer", action="store_true", help="infer endpoints missing from the cache")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--nr-grid", type=int, default=11, help="auto_gamma's NR search grid (library default 11)")
    p.add_argument("--nr-tol", type=float, default=0.01, help="auto_gamma's golden-section tolerance (default 0.01)")
    p.add_argument("--knee-grid", type=int, default=11, help="auto_gamma's knee grid (library default 11)")
    p.add_argument("--lpips-hed", action="store_true",
                   help="also score every blend by lpips-hed against HR (full reference: an index no "
                        "auto-gamma objective without HR sees; seconds per 512 px blend)")
    p.add_argument("--summarize", action="store_true",
                   help="only rebuild the summaries and the figure from the per-image CSVs in --out")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error(f"--every must be at least 1, got {args.every}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        return summarize(args, out, pd.read_csv(out / "risk_realsr.csv"), pd.read_csv(out / "autogamma_realsr.csv"))

    from ifcsr.data.images import load_image, to_tensor
    from ifcsr.evaluation.autogamma import auto_gamma, nr_scorer
    from ifcsr.evaluation.endpoint_cache import EndpointCache, default_cache_dir
    from ifcsr.models import IFCSR
    from ifcsr.risk import RiskAwareGamma

    t_start = time.time()
    model = IFCSR.load()
    cache = EndpointCache(model, default_cache_dir(), write_png=False)
    todo = []
    for name, lp, hp in pairs(Path(args.data)):
        lr = to_tensor(load_image(lp))
        if args.infer or cache.path(name, lr).is_file():
            todo.append((name, lr, hp))
    todo = todo[:: args.every]
    todo = todo[: args.limit] if args.limit else todo
    if not todo:
        raise SystemExit(f"no cached endpoints in {default_cache_dir()} for model {cache.fingerprint[:16]}; "
                         "run with --infer")
    print(f"{len(todo)} RealSR images with endpoints (model {cache.fingerprint[:16]})", flush=True)
    niqe, _, _ = nr_scorer("niqe")
    piqe, _, _ = nr_scorer("piqe")
    hed = None
    if args.lpips_hed:
        from ifcsr.evaluation.metrics import MetricSuite

        hed = MetricSuite(["lpips-hed"])
        if hed.unavailable:
            raise SystemExit(f"--lpips-hed: {hed.unavailable['lpips-hed']}")
    grid = np.round(np.linspace(0, 1, 11), 2)
    rows, autos = [], []
    kw = {"niqe": dict(grid=args.nr_grid, tol=args.nr_tol), "piqe": dict(grid=args.nr_grid, tol=args.nr_tol),
          "knee": dict(gammas=np.linspace(0, 1, args.knee_grid)), "psnr": {}}
    for k, (name, lr, hp) in enumerate(todo):
        t0 = time.time()
        hr = to_tensor(load_image(hp))
        ends = cache.endpoints(name, lr)
        # ---- part 2: scalar vs risk-aware at equal mean gamma
        risk = ends.ghosting_risk()
        risk_mean = float(risk.mean())
        solver = RiskAwareGamma(risk)
        for g in sorted(set(grid.tolist()) | set(args.means)):
            rows.append(dict(image=name, method="scalar", mean_gamma=g, **scores(ends.blend(g), hr, niqe, piqe, hed)))
        for m in args.means:
            gmap = solver(m)
            rows.append(dict(image=name, method="risk-aware", mean_gamma=m,
                             map_min=float(gmap.min()), map_max=float(gmap.max()),
                             **scores(ends.blend(gmap), hr, niqe, piqe, hed)))
        # ---- part 3: auto gamma (each objective as the library runs it)
        for obj in ("psnr", "niqe", "piqe", "knee"):
            t1 = time.time()
            res = auto_gamma(ends.fidelity, ends.realism, obj, hr=hr if obj == "psnr" else None, **kw[obj])
            autos.append(dict(image=name, objective=obj, gamma=res.gamma, method=res.method,
                              evaluations=len(res.evaluations), seconds=round(time.time() - t1, 1),
                              **{f"at_{kk}": v for kk, v in scores(ends.blend(res.gamma), hr, niqe, piqe, hed).items()},
                              niqe_evaluated=json.dumps([(round(e["gamma"], 4), e["niqe"])
                                                         for e in res.evaluations if "niqe" in e])))
        print(json.dumps(dict(k=k, image=name, risk_mean=round(risk_mean, 4), s=round(time.time() - t0, 1),
                              t=time.strftime("%H:%M:%S"))), flush=True)
        # per image: an interrupted run keeps every finished image (rebuild with --summarize)
        pd.DataFrame(rows).to_csv(out / "risk_realsr.csv", index=False)
        pd.DataFrame(autos).to_csv(out / "autogamma_realsr.csv", index=False)
    return summarize(args, out, pd.DataFrame(rows), pd.DataFrame(autos), cache=cache, first=todo[0],
                     seconds=round(time.time() - t_start))


def summarize(args, out, df, auto, *, cache=None, first=None, seconds=None) -> int:
    if cache is None:  # --summarize: the first image's endpoints straight from the cache file, no model load
        from ifcsr.evaluation.endpoint_cache import default_cache_dir
        from ifcsr.models import Endpoints

        name = sorted(df["image"].unique())[0]
        files = sorted(default_cache_dir().glob(f"*/{name}-*.pt"))
        if not files:
            raise SystemExit(f"no cached endpoints of {name} under {default_cache_dir()}")
        d = torch.load(files[0], map_location="cpu", weights_only=True)
        ends = Endpoints(d["fidelity"], d["realism"])

        class _Cache:  # what figure() asks of an EndpointCache
            fingerprint = files[0].parent.name

            def endpoints(self, name, lr):
                return ends

        cache, first = _Cache(), (name, None, None)
    grid = np.round(np.linspace(0, 1, 11), 2)
    n = df["image"].nunique()

    # ---- part 2 summary: means over images, and per-image wins
    summ = df[df["mean_gamma"].isin(args.means)].groupby(["mean_gamma", "method"])[["psnr", "niqe", "ghost"]].mean()
    wide = df[df["mean_gamma"].isin(args.means)].pivot_table(index=["image", "mean_gamma"], columns="method",
                                                             values=["psnr", "niqe", "ghost"])
    wins = []
    for m in args.means:
        w = wide.xs(m, level="mean_gamma")
        wins.append(dict(mean_gamma=m,
                         psnr_better=int((w["psnr"]["risk-aware"] > w["psnr"]["scalar"]).sum()),
                         niqe_better=int((w["niqe"]["risk-aware"] < w["niqe"]["scalar"]).sum()),
                         ghost_better=int((w["ghost"]["risk-aware"] < w["ghost"]["scalar"]).sum()),
                         dominates=int(((w["psnr"]["risk-aware"] >= w["psnr"]["scalar"])
                                        & (w["niqe"]["risk-aware"] <= w["niqe"]["scalar"])).sum()),
                         n_images=n))
    summary = summ.reset_index().merge(pd.DataFrame(wins), on="mean_gamma", how="left")
    for c in ("psnr_better", "niqe_better", "ghost_better", "dominates"):
        summary.loc[summary["method"] == "scalar", c] = np.nan

    # ---- part 3 summary: auto vs oracle vs best single gamma, on every index scored; `optimised`
    # marks a choice scored on its own objective (true by construction), the rest are independent.
    # The per-image oracle is the best of the 0.1 grid and every choice (for PSNR the closed form,
    # the exact optimum over [0, 1]; for NIQE the NIQE search's best, which it also evaluated).
    sc = df[(df["method"] == "scalar") & df["mean_gamma"].isin(grid)].rename(columns={"mean_gamma": "gamma"})
    from ifcsr.evaluation.autogamma import compare_with_oracles

    auto_summary = compare_with_oracles(sc, auto, AUTO_METRICS)

    df.to_csv(out / "risk_realsr.csv", index=False)
    summary.to_csv(out / "risk_realsr_summary.csv", index=False)
    auto.to_csv(out / "autogamma_realsr.csv", index=False)
    auto_summary.to_csv(out / "autogamma_realsr_summary.csv", index=False)
    figure(df, auto, args.means, n, out / "risk_realsr.png", first, cache)

    sha = bundle_sha256()
    meta = dict(command="python " + " ".join([sys.argv[0].split("/ifcsr/")[-1]] + sys.argv[1:]),
                bundle_sha256=sha, model_fingerprint=cache.fingerprint, images=sorted(df["image"].unique()),
                n_images=n, means=args.means, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                seconds=seconds, nr_grid=args.nr_grid, nr_tol=args.nr_tol, knee_grid=args.knee_grid,
                lpips_hed=bool(args.lpips_hed) or "lpips-hed" in df.columns)
    (out / "risk_realsr_meta.json").write_text(json.dumps(meta, indent=2))
    files = [out / f for f in ("risk_realsr.csv", "risk_realsr_summary.csv", "autogamma_realsr.csv",
                               "autogamma_realsr_summary.csv", "risk_realsr.png", "risk_realsr_meta.json")]
    from ifcsr.provenance import record

    names = meta["images"]
    shown = ", ".join(names) if len(names) <= 10 else f"{names[0]} ... {names[-1]}"
    record(files, expensive=True, note=f"RealSR, {n} images with cached endpoints ({shown})")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"\nRealSR, {n} images, bundle sha256 {sha[:16]}")
        print(summary.round(4).to_string(index=False))
        print(auto_summary.round(4).to_string(index=False))
    return 0


def figure(df, auto, means, n, path, first, cache):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ifcsr.data.images import to_uint8

    sc = df[df["method"] == "scalar"].groupby("mean_gamma")[["psnr", "niqe", "ghost"]].mean()
    ra = df[df["method"] == "risk-aware"].groupby("mean_gamma")[["psnr", "niqe", "ghost"]].mean()
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.8))
    ax[0].plot(sc["niqe"], sc["psnr"], "-o", ms=3, color="0.4", label="scalar gamma (0 ... 1)")
    for m in means:
        ax[0].annotate(f"{m:g}", (sc.loc[m, "niqe"], sc.loc[m, "psnr"]), fontsize=7, color="0.3")
    ax[0].plot(ra["niqe"], ra["psnr"], "s", color="tab:red", label="risk-aware map, same mean")
    for m in means:
        ax[0].annotate(f"{m:g}", (ra.loc[m, "niqe"], ra.loc[m, "psnr"]), fontsize=7, color="tab:red")
    ax[0].set_xlabel("NIQE (lower is better)")
    ax[0].set_ylabel("PSNR-Y, dB (higher is better)")
    ax[0].invert_xaxis()
    ax[0].legend(fontsize=7)
    ax[0].set_title(f"RealSR, mean of {n} images", fontsize=9)
    ax[1].plot(sc.index, sc["ghost"], "-o", ms=3, color="0.4", label="scalar")
    ax[1].plot(ra.index, ra["ghost"], "s", color="tab:red", label="risk-aware")
    ax[1].set_xlabel("(mean) gamma")
    ax[1].set_ylabel("ghost-edge energy vs HR (lower is better)")
    ax[1].legend(fontsize=7)
    for obj, mk in (("psnr", "^"), ("niqe", "v"), ("piqe", "D"), ("knee", "*")):
        a = auto[auto["objective"] == obj]
        ax[2].scatter(a["at_niqe"].mean(), a["at_psnr"].mean(), marker=mk, s=50, label=f"auto:{obj}")
    ax[2].plot(sc["niqe"], sc["psnr"], "-", color="0.7", label="scalar gamma")
    ax[2].invert_xaxis()
    ax[2].set_xlabel("NIQE")
    ax[2].set_ylabel("PSNR-Y, dB")
    ax[2].legend(fontsize=7)
    ax[2].set_title("auto-gamma choices (set means)", fontsize=9)
    name, lr, _ = first
    ends = cache.endpoints(name, lr)
    risk = ends.ghosting_risk()[0, 0].numpy()
    ax[3].imshow(to_uint8(ends.blend(0.5)))
    im = ax[3].imshow(risk, cmap="magma", alpha=0.6, vmin=0, vmax=max(float(risk.max()), 1e-3))
    fig.colorbar(im, ax=ax[3], fraction=0.046)
    ax[3].set_title(f"{name}: ghosting risk over gamma 0.5", fontsize=9)
    ax[3].axis("off")
    fig.suptitle("bundled tiny checkpoint on RealSR (evaluation only): risk-aware vs scalar gamma; auto-gamma",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
