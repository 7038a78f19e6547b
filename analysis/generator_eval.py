"""IFCSR on the pretrained generator (issue 27): its curve against its own prior, bicubic and OSEDiff.

For every image of three named sets, whole images, x4:
  - validation: flower, grace_hopper (bicubic LR; the generator preset's validation split, never
    trained on; a recipe may be chosen on them),
  - photos: chelsea, coffee (bicubic LR; test images, never used to choose anything),
  - realsr: the RealSR test set (../shared/data/realsr, real LR; test images, evaluation only),
scores PSNR-Y (whole image, OSEDiff's protocol), NIQE (offline) and PIQE (pyiqa, no download) of
bicubic, the prior (plain Real-ESRGAN x4plus: the generator without adapters), OSEDiff's published
outputs (RealSR only) and the IFCSR blend on a gamma grid. It also times both endpoints against one
plain Real-ESRGAN pass on the same image, side by side (the trunk once + two merged heads, vs the
whole network once).

    OMP_NUM_THREADS=1 python analysis/generator_eval.py --checkpoint CK --sets validation photos realsr \
        --shard 0/2 --out runs/eval    # and --shard 1/2 in a second process; then:
    python analysis/generator_eval.py --summarise runs/eval --checkpoint CK

Writes OUT/per_image_<shard>.csv while it runs (resumable: images already scored are skipped) and,
with --summarise, analysis/results/generator_eval_summary.csv + generator_eval.md with provenance.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REALSR = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsr"


@functools.cache
def _piqe():
    import pyiqa

    return pyiqa.create_metric("piqe", device="cpu")


def score(x: torch.Tensor, hr: torch.Tensor) -> dict:
    from ifcsr.evaluation.metrics import compute_metrics
    from ifcsr.evaluation.ymetrics import psnr_y

    x = x.clamp(0, 1)
    with torch.no_grad():
        niqe = float(compute_metrics(x, names=["niqe"])["value"].iloc[0])
        piqe = float(_piqe()(x).item())
    return dict(psnr_y=float(psnr_y(x, hr)), niqe=niqe, piqe=piqe)


def pairs(sets):
    """(set, name, lr, hr, osediff or None) in a fixed order."""
    from ifcsr.data import pairs_from_samples
    from ifcsr.data.degradations import BicubicDegradation
    from ifcsr.data.images import load_image, to_tensor
    from ifcsr.data.samples import HELD_OUT, VALIDATION_NAMES, load_photo

    for set_ in sets:
        if set_ == "photos":  # exactly the pairs of realism_check.py and the README's photo figures
            for pair in pairs_from_samples(HELD_OUT):
                yield set_, pair["name"], pair["lr"][None], pair["hr"][None], None
        elif set_ == "validation":  # the same recipe: whole photo cut to a multiple of 4, bicubic x4
            for i, name in enumerate(VALIDATION_NAMES):
                img = load_photo(name)
                img = img[: img.shape[0] - img.shape[0] % 4, : img.shape[1] - img.shape[1] % 4]
                hr = to_tensor(np.ascontiguousarray(img))
                yield set_, name, BicubicDegradation(4)(hr[0], seed=i)[None], hr, None
        elif set_ == "realsr":
            for f in sorted((REALSR / "test_LR").glob("*.png")):
                lr, hr = (to_tensor(load_image(d / f.name)) for d in (REALSR / "test_LR", REALSR / "test_HR"))
                ose = REALSR / "results_osediff" / f.name
                yield set_, f.stem, lr, hr, (to_tensor(load_image(ose)) if ose.is_file() else None)
        else:
            raise SystemExit(f"unknown set {set_!r}: validation, photos, realsr")


def run(args) -> None:
    from ifcsr.models import IFCSR

    torch.set_num_threads(args.threads)
    model = IFCSR.load(args.checkpoint)
    gammas = np.round(np.arange(0, 1 + 1e-9, args.gamma_step), 4)
    k, n = (int(v) for v in args.shard.split("/"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"per_image_{k}.csv"
    done = set(pd.read_csv(csv)["image"]) if csv.is_file() else set()
    warm = True
    for i, (set_, name, lr, hr, ose) in enumerate(pairs(args.sets)):
        if i % n != k or name in done:
            continue
        if warm:  # the first call merges the adapters into the heads: keep it out of the timings
            model.infer(lr[..., :16, :16])
            warm = False
        t0 = time.perf_counter()
        ends = model.infer(lr)
        t_both = time.perf_counter() - t0
        t0 = time.perf_counter()
        prior = model.infer_prior(lr)
        t_prior = time.perf_counter() - t0
        outs = {"bicubic": F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1),
                "prior": prior}
        if ose is not None:
            outs["osediff"] = ose
        for g in gammas:
            outs[f"gamma{g:.2f}"] = ends.blend(float(g))
        rows = [dict(set=set_, image=name, output=o, gamma=float(o[5:]) if o.startswith("gamma") else np.nan,
                     **score(x, hr), t_both=t_both, t_prior=t_prior, lr_h=lr.shape[-2], lr_w=lr.shape[-1])
                for o, x in outs.items()]
        pd.DataFrame(rows).to_csv(csv, mode="a", header=not csv.is_file(), index=False)
        g0, g1 = rows[-len(gammas)], rows[-1]
        print(f"{set_} {name}: both {t_both:.1f} s, prior {t_prior:.1f} s; gamma 0 {g0['psnr_y']:.2f} dB / "
              f"NIQE {g0['niqe']:.2f}; gamma 1 {g1['psnr_y']:.2f} / {g1['niqe']:.2f}; prior "
              f"{rows[1]['psnr_y']:.2f} / {rows[1]['niqe']:.2f}", flush=True)


def curve_at(psnr: np.ndarray, other: np.ndarray, target: float) -> float:
    """The curve's `other` value where its PSNR-Y equals `target` (linear between grid points)."""
    order = np.argsort(psnr)
    p, o = psnr[order], other[order]
    if not p[0] <= target <= p[-1]:
        return float("nan")
    return float(np.interp(target, p, o))


def summarise(args) -> None:
    from ifcsr.provenance import checkpoint_sha256, record

    frames = [pd.read_csv(f) for f in sorted(Path(args.summarise).glob("per_image_*.csv"))]
    df = pd.concat(frames, ignore_index=True)
    summary = df.groupby(["set", "output"], sort=False)[["psnr_y", "niqe", "piqe"]].mean().reset_index()
    summary["images"] = df.groupby(["set", "output"], sort=False)["image"].nunique().values
    RESULTS.mkdir(exist_ok=True)
    summary.to_csv(RESULTS / "generator_eval_summary.csv", index=False)
    lines = ["# IFCSR on Real-ESRGAN x4plus (a GAN generator, not diffusion): the curve against its prior", "",
             f"Checkpoint `{args.checkpoint}` (sha256 `{checkpoint_sha256(args.checkpoint)[:16]}...`); whole images, x4; "
             "PSNR-Y (dB, higher better) / NIQE / PIQE (lower better). Command: "
             f"`python analysis/generator_eval.py --summarise {args.summarise} --checkpoint {args.checkpoint}`.", ""]
    for set_, part in summary.groupby("set", sort=False):
        n = int(part["images"].max())
        lines += [f"## {set_} ({n} images)", "", "| output | PSNR-Y | NIQE | PIQE |", "|---|---|---|---|"]
        lines += [f"| {r.output} | {r.psnr_y:.2f} | {r.niqe:.2f} | {r.piqe:.1f} |" for r in part.itertuples()]
        curve = part[part.output.str.startswith("gamma")]
        p, q, pi = curve.psnr_y.to_numpy(), curve.niqe.to_numpy(), curve.piqe.to_numpy()
        prior = part[part.output == "prior"].iloc[0]
        lines += ["", f"- PSNR-Y falls at every step: {bool(np.all(np.diff(p) < 0))}; NIQE falls at every step: "
                      f"{bool(np.all(np.diff(q) < 0))}; PIQE: {bool(np.all(np.diff(pi) < 0))}",
                  f"- spans gamma 0 -> 1: PSNR-Y {p[0] - p[-1]:.2f} dB, NIQE {q[0] - q[-1]:.2f}, PIQE {pi[0] - pi[-1]:.1f}",
                  f"- on the curve at the prior's PSNR-Y ({prior.psnr_y:.2f} dB): NIQE "
                  f"{curve_at(p, q, prior.psnr_y):.2f} (prior {prior.niqe:.2f}), PIQE "
                  f"{curve_at(p, pi, prior.psnr_y):.1f} (prior {prior.piqe:.1f})", ""]
    t = df.drop_duplicates(["set", "image"])
    ratio = (t.t_both / t.t_prior)
    lines += ["## Speed (both endpoints vs one plain Real-ESRGAN pass, same image, same process)", "",
              f"- median ratio {ratio.median():.2f}, p90 {ratio.quantile(0.9):.2f} over {len(t)} images; "
              f"median both {t.t_both.median():.1f} s, prior {t.t_prior.median():.1f} s (CPU, "
              f"{args.threads} thread(s) per process)", ""]
    md = RESULTS / "generator_eval.md"
    md.write_text("\n".join(lines))
    print("\n".join(lines))
    cmd = f"python analysis/generator_eval.py --summarise {args.summarise} --checkpoint {args.checkpoint}"
    record([md, RESULTS / "generator_eval_summary.csv"], inputs=(args.checkpoint,), command=cmd)


CROP_COLUMNS = ("hr", "gamma0", "gamma0.5", "gamma1", "bicubic", "prior", "osediff")
CROP_TITLES = {"gamma0": "gamma 0 (fidelity)", "gamma0.5": "gamma 0.5", "gamma1": "gamma 1 (realism)",
               "prior": "Real-ESRGAN x4plus", "osediff": "OSEDiff (published)"}


def crops(args) -> None:
    """The crop sheet: the most detailed 64 px HR window of each named image, 3x nearest zoom."""
    sys.path.insert(0, str(HERE))
    from crop_sheet import write_crop_sheet

    from ifcsr.models import IFCSR
    from ifcsr.provenance import record

    model = IFCSR.load(args.checkpoint)
    images = {}
    for set_, name, lr, hr, ose in pairs(args.sets):
        if name not in args.crops:
            continue
        ends = model.infer(lr)
        images[name] = {"hr": hr, "gamma0": ends.fidelity, "gamma0.5": ends.blend(0.5), "gamma1": ends.realism,
                        "bicubic": F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False),
                        "prior": model.infer_prior(lr)}
        if ose is not None:
            images[name]["osediff"] = ose
    out = RESULTS / "generator_crops.png"
    cols = [c for c in CROP_COLUMNS if any(c in v for v in images.values())]
    for v in images.values():  # photos have no OSEDiff output: an empty (black) panel, said in the title
        for c in cols:
            v.setdefault(c, torch.zeros_like(v["hr"]))
    write_crop_sheet(images, out, columns=cols, titles=CROP_TITLES,
                     title="IFCSR on Real-ESRGAN x4plus (a GAN generator, not diffusion), bundled 'realesrgan'; "
                           "3x nearest; OSEDiff only on RealSR (black elsewhere)")
    record([out], inputs=(args.checkpoint,), command="python analysis/generator_eval.py " + " ".join(sys.argv[1:]))
    print(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--sets", nargs="+", default=["validation", "photos", "realsr"])
    p.add_argument("--gamma-step", type=float, default=0.1)
    p.add_argument("--shard", default="0/1", help="K/N: this process scores images K, K+N, ...")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/generator_eval")
    p.add_argument("--summarise", default=None, metavar="OUT", help="summarise OUT's per-image files instead")
    p.add_argument("--crops", nargs="+", default=None, metavar="NAME", help="write the crop sheet of these images instead")
    args = p.parse_args(argv)
    if args.crops:
        crops(args)
    elif args.summarise:
        summarise(args)
    else:
        run(args)
        if args.shard == "0/1":  # one process saw every image: summarise at once
            args.summarise = args.out
            summarise(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
