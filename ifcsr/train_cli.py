"""`ifcsr train`: run a preset (stages 0, 1, 2) or stages 1 and 2 on a given backbone."""

from __future__ import annotations

import shutil
from dataclasses import replace

from .errors import InputError


def add_arguments(p):
    p.add_argument("--preset", default="tiny", choices=["tiny", "smoke"],
                   help="recipe (default: tiny, the bundled checkpoint's; smoke: seconds, for tests)")
    p.add_argument("--out", default="runs/tiny", help="output folder (resumable; final checkpoint in OUT/final)")
    p.add_argument("--backbone", default=None,
                   help="train stages 1-2 on this backbone (diffusers folder or hub id) instead of stage 0")
    p.add_argument("--data", default=None, help="a folder of training images (default: the sample photos)")
    p.add_argument("--degradation", default=None,
                   help="training LR: bicubic, realesrgan, mixed (half each) or mixed:P (P = bicubic fraction)")
    p.add_argument("--steps", type=int, default=None, help="override the steps of stages 1 and 2")
    p.add_argument("--lr-schedule", default=None, choices=["constant", "cosine"],
                   help="learning-rate schedule of stages 1 and 2 (default: the preset's)")
    p.add_argument("--realism-init", default=None, choices=["zero", "fidelity"],
                   help="start the realism adapter at zero (the bare backbone) or as a copy of the "
                        "fidelity one (default: the preset's)")
    p.add_argument("--feature-net", default=None, choices=["vgg", "vgg-hed", "vgg-random"])
    p.add_argument("--k", type=float, default=None, help="depth-weight base k (1 = plain MSE+LPIPS)")
    p.add_argument("--stages", default=None, help="comma-separated stages to run, e.g. 1,2")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if OUT has a checkpoint")
    p.add_argument("--bundle", action="store_true",
                   help="copy the final checkpoint into the package (ifcsr/assets/tiny)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def config_from_args(args):
    """The TrainConfig that `ifcsr train` runs: the preset, then each given option over it."""
    from .recipes import PRESETS

    cfg = PRESETS[args.preset]()
    if args.data:
        cfg = replace(cfg, data=str(args.data))
    if args.degradation:
        from .recipes import make_degradation

        make_degradation(args.degradation)  # fail now, not after stage 0
        cfg = replace(cfg, degradation=args.degradation)
    if args.steps is not None:
        if args.steps < 1:
            raise InputError(f"--steps {args.steps}: must be at least 1 (0 steps would write an untrained checkpoint)")
        cfg = replace(cfg, stage1=replace(cfg.stage1, steps=args.steps), stage2=replace(cfg.stage2, steps=args.steps))
    if args.lr_schedule:
        cfg = replace(cfg, stage1=replace(cfg.stage1, lr_schedule=args.lr_schedule),
                      stage2=replace(cfg.stage2, lr_schedule=args.lr_schedule))
    if args.realism_init:
        cfg = replace(cfg, stage2=replace(cfg.stage2, init_from=None if args.realism_init == "zero" else "fidelity"))
    if args.feature_net or args.k is not None:
        cfg = replace(cfg, loss=replace(cfg.loss, feature_net=args.feature_net or cfg.loss.feature_net,
                                        k=cfg.loss.k if args.k is None else args.k))
    if args.backbone:
        cfg = replace(cfg, model=replace(cfg.model, backbone=args.backbone))
    return cfg


def main(args) -> int:
    from .models import check_device
    from .recipes import check_stages, train_recipe

    if args.device is not None:
        check_device(args.device)
    cfg = config_from_args(args)
    stages = (1, 2) if args.backbone else (0, 1, 2)
    if args.stages is not None:
        parts = [s.strip() for s in args.stages.split(",") if s.strip()]
        if not all(p.isdigit() for p in parts):
            raise InputError(f"--stages {args.stages!r}: expected comma-separated stage numbers, e.g. 1,2")
        stages = check_stages(int(p) for p in parts)
    _, final = train_recipe(cfg, args.out, stages=stages, resume=not args.no_resume, device=args.device)
    print(f"checkpoint: {final}")
    if args.bundle:
        from .models import BUNDLED_CHECKPOINT

        shutil.rmtree(BUNDLED_CHECKPOINT, ignore_errors=True)
        shutil.copytree(final, BUNDLED_CHECKPOINT)
        print(f"bundled into {BUNDLED_CHECKPOINT}")
    return 0
