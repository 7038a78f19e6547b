"""Benchmark part e, on a GPU: a backbone with SD 2.1-base's exact configuration (random weights,
no download): endpoints, the blend, the peers' control, training steps and peak memory. Imports
torch, diffusers (lazily), ifcsr core and ifcsr.evaluation.bench_common."""



from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from ifcsr.evaluation.bench_common import (
    SD21_BASE_UNET,
    SD21_BASE_VAE,
    SD21_PROMPT_SHAPE,
    BenchConfig,
    WeightInterpolation,
    _encode,
    _met,
    _row,
    latent_control,
    median_time,
    photo_lr,
)

# -- part e: GPU -------------------------------------------------------------------------------


def sd21_base_model(device="cuda", dtype=torch.float16, seed: int = 0):
    """An IFCSR model on a backbone with SD 2.1-base's exact configuration and random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ifcsr.models import IFCSR, Backbone, make_scheduler

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD21_BASE_UNET)
        vae = AutoencoderKL(**SD21_BASE_VAE)
        prompt = torch.randn(SD21_PROMPT_SHAPE) / 32
    bb = Backbone(vae.to(dtype).eval(), unet.to(dtype).eval(), make_scheduler(), prompt.to(dtype),
                  source="sd21-base config, random weights")
    model = IFCSR(bb).to(device, dtype)
    for name, p in model.unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.01)
    return model.eval()


def sd_plan(bc: BenchConfig) -> list[str]:
    """What part e (`--parts sd`) measures on a GPU, in words (printed when there is none)."""
    S, B, C = bc.gpu_size, bc.train_batch_gpu, bc.train_crop_gpu
    return [
        f"one branch (single adapter) at {S} px, fp16: time and peak GPU memory",
        f"both endpoints at {S} px, fp16, batched (one UNet pass over both adapters, one decode) and "
        "sequential (two passes, two decodes), each against one branch",
        f"the IFCSR blend of the cached endpoints at {S} px against a plain copy; PiSA-SR-style latent "
        "control and DNI weight interpolation per change of the control",
        f"a training step of stage 1 and of stage 2 at batch {B}, {C} px HR crops, bf16 autocast with float32 "
        "LoRA weights, without and with gradient checkpointing: median time and peak GPU memory",
        "both endpoints at " + ", ".join(f"{L} px" for L in bc.extra.get("gpu_large", (2048,))) +
        ", tiled and untiled",
    ]


class RandomPairs(torch.utils.data.Dataset):
    """HR/LR pairs of random pixels, seeded by index: the GPU's training step without the cost of
    the Real-ESRGAN degradations (those run in DataLoader workers, on the CPU)."""

    def __init__(self, n: int, crop: int, scale: int = 4):
        self.n, self.crop, self.scale = n, crop, scale

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        hr = torch.rand(1, 3, self.crop, self.crop, generator=g)
        lr = torch.nn.functional.interpolate(hr, scale_factor=1 / self.scale, mode="bicubic", antialias=True)
        return {"hr": hr[0], "lr": lr[0].clamp(0, 1)}


def _peak_mb(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else None


def _reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sd_training_rows(model, *, device, batch: int, crop: int, steps: int, mixed_precision: str, note: str,
                     log=print) -> list[dict]:
    """Training step time and peak memory of stages 1 and 2, without and with gradient checkpointing.

    The frozen backbone runs in the autocast dtype and the LoRA parameters in float32 (the paper
    preset's setting); the time is the median of `steps - 1` steps after a warm-up step."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from ifcsr.losses import FeatureNetworkError, build_feature_net, needs_feature_net
    from ifcsr.train import Trainer

    if not needs_feature_net(model.config.loss):
        fnet, fname = None, "none (pixel MSE only)"
    else:
        try:  # the paper's LPIPS-VGG; a random VGG16 has the same cost where its weights are absent
            fnet, fname = build_feature_net("vgg"), "vgg (LPIPS, ImageNet VGG16)"
        except (FeatureNetworkError, OSError):
            fnet, fname = build_feature_net("vgg-random"), "vgg-random (same cost as LPIPS-VGG; ImageNet weights absent)"
    # One process, this bench's own precision: a fresh accelerate state (it is process-wide).
    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=torch.device(device).type == "cpu", mixed_precision=mixed_precision)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)
    model.to(device, dtype)
    data = RandomPairs(batch * (steps + 1), crop, model.scale)
    rows = []
    for ckpt in (False, True):
        for stage in (1, 2):
            sc = replace(model.config.stage1, steps=steps, batch_size=batch, crop_size=crop, checkpoint_every=0,
                         grad_accum=1)
            cfg = replace(model.config, stage1=sc, stage2=sc, mixed_precision=mixed_precision,
                          gradient_checkpointing=ckpt, num_workers=0)
            trainer = Trainer(model, data, config=cfg, feature_net=fnet, progress=False, accelerator=acc)
            _reset_peak(device)
            hist = trainer.train_stage(stage, steps=steps)
            secs = [r["seconds"] for r in hist[1:]] or [hist[0]["seconds"]]  # the first step warms up
            what = "fidelity LoRA" if stage == 1 else "realism LoRA on the blend"
            rows.append(_row("e", f"training step, stage {stage} ({what}), gradient checkpointing "
                                  f"{'on' if ckpt else 'off'}", crop, statistics.median(secs), repeats=len(secs),
                             peak_mb=_peak_mb(device),
                             note=f"{note}; batch {batch}; {mixed_precision} autocast, float32 LoRA; loss "
                                  f"features {fname}; random pixels (no degradation cost)"))
            log(f"e: stage {stage}, checkpointing {'on' if ckpt else 'off'}: {rows[-1]['seconds']:.3f} s/step, "
                f"peak {rows[-1]['peak_mb'] or float('nan'):.0f} MB")
        model.unet.disable_gradient_checkpointing()
        model.vae.disable_gradient_checkpointing()
    model.history = []
    return rows


def measure_sd(model, bc: BenchConfig, *, device, log=print, note: str = "") -> list[dict]:
    """Part e's measurements on `model` (SD 2.1-base-shaped on a GPU; any IFCSR for a CPU check)."""
    from ifcsr.blend import blend

    rows = []
    S = bc.gpu_size
    lr = photo_lr(S // model.scale).to(device)
    gpu = torch.device(device).type == "cuda"
    reps, warm = (max(bc.repeats, 10), 2) if gpu else (bc.repeats, 1)  # CPU: a check of the code, not a figure
    with torch.no_grad():
        for measure, fn in (("single branch", lambda: model.infer_branch(lr, "fidelity")),
                            ("both endpoints, batched", lambda: model.infer(lr, batched=True)),
                            ("both endpoints, sequential", lambda: model.infer(lr, batched=False))):
            fn()
            _reset_peak(device)
            t = median_time(fn, reps, warmup=warm, device=device)
            rows.append(_row("e", f"GPU {measure}, SD 2.1-base config fp16", S, t, repeats=reps,
                             peak_mb=_peak_mb(device), note=f"{note}; peak_mb = GPU memory"))
        t_single = rows[0]["seconds"]
        for r in rows[1:]:
            r.update(ratio=r["seconds"] / t_single, ratio_of="/ single branch", target="<= 1.6",
                     met=_met(r["seconds"] <= 1.6 * t_single))
        ends = model.infer(lr)
        f, r_ = ends.fidelity, ends.realism
        buf = torch.empty_like(f)
        gammas = itertools.cycle(np.linspace(0.05, 0.95, 19).tolist())
        n = max(bc.blend_repeats, 100) if gpu else bc.blend_repeats
        t_copy = median_time(lambda: buf.copy_(f), n, warmup=10, device=device)
        t_blend = median_time(lambda: blend(f, r_, next(gammas), out=buf), n, warmup=10, device=device)
        rows.append(_row("e", "GPU copy of the output, float32", S, t_copy, repeats=n, note=note))
        rows.append(_row("e", "GPU IFCSR blend, float32 (out=)", S, t_blend, repeats=n, ratio=t_blend / t_copy,
                         ratio_of="blend / float32 copy", note=f"{note}; includes a synchronise per change"))
        z_L = _encode(model, lr, None)
        t_pisa = median_time(lambda: latent_control(model, z_L, next(gammas)), reps, warmup=warm, device=device)
        with WeightInterpolation(model) as dni:
            t_dni = median_time(lambda: dni.change(z_L, next(gammas)), reps, warmup=warm, device=device)
        rows.append(_row("e", "GPU latent control (PiSA-SR): 2 UNet + decode", S, t_pisa, repeats=reps,
                         ratio=t_pisa / t_blend, ratio_of="x IFCSR GPU blend", note=note))
        rows.append(_row("e", "GPU weight interp. (DNI): merge + UNet + decode", S, t_dni, repeats=reps,
                         ratio=t_dni / t_blend, ratio_of="x IFCSR GPU blend", note=note))
        for L in bc.extra.get("gpu_large", (2048,)):
            lr_l = photo_lr(L // model.scale).to(device)
            for tile in (True, False):
                fn = lambda: model.infer(lr_l, tile=tile)
                fn()
                _reset_peak(device)
                t = median_time(fn, 2, warmup=0, device=device)
                rows.append(_row("e", f"GPU both endpoints, {'tiled' if tile else 'untiled'}, SD 2.1-base config fp16",
                                 L, t, repeats=2, peak_mb=_peak_mb(device), note=f"{note}; peak_mb = GPU memory"))
    log(f"e: single {t_single * 1e3:.1f} ms, batched {rows[1]['seconds'] * 1e3:.1f} ms, "
        f"blend {t_blend * 1e6:.0f} us")
    rows += sd_training_rows(model, device=device, batch=bc.train_batch_gpu, crop=bc.train_crop_gpu,
                             steps=bc.train_steps_gpu, mixed_precision=bc.train_precision_gpu, note=note, log=log)
    return rows


def part_e(bc: BenchConfig, log=print) -> list[dict]:
    """SD 2.1-base-shaped model (random weights, no download) on the GPU: see `sd_plan`."""
    if not torch.cuda.is_available():
        log("e (--parts sd): no GPU present (torch.cuda.is_available() is False), nothing measured. "
            "On a GPU this part builds SD 2.1-base's exact UNet and VAE with random weights and measures:")
        for line in sd_plan(bc):
            log(f"  - {line}")
        return [_row("e", "GPU: SD 2.1-base-sized endpoints and training steps", bc.gpu_size, None,
                     note="skipped: no GPU")]
    name = torch.cuda.get_device_name()
    t0 = time.perf_counter()
    model = sd21_base_model("cuda")
    log(f"e: SD 2.1-base-sized model built in {time.perf_counter() - t0:.0f} s on {name}")
    return measure_sd(model, bc, device="cuda", log=log, note=name)
