"""One recipe variant, trained and scored on the held-out photos: the probe behind the tiny preset.

Trains stage 1 and stage 2 (optionally a fresh stage 0) with the tiny preset changed by a
JSON object, then prints PSNR (RGB, 8-bit, whole image; Y too) of bicubic, VAE(HR),
VAE(bicubic), the fidelity endpoint without and with the wavelet colour fix, the realism
endpoint, and whether PSNR falls monotonically along gamma. Keys (all optional):

  name, s0 (new stage 0 with this many VAE steps; default: the bundled backbone), u0 (its
  UNet steps), ca (colour-augment the VAE), vlr (VAE lr), s1, s2 (stage steps), p (bicubic
  fraction of the training LR), rank, lr, lr2, crop, layers (loss layers, e.g. [0, 1]),
  k, cf (colour fix in training and inference: "wavelet" or "adain").

    python analysis/recipe_probe.py '{"name": "bic1000", "s1": 1000, "p": 1.0}'

The variants measured while choosing the preset are in analysis/results/recipe_probes.csv.
"""

import json
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bundled_quality import psnr_rgb, vae_reconstruction  # analysis/: the bundled checkpoint's measures

from ifcsr.data import HELD_OUT, pairs_from_samples
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR, load_backbone
from ifcsr.recipes import MixedDegradation, make_dataset, tiny_preset
from ifcsr.train import Trainer

warnings.filterwarnings("ignore")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def configure(v: dict):
    cfg = tiny_preset()
    rank = v.get("rank", 4)
    layers = tuple(v["layers"]) if "layers" in v else None
    return replace(
        cfg,
        stage1=replace(cfg.stage1, steps=v.get("s1", cfg.stage1.steps), lr=v.get("lr", cfg.stage1.lr),
                       crop_size=v.get("crop", cfg.stage1.crop_size), checkpoint_every=0),
        stage2=replace(cfg.stage2, steps=v.get("s2", cfg.stage2.steps), lr=v.get("lr2", cfg.stage2.lr),
                       checkpoint_every=0),
        model=replace(cfg.model, lora_rank=rank, lora_alpha=float(rank), color_fix=v.get("cf")),
        loss=replace(cfg.loss, layers=layers, k=v.get("k", cfg.loss.k)),
        stage0=replace(cfg.stage0, vae_steps=v.get("s0", cfg.stage0.vae_steps),
                       unet_steps=v.get("u0", cfg.stage0.unet_steps), vae_lr=v.get("vlr", cfg.stage0.vae_lr),
                       color_augment=v.get("ca", False)),
    )


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    v = json.loads(argv[0] if argv else "{}")
    name = v.pop("name", "probe")
    dev = os.environ.get("DEV", "cuda" if torch.cuda.is_available() else "cpu")
    cfg = configure(v)
    deg = MixedDegradation(cfg.model.scale, p_bicubic=v.get("p", 0.5))
    res = {"name": name, "V": v, "t": {}}
    source = "tiny"  # the bundled backbone
    if "s0" in v:
        from ifcsr.recipes import make_degradation

        data0 = make_dataset(cfg, cfg.stage0.crop_size, seed=cfg.stage0.seed,
                             degradation=make_degradation("bicubic", cfg.model.scale))
        source = Path("/tmp") / f"ifcsr-probe-backbone-{name}"
        t0 = time.time()
        Trainer(None, data0, config=cfg, progress=False, device=dev).train_stage0(save_to=source)
        res["t0"] = time.time() - t0
    model = IFCSR.from_backbone(load_backbone(source, device=dev), cfg)
    trainer = Trainer(model, None, config=model.config, progress=False, device=dev)
    for s, sc in ((1, cfg.stage1), (2, cfg.stage2)):
        if sc.steps:
            trainer.data = make_dataset(cfg, sc.crop_size, seed=sc.seed, degradation=deg)
            t0 = time.time()
            trainer.train_stage(s)
            res["t"][s] = time.time() - t0
    model.eval()
    grid = np.round(np.linspace(0, 1, 21), 2)
    with torch.no_grad():
        for pair in pairs_from_samples(HELD_OUT):
            lr, hr = pair["lr"][None].to(dev), pair["hr"][None].to(dev)
            bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
            raw, fixed = model.infer(lr, color_fix=None), model.infer(lr, color_fix="wavelet")
            ps = [psnr_rgb(raw.blend(float(g)), hr) for g in grid]
            pw = [psnr_rgb(fixed.blend(float(g)), hr) for g in grid]
            res[pair["name"]] = {
                "rec": psnr_rgb(vae_reconstruction(model, hr), hr),
                "vae_bic": psnr_rgb(vae_reconstruction(model, bic), hr),
                "bic": psnr_rgb(bic, hr), "bic_y": float(psnr_y(bic, hr)),
                "fid": psnr_rgb(raw.fidelity, hr), "fid_y": float(psnr_y(raw.fidelity, hr)),
                "fid_w": psnr_rgb(fixed.fidelity, hr), "real": psnr_rgb(raw.realism, hr), "real_w": pw[-1],
                "mono": bool(np.all(np.diff(ps) <= 0)), "mono_w": bool(np.all(np.diff(pw) <= 0)),
                "peak_g": float(grid[int(np.argmax(ps))]), "peak_gw": float(grid[int(np.argmax(pw))]),
                "mad": float((raw.realism - raw.fidelity).abs().mean()),
            }
    print(json.dumps(res), flush=True)
    out = Path(__file__).parent / "results" / "probes"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res))
    from ifcsr.provenance import record

    # A fresh stage 0 depends on nothing stored; otherwise the bundled backbone is the start.
    record(out / f"{name}.json", inputs=[] if "s0" in v else [BUNDLED_CHECKPOINT / "backbone"], expensive=True)
    return res


if __name__ == "__main__":
    main()
