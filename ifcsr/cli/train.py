"""`ifcsr train`: run a preset (stages 0, 1, 2) or stages 1 and 2 on a given backbone.
Imports the standard library and ifcsr.errors; the recipes and the model inside its functions.

The preset is `paper` for any backbone other than the tiny one (SD 2.1-base by hub id or folder),
`tiny` otherwise; the whole config is printed at the start, options over the preset marked.
Several processes: `accelerate launch [--num_processes N] -m ifcsr.cli.train --backbone ... --data ...`.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace

from ifcsr.errors import InputError


def add_arguments(p):
    p.add_argument("--preset", default=None, choices=["paper", "tiny", "smoke", "realesrgan", "realesrgan-smoke"],
                   help="recipe (default: paper for an SD 2.1-like --backbone, realesrgan for --backbone "
                        "realesrgan-x4plus, else tiny; realesrgan: the paper's method on a frozen Real-ESRGAN "
                        "x4plus generator; smoke: seconds, for tests). A tiny preset on a large backbone must be asked for.")
    p.add_argument("--out", default="runs/tiny", help="output folder (resumable; final checkpoint in OUT/final)")
    p.add_argument("--backbone", default=None,
                   help="train stages 1-2 on this backbone (diffusers folder or hub id) instead of stage 0")
    p.add_argument("--data", nargs="+", default=None, metavar="DIR",
                   help="folder(s) of training images for every stage, e.g. LSDIR FFHQ, or package-photos / samples "
                        "(tiny preset default: samples, package-photos in stage 2; required by the paper preset)")
    p.add_argument("--data-ratio", nargs="+", type=float, default=None, metavar="R",
                   help="share of each --data folder (default: by image count, as concatenating them)")
    p.add_argument("--data-limit", nargs="+", type=int, default=None, metavar="N",
                   help="use the first N images (sorted names) of each --data folder, 0 = all "
                        "(the paper: LSDIR all, FFHQ the first 10000)")
    p.add_argument("--degradation", default=None,
                   help="training LR: bicubic, realesrgan, mixed (half each) or mixed:P (P = bicubic fraction)")
    p.add_argument("--steps", type=int, default=None, help="override the steps of stages 1 and 2")
    p.add_argument("--lr", type=float, default=None, help="learning rate of stages 1 and 2")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch per process and micro-step (one step sees batch x processes x grad-accum)")
    p.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimiser step")
    p.add_argument("--crop-size", type=int, default=None, help="HR crop side of stages 1 and 2")
    p.add_argument("--checkpoint-every", type=int, default=None, help="resumable checkpoint every N steps (0: at the end)")
    p.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"],
                   help="autocast of stages 1-2 (LoRA weights stay float32; the frozen backbone is loaded in it)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute UNet and VAE-decoder activations in backward (for 24 GB cards)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers per process")
    p.add_argument("--lr-schedule", default=None, choices=["constant", "cosine"],
                   help="learning-rate schedule of stages 1 and 2 (default: the preset's)")
    p.add_argument("--realism-init", default=None, choices=["zero", "fidelity"],
                   help="start the realism adapter at zero (the bare backbone) or as a copy of the "
                        "fidelity one (default: the preset's)")
    p.add_argument("--feature-net", default=None, choices=["vgg", "vgg-hed", "vgg-random"])
    p.add_argument("--k", type=float, default=None, help="depth-weight base k (1 = plain MSE+LPIPS)")
    p.add_argument("--loss-layers", default=None,
                   help="comma-separated subset of the loss layers 0..5 (0 = pixel MSE; '0' alone runs no feature "
                        "network; default: all, as the paper)")
    p.add_argument("--texture-weight", type=float, default=None,
                   help="stage 2: weight of the texture term on the realism endpoint (not in the paper; "
                        "tiny preset: on, paper preset: 0 = off)")
    p.add_argument("--overshoot-weight", type=float, default=None,
                   help="stage 2: weight of the overshoot (halo) penalty on the realism endpoint (0 = off)")
    p.add_argument("--overshoot-edges", type=float, default=None, metavar="Q",
                   help="stage 2: apply the overshoot penalty only near HR's edges (luma gradient above its "
                        "Q-quantile, dilated 7 px; the pixels halo_score measures), e.g. 0.9")
    p.add_argument("--overshoot-reduce", choices=("mean", "rms"), default=None,
                   help="stage 2: average the overshoot as mean absolute (default) or root mean square excursion")
    p.add_argument("--overshoot-on", choices=("all", "bicubic"), default=None,
                   help="stage 2: which samples pay the overshoot penalty: all (default) or only those whose LR "
                        "is HR's plain bicubic downsample (halos on degraded LR go unpenalised)")
    p.add_argument("--antiring", type=int, default=None, metavar="W",
                   help="inference: clamp the realism endpoint near the fidelity endpoint's edges to the "
                        "fidelity endpoint's local range over W px (odd, e.g. 5; 0 = off); saved with the "
                        "checkpoint (ModelConfig.antiring; not in the paper)")
    p.add_argument("--adv-weight", type=float, default=None,
                   help="stage 2: weight of the adversarial term (not in the paper; 0 = off, every preset)")
    p.add_argument("--stage2-seed", type=int, default=None,
                   help="seed of stage 2 alone (its data order, crops and gammas), e.g. for a seed study "
                        "with --fidelity-from")
    p.add_argument("--stage2-degradation", default=None, metavar="NAME",
                   help="stage 2 alone: the LR degradation (bicubic, realesrgan, mixed:<p> with p the bicubic "
                        "fraction); default: the run's --degradation")
    p.add_argument("--stages", default=None, help="comma-separated stages to run, e.g. 1,2")
    p.add_argument("--fidelity-from", default=None, metavar="CHECKPOINT",
                   help="retrain only stage 2 (the realism adapter) on this checkpoint's backbone and fidelity "
                        "adapter, e.g. ifcsr/assets/tiny")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if OUT has a checkpoint")
    p.add_argument("--bundle", action="store_true",
                   help="copy the final checkpoint into the package (ifcsr/assets/tiny)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


# option -> (where it goes in the TrainConfig, for the echo)
STAGE_OPTIONS = {"steps": "steps", "lr": "lr", "batch_size": "batch_size", "grad_accum": "grad_accum",
                 "crop_size": "crop_size", "checkpoint_every": "checkpoint_every", "lr_schedule": "lr_schedule"}


def preset_of(args) -> str:
    """--preset, or the automatic choice: paper for a backbone other than the tiny one. A tiny
    preset on a large backbone is refused unless asked for (its lr and 64 px crops are not SD's)."""
    from ifcsr.recipes import preset_for

    return args.preset or preset_for(args.backbone)


def given_options(args) -> dict:
    """The options given on the command line (not None), as `--name value`, for the echo."""
    skip = {"preset", "out", "no_resume", "bundle", "device", "stages", "command", "_module", "_command"}
    out = {}
    for k, v in vars(args).items():
        if k in skip or v is None:
            continue
        out["--" + k.replace("_", "-")] = " ".join(map(str, v)) if isinstance(v, list) else v
    return out


def config_from_args(args):
    """The TrainConfig that `ifcsr train` runs: the preset, then each given option over it."""
    from ifcsr.recipes import PRESETS

    cfg = PRESETS[preset_of(args)]()
    if args.data:
        # The given data trains every stage: a preset's per-stage data (the tiny preset's stage 2
        # on "package-photos") gives way to it.
        cfg = replace(cfg, data=str(args.data[0]) if len(args.data) == 1 else tuple(map(str, args.data)),
                      stage1=replace(cfg.stage1, data=None), stage2=replace(cfg.stage2, data=None))
    if args.data_ratio is not None or args.data_limit is not None:
        if not args.data:
            raise InputError("--data-ratio and --data-limit apply to --data folders: give --data too")
        cfg = replace(cfg, data_ratio=tuple(args.data_ratio) if args.data_ratio else None,
                      data_limit=tuple(args.data_limit) if args.data_limit else None)
    if args.degradation:
        from ifcsr.recipes import make_degradation

        make_degradation(args.degradation)  # fail now, not after stage 0
        cfg = replace(cfg, degradation=args.degradation)
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps {args.steps}: must be at least 1 (0 steps would write an untrained checkpoint)")
    stage_kw = {field: getattr(args, opt) for opt, field in STAGE_OPTIONS.items() if getattr(args, opt) is not None}
    if stage_kw:
        cfg = replace(cfg, stage1=replace(cfg.stage1, **stage_kw), stage2=replace(cfg.stage2, **stage_kw))
    if args.realism_init:
        cfg = replace(cfg, stage2=replace(cfg.stage2, init_from=None if args.realism_init == "zero" else "fidelity"))
    if args.feature_net or args.k is not None:
        cfg = replace(cfg, loss=replace(cfg.loss, feature_net=args.feature_net or cfg.loss.feature_net,
                                        k=cfg.loss.k if args.k is None else args.k))
    terms = {f"{name}_weight": getattr(args, f"{name}_weight") for name in ("texture", "overshoot", "adv")
             if getattr(args, f"{name}_weight") is not None}
    if args.overshoot_edges is not None:
        terms["overshoot_edges"] = args.overshoot_edges
    if args.overshoot_reduce is not None:
        terms["overshoot_reduce"] = args.overshoot_reduce
    if args.overshoot_on is not None:
        terms["overshoot_on"] = args.overshoot_on
    if terms:
        try:
            cfg = replace(cfg, loss=replace(cfg.loss, **terms))
        except ValueError as err:  # LossConfig refuses negative and non-finite weights
            raise InputError(f"--texture-weight / --overshoot-weight / --overshoot-edges / --adv-weight: {err}") from None
    if args.stage2_seed is not None:
        cfg = replace(cfg, stage2=replace(cfg.stage2, seed=args.stage2_seed))
    if args.stage2_degradation is not None:
        from ifcsr.recipes import make_degradation

        make_degradation(args.stage2_degradation)  # a clear error before any model loads
        cfg = replace(cfg, stage2=replace(cfg.stage2, degradation=args.stage2_degradation))
    if args.loss_layers:
        try:
            layers = tuple(int(x) for x in args.loss_layers.split(","))
        except ValueError:
            raise InputError(f"--loss-layers: expected comma-separated integers, got {args.loss_layers!r}") from None
        cfg = replace(cfg, loss=replace(cfg.loss, layers=layers))
    runtime = {k: getattr(args, k) for k in ("mixed_precision", "gradient_checkpointing", "num_workers")
               if getattr(args, k) is not None}
    if runtime:
        cfg = replace(cfg, **runtime)
    if args.backbone:
        cfg = replace(cfg, model=replace(cfg.model, backbone=args.backbone))
    if args.antiring is not None:
        cfg = replace(cfg, model=replace(cfg.model, antiring=args.antiring))  # ModelConfig validates
    return cfg


def main(args) -> int:
    from accelerate import PartialState

    from ifcsr.models import check_device
    from ifcsr.recipes import check_stages, describe_config, train_recipe

    if args.device is not None:
        check_device(args.device)
    preset = preset_of(args)
    cfg = config_from_args(args)
    from ifcsr.generator import is_generator

    # stage 0 builds the tiny diffusion backbone: a given or pretrained backbone starts at stage 1
    stages = (1, 2) if args.backbone or is_generator(cfg.model.backbone) else (0, 1, 2)
    if args.stages is not None:
        parts = [s.strip() for s in args.stages.split(",") if s.strip()]
        if not all(p.isdigit() for p in parts):
            raise InputError(f"--stages {args.stages!r}: expected comma-separated stage numbers, e.g. 1,2")
        stages = check_stages(int(p) for p in parts)
    if args.fidelity_from:
        stages = (2,)
    state = PartialState(cpu=args.device == "cpu")
    if state.is_main_process:
        print(describe_config(cfg, preset=preset, overrides=given_options(args)))
        s1 = cfg.stage1
        print(f"stages {', '.join(map(str, stages))} on {state.num_processes} process(es) ({state.device}); samples per "
              f"optimiser step: {s1.batch_size} x {state.num_processes} x {s1.grad_accum} = "
              f"{s1.batch_size * state.num_processes * s1.grad_accum}", flush=True)
    _, final = train_recipe(cfg, args.out, stages=stages, resume=not args.no_resume, device=args.device,
                            log=print if state.is_main_process else (lambda *_: None),
                            fidelity_from=args.fidelity_from)
    if state.is_main_process:
        print(f"checkpoint: {final}")
    if args.bundle:
        from ifcsr.models import BUNDLED_CHECKPOINT

        shutil.rmtree(BUNDLED_CHECKPOINT, ignore_errors=True)
        shutil.copytree(final, BUNDLED_CHECKPOINT)
        print(f"bundled into {BUNDLED_CHECKPOINT}")
    return 0


if __name__ == "__main__":  # `accelerate launch -m ifcsr.cli.train ...` / `torchrun -m ifcsr.cli.train ...`
    from ifcsr.cli.app import main as _cli_main

    sys.exit(_cli_main(["train", *sys.argv[1:]]))
