"""Does the checkpoint show a perception-distortion trade-off? (issue 13)

For the fidelity endpoint (gamma 0), gamma 0.5, the realism endpoint (gamma 1), bicubic and
(with --realesrgan) Real-ESRGAN x4plus, on chelsea + coffee (whole images, x4 bicubic LR; never
trained on) and on the RealSR test set (../shared/data/realsr, evaluation only):
  - PSNR-Y (whole image), NIQE (offline) and PIQE (pyiqa 'piqe', no download): the trade-off,
  - the artefact measures of ifcsr.evaluation.artefacts: stripe_score (periodic spectral peaks) and
    halo_score (edge overshoot against HR, grey levels).
Writes analysis/results/realism_check.csv (per image) and realism_check_summary.csv (means),
and with --crops a crop sheet (HR, fidelity, realism, bicubic, Real-ESRGAN at 3x zoom).

    OMP_NUM_THREADS=1 python analysis/realism_check.py --realsr 100 --realesrgan --crops
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ifcsr.data import HELD_OUT, pairs_from_samples
from ifcsr.data.images import load_image, to_tensor
from ifcsr.evaluation.artefacts import halo_score, stripe_score
from ifcsr.evaluation.metrics import compute_metrics
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR
from ifcsr.provenance import checkpoint_sha256 as sha256
from ifcsr.provenance import record

RESULTS = Path(__file__).parent / "results"
REALSR = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsr"
if not REALSR.is_dir():
    REALSR = Path("/work/shared/data/realsr")


@functools.cache
def _piqe():
    import pyiqa

    return pyiqa.create_metric("piqe", device="cpu")


def score(x: torch.Tensor, hr: torch.Tensor) -> dict:
    """PSNR-Y, NIQE, PIQE and the two artefact measures of one (1, 3, H, W) image in [0, 1]."""
    x = x.clamp(0, 1)
    with torch.no_grad():
        niqe = float(compute_metrics(x, names=["niqe"])["value"].iloc[0])
        piqe = float(_piqe()(x).item())
    return dict(psnr_y=float(psnr_y(x, hr)), niqe=niqe, piqe=piqe,
                stripe=stripe_score(x, hr), halo=halo_score(x, hr))


def eval_pairs(realsr: int):
    """(set, name, lr, hr) for chelsea + coffee and the first `realsr` RealSR pairs."""
    for pair in pairs_from_samples(HELD_OUT):
        yield "chelsea+coffee", pair["name"], pair["lr"][None], pair["hr"][None]
    if realsr:
        # test_LR/ and test_HR/ hold the same file names (OSEDiff's layout)
        for f in sorted((REALSR / "test_LR").glob("*.png"))[:realsr]:
            lr, hr = (to_tensor(load_image(d / f.name)) for d in (REALSR / "test_LR", REALSR / "test_HR"))
            yield "realsr", f.stem, lr, hr


@torch.no_grad()
def evaluate_model(model: IFCSR, *, realsr: int = 10, realesrgan=None, keep=None) -> pd.DataFrame:
    """One row per (set, image, output); outputs bicubic, fidelity, gamma0.5, realism
    (and realesrgan when a Real-ESRGAN model is given). keep: a dict that receives the images."""
    rows = []
    for set_, name, lr, hr in eval_pairs(realsr):
        ends = model.infer(lr)
        outs = {"bicubic": F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False),
                "fidelity": ends.fidelity, "gamma0.5": ends.blend(0.5), "realism": ends.realism}
        if realesrgan is not None:
            from ifcsr.evaluation.baselines import realesrgan_upscale as upscale

            outs["realesrgan"] = upscale(realesrgan, lr)
        for out, x in outs.items():
            rows.append(dict(set=set_, image=name, output=out, **score(x, hr)))
        if keep is not None:
            keep[name] = dict(hr=hr, **outs)
    return pd.DataFrame(rows)


def unsharp(x: torch.Tensor, sigma: float = 2.0, amount: float = 2.0) -> torch.Tensor:
    """A deliberately over-sharpened image: strong unsharp mask, x + amount (x - blur_sigma(x))."""
    import torchvision.transforms.functional as TF

    k = int(2 * round(3 * sigma) + 1)
    return (x + amount * (x - TF.gaussian_blur(x, [k, k], [sigma, sigma]))).clamp(0, 1)


@torch.no_grad()
def calibrate(old_checkpoint: Path, *, realsr: int = 10, realesrgan=None, cache: Path | None = None) -> pd.DataFrame:
    """stripe_score and halo_score of HR, bicubic, an over-sharpened bicubic (unsharp mask),
    Real-ESRGAN, OSEDiff (RealSR only: its published outputs) and a known-bad realism
    endpoint (the striped one of the bundle before issue 13, `old_checkpoint`).
    cache: a folder keeping the network outputs as PNG (8-bit, as saved results are), reused."""
    from ifcsr.data.images import save_image
    from ifcsr.evaluation.artefacts import halo_score, stripe_score

    old = None
    rows = []

    def cached(key, make):
        f = None if cache is None else Path(cache) / f"{key}.png"
        if f is not None and f.is_file():
            return to_tensor(load_image(f))
        x = make().clamp(0, 1)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            save_image(x[0], f)
        return x

    for set_, name, lr, hr in eval_pairs(realsr):
        bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)

        def old_end(which):
            def make():
                nonlocal old
                old = old or IFCSR.load(old_checkpoint)
                return getattr(old.infer(lr), which)
            return make

        grain = 3 / 255 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
        kinds = {"hr": hr, "hr_noise3": (hr + grain).clamp(0, 1),  # HR-like: 3 grey levels of grain
                 "bicubic": bic, "unsharp_bicubic": unsharp(bic), "unsharp_hr": unsharp(hr),
                 "old_fidelity": cached(f"{name}_old_fidelity", old_end("fidelity")),
                 "old_striped_realism": cached(f"{name}_old_realism", old_end("realism"))}
        osediff = REALSR / "results_osediff" / f"{name}.png"
        if set_ == "realsr" and osediff.is_file():
            kinds["osediff"] = to_tensor(load_image(osediff))
        if realesrgan is not None:
            from ifcsr.evaluation.baselines import realesrgan_upscale as upscale

            kinds["realesrgan"] = cached(f"{name}_realesrgan", lambda: upscale(realesrgan, lr))
        for kind, x in kinds.items():
            rows.append(dict(set=set_, image=name, kind=kind, stripe=stripe_score(x, hr), halo=halo_score(x, hr)))
        print(pd.DataFrame(rows[-len(kinds):]).round(4).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled one")
    p.add_argument("--realsr", type=int, default=100, help="RealSR images (first N by name; 0 = none)")
    p.add_argument("--realesrgan", action="store_true", help="also Real-ESRGAN x4plus (ifcsr fetch-weights realesrgan)")
    p.add_argument("--crops", action="store_true", help="write the crop sheet PNG")
    p.add_argument("--tag", default="realism_check")
    p.add_argument("--calibrate", default=None, metavar="OLD_CHECKPOINT",
                   help="instead: calibrate the artefact measures, with the striped realism endpoint of "
                        "OLD_CHECKPOINT (the bundle before issue 13: `git archive 052e201 ifcsr/assets/tiny "
                        "| tar -x -C /tmp/old`, then /tmp/old/ifcsr/assets/tiny)")
    p.add_argument("--cache", default=None, help="calibration: folder to keep/reuse network outputs (PNG)")
    p.add_argument("--antiring", type=int, default=None, metavar="W",
                   help="score with ModelConfig.antiring=W set on the loaded checkpoint (0 = off; default: "
                        "the checkpoint's own), e.g. the clamp on a run trained without it")
    p.add_argument("--antiring-edges", type=float, default=None, metavar="Q",
                   help="with --antiring: ModelConfig.antiring_edges (default: the checkpoint's own)")
    args = p.parse_args(argv)
    esr = None
    if args.realesrgan:
        from ifcsr.weights.realesrgan import load_realesrgan

        esr = load_realesrgan()
    if args.calibrate:
        df = calibrate(Path(args.calibrate), realsr=args.realsr, realesrgan=esr,
                       cache=Path(args.cache) if args.cache else None)
        df.to_csv(RESULTS / "artefact_calibration.csv", index=False)
        (RESULTS / "artefact_calibration_meta.json").write_text(json.dumps(dict(
            old_checkpoint=str(args.calibrate), old_checkpoint_sha256=sha256(Path(args.calibrate)),
            realsr_images=args.realsr, date=time.strftime("%Y-%m-%d", time.gmtime()),
            command="python analysis/realism_check.py " + " ".join(argv if argv is not None else sys.argv[1:])),
            indent=2))
        # Made from OLD (outside the repository: its sha256 is in the meta file), HR and bicubic,
        # not from the bundle: no repository inputs.
        record([RESULTS / "artefact_calibration.csv", RESULTS / "artefact_calibration_meta.json"], inputs=(),
               note=f"OLD_CHECKPOINT = {args.calibrate} (sha256 {sha256(Path(args.calibrate))[:12]}...)")
        summ = df.groupby(["set", "kind"], sort=False)[["stripe", "halo"]].agg(["mean", "min", "max"])
        with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160):
            print(summ.to_string())
        return df
    src = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    model = IFCSR.load(src)
    if args.antiring is not None or args.antiring_edges is not None:
        from dataclasses import replace

        ar = {k: v for k, v in (("antiring", args.antiring), ("antiring_edges", args.antiring_edges)) if v is not None}
        model.config = replace(model.config, model=replace(model.mcfg, **ar))
    keep = {} if args.crops else None
    t0 = time.perf_counter()
    df = evaluate_model(model, realsr=args.realsr, realesrgan=esr, keep=keep)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / f"{args.tag}.csv", index=False)
    summ = df.groupby(["set", "output"], sort=False)[["psnr_y", "niqe", "piqe", "stripe", "halo"]].mean()
    summ["n_images"] = df.groupby(["set", "output"], sort=False).size()
    summ.to_csv(RESULTS / f"{args.tag}_summary.csv")
    meta = dict(checkpoint=str(src), checkpoint_sha256=sha256(src), realsr_images=args.realsr,
                antiring=model.mcfg.antiring, antiring_edges=model.mcfg.antiring_edges,
                command="python analysis/realism_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                seconds=round(time.perf_counter() - t0))
    (RESULTS / f"{args.tag}_meta.json").write_text(json.dumps(meta, indent=2))
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 160):
        print(summ.to_string())
    written = [RESULTS / f"{args.tag}{suffix}" for suffix in (".csv", "_summary.csv", "_meta.json")]
    if keep is not None:
        from crop_sheet import write_crop_sheet

        print("crop sheet:", write_crop_sheet(keep, RESULTS / f"{args.tag}_crops.png"))
        written.append(RESULTS / f"{args.tag}_crops.png")
    record(written, inputs=(src,))
    return df


if __name__ == "__main__":
    main()
