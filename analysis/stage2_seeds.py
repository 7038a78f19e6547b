"""How much the shape of PSNR-vs-gamma depends on stage 2: retrain only the realism adapter.

Keeps the bundled checkpoint's backbone and fidelity adapter, re-runs stage 2 exactly as the
tiny preset does (300 steps, same loss, data and degradations) for several stage-2 seeds and
two starts of the realism adapter (`StageConfig.init_from`: None = zero LoRA, i.e. the bare
backbone; "fidelity" = a copy of the fidelity adapter), then measures per photo:

  - the realism endpoint's PSNR (8-bit RGB, whole image, x4 bicubic LR),
  - gamma* = -<e_F, d> / |d|^2, the gamma where the blend's MSE is lowest
    (`ifcsr.blend.mse_optimal_gamma`): PSNR falls monotonically on the 0.05 grid iff
    gamma* <= 0.025; gamma* > 0 means the realism endpoint partly corrects the fidelity one,
  - whether PSNR falls monotonically on the 0.05 grid, and the realism-fidelity MAD,

on the two held-out photos and (with --train-photos) the four training photos too.
Appends to analysis/results/stage2_seeds.csv (one row per run and photo). Each run costs
about 6 minutes on one CPU core.

    python analysis/stage2_seeds.py --seeds 0 1 2 3 4 --init zero fidelity --train-photos
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ifcsr.data import HELD_OUT, TRAIN_NAMES, pairs_from_samples
from ifcsr.models import (
    BUNDLED_CHECKPOINT,
    IFCSR,
    adapter_state_dict,
    load_adapter_state_dict,
    load_backbone,
)
from ifcsr.provenance import record
from ifcsr.recipes import make_dataset
from ifcsr.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from bundled_quality import gamma_curve, psnr_rgb

RESULTS = Path(__file__).parent / "results"


@torch.no_grad()
def measure(model: IFCSR, names) -> list[dict]:
    rows = []
    for pair in pairs_from_samples(names):
        lr, hr = pair["lr"][None], pair["hr"][None]
        bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        c = gamma_curve(model.infer(lr), hr)
        rows.append(dict(image=pair["name"], held_out=pair["name"] in HELD_OUT, bicubic_rgb=psnr_rgb(bic, hr),
                         fidelity_rgb=c["psnr"][0], realism_rgb=c["psnr"][-1], gamma_star=c["gamma_star"],
                         psnr_monotone=c["monotone"], psnr_peak_gamma=c["peak_gamma"],
                         mad_realism_vs_fidelity=c["mad"]))
    return rows


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled one")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--init", nargs="+", default=["zero", "fidelity"], choices=["zero", "fidelity"])
    p.add_argument("--steps", type=int, default=None, help="stage-2 steps (default: the checkpoint's)")
    p.add_argument("--train-photos", action="store_true", help="also measure on the four training photos")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "stage2_seeds.csv"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    bundled = IFCSR.load(src)
    fidelity = adapter_state_dict(bundled.unet, "fidelity")
    names = HELD_OUT + (TRAIN_NAMES if args.train_photos else ())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    all_rows = []
    for init in args.init:
        for seed in args.seeds:
            s2 = replace(bundled.config.stage2, seed=seed, init_from=None if init == "zero" else "fidelity",
                         checkpoint_every=0, **({"steps": args.steps} if args.steps else {}))
            cfg = replace(bundled.config, stage2=s2)
            model = IFCSR.from_backbone(load_backbone(src / "backbone"), cfg)
            load_adapter_state_dict(model.unet, "fidelity", fidelity)
            trainer = Trainer(model, make_dataset(cfg, s2.crop_size, seed=s2.seed), config=cfg, progress=False)
            t0 = time.perf_counter()
            trainer.train_stage(2)
            secs = time.perf_counter() - t0
            rows = [dict(init=init, seed=seed, steps=s2.steps, train_s=round(secs, 1), **r)
                    for r in measure(model, names)]
            for r in rows:
                print(f"init {init:8s} seed {seed} {r['image']:18s} fidelity {r['fidelity_rgb']:.3f} "
                      f"realism {r['realism_rgb']:.3f} gamma* {r['gamma_star']:+.4f} "
                      f"monotone {r['psnr_monotone']} MAD {r['mad_realism_vs_fidelity']:.4f}", flush=True)
            all_rows += rows
            pd.DataFrame(rows).to_csv(out, mode="a", header=not out.is_file(), index=False)  # kept if interrupted
            # Stage 2 reruns on the checkpoint's backbone and fidelity adapter, with its recipe.
            record(out, inputs=[src / "backbone", src / "fidelity.safetensors", src / "config.json"], expensive=True,
                   note="one block of rows per run, appended")
    return pd.DataFrame(all_rows)


if __name__ == "__main__":
    main()
