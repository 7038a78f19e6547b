"""Stage-2 recipe variants for the realism endpoint (issue 13): train, then measure the trade-off.

Keeps a checkpoint's backbone and fidelity adapter (default: the bundled one) and retrains
only the realism adapter (stage 2) with a variant of the loss / stage-2 config given as JSON
overrides, e.g. the adversarial term's weight. Then measures PSNR-Y, NIQE and PIQE of the
fidelity endpoint, gamma 0.5 and the realism endpoint (and bicubic) on chelsea + coffee (whole
images, x4 bicubic LR) and on the first --realsr images of the RealSR test set (evaluation
only), plus the two artefact measures (ifcsr.evaluation.artefacts). Appends one row per (variant, seed,
set, image, output) to --out and saves each realism adapter under --runs.

    OMP_NUM_THREADS=1 python analysis/realism_variants.py --name adv0.01 \\
        --loss '{"adv_weight": 0.01}' --stage2 '{"steps": 300}' --seeds 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR, adapter_state_dict, load_adapter_state_dict, load_backbone
from ifcsr.recipes import make_dataset, stage_degradation
from ifcsr.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from realism_check import evaluate_model  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def train_variant(src: Path, loss: dict, stage2: dict, seed: int, top: dict | None = None) -> IFCSR:
    bundled = IFCSR.load(src)
    s2 = replace(bundled.config.stage2, seed=seed, **stage2)  # no out_dir: no checkpoints written
    cfg = replace(bundled.config, loss=replace(bundled.config.loss, **loss), stage2=s2, **(top or {}))
    model = IFCSR.from_backbone(load_backbone(src / "backbone"), cfg)
    load_adapter_state_dict(model.unet, "fidelity", adapter_state_dict(bundled.unet, "fidelity"))
    trainer = Trainer(model, make_dataset(cfg, s2.crop_size, seed=s2.seed, degradation=stage_degradation(cfg, s2)), config=cfg, progress=False)
    trainer.train_stage(2)
    return model, trainer.history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--checkpoint", default=None, help="default: the bundled one")
    p.add_argument("--loss", default="{}", help="JSON overrides of LossConfig")
    p.add_argument("--stage2", default="{}", help="JSON overrides of the stage-2 StageConfig")
    p.add_argument("--top", default="{}", help="JSON overrides of TrainConfig fields (degradation, data)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--realsr", type=int, default=10, help="RealSR images to evaluate (0 = none)")
    p.add_argument("--runs", default="/tmp/ifcsr_realism_runs")
    p.add_argument("--out", default=str(RESULTS / "realism_variants.csv"))
    args = p.parse_args(argv)
    src = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    loss, stage2, top = json.loads(args.loss), json.loads(args.stage2), json.loads(args.top)
    out = Path(args.out)
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, history = train_variant(src, loss, stage2, seed, top)
        secs = time.perf_counter() - t0
        run = Path(args.runs) / f"{args.name}_s{seed}"
        model.save(run, history=history)
        df = evaluate_model(model, realsr=args.realsr)
        df.insert(0, "variant", args.name)
        df.insert(1, "seed", seed)
        df.insert(2, "train_s", round(secs, 1))
        df["overrides"] = json.dumps({"loss": loss, "stage2": stage2, "top": top})
        df.to_csv(out, mode="a", header=not out.is_file(), index=False)
        summ = df.groupby(["set", "output"])[["psnr_y", "niqe", "piqe", "stripe", "halo"]].mean()
        print(f"== {args.name} seed {seed} ({secs:.0f} s)\n{summ.round(3).to_string()}", flush=True)


if __name__ == "__main__":
    main()
