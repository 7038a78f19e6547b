"""Quality checks of the bundled tiny checkpoint on the two held-out photos (x4 bicubic LR).

Prints, per held-out photo (chelsea, coffee; never seen in training):
  - bicubic x4 upsampling PSNR (the bar to beat),
  - the tiny VAE's reconstruction PSNR of the HR photo (the ceiling of any branch on it),
  - VAE(bicubic): the bicubic input through the VAE alone, where the residual model starts,
  - the fidelity endpoint's PSNR as the checkpoint infers it (with its configured colour fix)
    and without the colour fix, and PSNR along gamma = 0, 0.05, ..., 1 (monotone?),
  - gamma* = -<e_F, d> / |d|^2, where the blend's MSE is lowest (`ifcsr.blend.mse_optimal_gamma`):
    PSNR falls monotonically on the 0.05 grid iff gamma* <= 0.025,
  - the mean absolute difference between the realism and fidelity endpoints.
PSNR is reported on RGB (as DESIGN 6 measured) and on Y (the papers' convention), over the
whole image. Writes analysis/results/bundled_quality.csv.

    python analysis/bundled_quality.py [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ifcsr.blend import mse_optimal_gamma
from ifcsr.data import HELD_OUT, pairs_from_samples
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR
from ifcsr.provenance import record

RESULTS = Path(__file__).parent / "results"


def psnr_rgb(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR over RGB of images quantised to 8 bits, as the saved PNGs would be."""
    x, y = (x * 255).round() / 255, (y * 255).round() / 255
    return float(10 * torch.log10(1 / F.mse_loss(x, y)))


GRID = np.round(np.linspace(0, 1, 21), 2)  # gamma = 0, 0.05, ..., 1


def gamma_curve(ends, hr: torch.Tensor) -> dict:
    """The blend's RGB PSNR on GRID and what shapes it: monotone?, peak, gamma*, endpoint MAD."""
    ps = [psnr_rgb(ends.blend(float(g)), hr) for g in GRID]
    return dict(psnr=ps, monotone=bool(np.all(np.diff(ps) <= 0)), peak_gamma=float(GRID[int(np.argmax(ps))]),
                gamma_star=mse_optimal_gamma(ends.fidelity, ends.realism, hr),
                mad=float((ends.realism - ends.fidelity).abs().mean()))


@torch.no_grad()
def vae_reconstruction(model: IFCSR, hr: torch.Tensor) -> torch.Tensor:
    xp, (H, W) = model._pad(hr)
    z = model.vae.encode((xp * 2 - 1)).latent_dist.mode()
    return ((model.vae.decode(z).sample + 1) / 2).clamp(0, 1)[..., :H, :W]


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = IFCSR.load(args.checkpoint)
    rows, curves = [], []
    for pair in pairs_from_samples(HELD_OUT):
        lr, hr, name = pair["lr"][None], pair["hr"][None], pair["name"]
        bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        rec = vae_reconstruction(model, hr)
        vae_bic = vae_reconstruction(model, bic)
        ends = model.infer(lr)  # the checkpoint's configured colour fix
        raw = model.infer(lr, color_fix=None)
        curve = gamma_curve(ends, hr)
        py = [float(psnr_y(ends.blend(float(g)), hr)) for g in GRID]
        curves.append(pd.DataFrame({"image": name, "gamma": GRID, "psnr_rgb": curve["psnr"], "psnr_y": py}))
        rows.append(dict(
            image=name,
            bicubic_rgb=psnr_rgb(bic, hr), vae_recon_rgb=psnr_rgb(rec, hr), vae_bicubic_rgb=psnr_rgb(vae_bic, hr),
            fidelity_no_fix_rgb=psnr_rgb(raw.fidelity, hr),
            fidelity_rgb=psnr_rgb(ends.fidelity, hr), realism_rgb=psnr_rgb(ends.realism, hr),
            bicubic_y=float(psnr_y(bic, hr)), vae_recon_y=float(psnr_y(rec, hr)),
            fidelity_y=float(psnr_y(ends.fidelity, hr)), realism_y=float(psnr_y(ends.realism, hr)),
            psnr_monotone=curve["monotone"], psnr_y_monotone=bool(np.all(np.diff(py) <= 0)),
            psnr_peak_gamma=curve["peak_gamma"], gamma_star=curve["gamma_star"],
            mad_realism_vs_fidelity=curve["mad"],
        ))
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "bundled_quality.csv", index=False)
    pd.concat(curves).to_csv(RESULTS / "bundled_psnr_vs_gamma.csv", index=False)
    record([RESULTS / "bundled_quality.csv", RESULTS / "bundled_psnr_vs_gamma.csv"],
           inputs=[args.checkpoint or BUNDLED_CHECKPOINT])
    bb = "tiny backbone" if model.backbone.is_tiny else model.backbone.source
    print(f"checkpoint: {args.checkpoint or 'bundled'} ({bb}, losses on {model.config.loss.feature_net}, "
          f"colour fix {model.mcfg.color_fix}); "
          f"held-out photos, x{model.scale} bicubic LR; PSNR in dB over the whole image")
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 160):
        print(df.to_string(index=False))
    for r in rows:
        print(f"{r['image']}: fidelity - bicubic = {r['fidelity_rgb'] - r['bicubic_rgb']:+.2f} dB (RGB), "
              f"{r['fidelity_y'] - r['bicubic_y']:+.2f} dB (Y); VAE ceiling {r['vae_recon_rgb']:.2f} dB; "
              f"PSNR monotone in gamma: RGB {r['psnr_monotone']}, Y {r['psnr_y_monotone']} "
              f"(RGB peak at gamma {r['psnr_peak_gamma']:.2f}, MSE-optimal gamma* {r['gamma_star']:+.3f}); "
              f"realism vs fidelity MAD "
              f"{r['mad_realism_vs_fidelity']:.4f} ({255 * r['mad_realism_vs_fidelity']:.2f} grey levels)")
    return df


if __name__ == "__main__":
    main()
