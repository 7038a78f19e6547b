"""Benchmark parts a-d, on the CPU: one change of the control (ours and the peers'), the first
inference, a training step, large images with and without tiling (each in a fresh subprocess).
Imports torch, numpy, ifcsr core, ifcsr.data and ifcsr.evaluation.bench_common."""



from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from ifcsr.errors import InputError
from ifcsr.evaluation.bench_common import (
    BenchConfig,
    WeightInterpolation,
    _encode,
    _met,
    _repeats,
    _row,
    latent_control,
    load_model,
    median_time,
    peak_rss_mb,
    photo_lr,
    psnr,
    rss_mb,
)

# --------------------------------------------------------------------------- parts a-d


@torch.no_grad()
def part_a(model, bc: BenchConfig, log=print) -> list[dict]:
    """The cost of one change of the control."""
    from ifcsr import tiling
    from ifcsr.blend import blend
    from ifcsr.data.images import to_uint8

    rows = []
    gammas = itertools.cycle(np.linspace(0.05, 0.95, 19).tolist())  # a slider being moved
    # Warm up every code path once on a small input (the untiled and the tiled one).
    small = photo_lr(16)
    small_cfg = replace(tiling.TileConfig.for_model(model), latent_tile=32, latent_overlap=8, vae_tile=32)
    for cfg in (None, small_cfg):
        z = _encode(model, small, cfg)
        latent_control(model, z, 0.5, cfg)
        with WeightInterpolation(model) as dni:
            dni.change(z, 0.5, cfg)
    for S in bc.sizes_a:
        lr = photo_lr(S // model.scale)
        cfg = tiling.use_tiling(model, model.prepare(lr), None)
        tiled = " (tiled)" if cfg is not None else ""
        t0 = time.perf_counter()
        ends = model.infer(lr)
        t_infer = time.perf_counter() - t0
        f, r = ends.fidelity, ends.realism
        rows.append(_row("a", "one-off: infer both endpoints" + tiled, S, t_infer, repeats=1,
                         note="paid once; every later gamma is a blend"))
        buf = torch.empty_like(f)
        n = bc.blend_repeats
        t_copy = median_time(lambda: buf.copy_(f), n, warmup=3)
        t_blend = median_time(lambda: blend(f, r, next(gammas), out=buf), n, warmup=3)
        t_blend_new = median_time(lambda: blend(f, r, next(gammas)), n, warmup=3)
        f8, r8 = to_uint8(f), to_uint8(r)
        buf8 = np.empty_like(f8)
        t_copy8 = median_time(lambda: np.copyto(buf8, f8), n, warmup=3)
        t_blend8 = median_time(lambda: blend(f8, r8, next(gammas), out=buf8), n, warmup=3)
        rows.append(_row("a", "copy of the output, torch float32", S, t_copy, repeats=n))
        rows.append(_row("a", "IFCSR blend, torch float32 (out=)", S, t_blend, repeats=n, ratio=t_blend / t_copy,
                         ratio_of="blend / float32 copy", target="<= 2", met=_met(t_blend <= 2 * t_copy)))
        rows.append(_row("a", "IFCSR blend, torch float32 (new tensor)", S, t_blend_new, repeats=n,
                         ratio=t_blend_new / t_copy, ratio_of="blend / float32 copy"))
        rows.append(_row("a", "copy of the output, numpy uint8", S, t_copy8, repeats=n))
        rows.append(_row("a", "IFCSR blend, numpy uint8 (display)", S, t_blend8, repeats=n,
                         ratio=t_blend8 / t_copy8, ratio_of="blend / uint8 copy",
                         note="fixed-point blend; 4 bytes/pixel of float32 vs 1 of uint8"))
        del ends
        z_L = _encode(model, lr, cfg)
        reps = _repeats(bc, S)
        t_pisa = median_time(lambda: latent_control(model, z_L, next(gammas), cfg), reps, warmup=0)
        with WeightInterpolation(model) as dni:
            t_dni = median_time(lambda: dni.change(z_L, next(gammas), cfg), reps, warmup=0)
        cheapest = min(t_pisa, t_dni)
        note = "z_L cached; warm-up: the same code at 64 px"
        rows.append(_row("a", "latent control (PiSA-SR): 2 UNet + decode" + tiled, S, t_pisa, repeats=reps,
                         ratio=t_pisa / t_blend, ratio_of="x IFCSR float32 blend", note=note))
        rows.append(_row("a", "weight interp. (DNI): merge + UNet + decode" + tiled, S, t_dni, repeats=reps,
                         ratio=t_dni / t_blend, ratio_of="x IFCSR float32 blend", note=note))
        rows.append(_row("a", "cheapest re-inference / IFCSR blend", S, None, ratio=cheapest / t_blend,
                         ratio_of="speed-up of the blend", target=">= 1000", met=_met(cheapest >= 1000 * t_blend)))
        rows.append(_row("a", "cheapest re-inference / IFCSR uint8 blend", S, None, ratio=cheapest / t_blend8,
                         ratio_of="speed-up of the blend", target=">= 1000", met=_met(cheapest >= 1000 * t_blend8)))
        log(f"a {S}: blend {t_blend * 1e3:.3f} ms, copy {t_copy * 1e3:.3f} ms, "
            f"PiSA-style {t_pisa:.2f} s, DNI {t_dni:.2f} s")
    return rows


@torch.no_grad()
def part_b(model, bc: BenchConfig, log=print, device="cpu") -> list[dict]:
    """First inference of both endpoints vs a single branch."""
    rows = []
    for S in bc.sizes_b:
        reps = _repeats(bc, S)
        lr = photo_lr(S // model.scale).to(device)
        t_single = median_time(lambda: model.infer_branch(lr, "fidelity"), reps, device=device)
        t_batched = median_time(lambda: model.infer(lr, batched=True), reps, device=device)
        t_seq = median_time(lambda: model.infer(lr, batched=False), reps, device=device)
        rows.append(_row("b", "single branch (encode + UNet + decode)", S, t_single, repeats=reps))
        for name, t in (("both endpoints, batched (1 encode, 1 UNet pass of 2)", t_batched),
                        ("both endpoints, sequential (1 encode, 2 UNet + 2 decodes)", t_seq)):
            rows.append(_row("b", name, S, t, repeats=reps, ratio=t / t_single, ratio_of="/ single branch",
                             target="<= 1.6", met=_met(t <= 1.6 * t_single)))
        log(f"b {S}: single {t_single:.2f} s, batched {t_batched:.2f} s, sequential {t_seq:.2f} s")
    return rows


# -- subprocess workers (fresh process each: honest peak RSS) ------------------------------


def _run_worker(spec: dict, timeout: float | None = None) -> dict:
    code = "import json, sys; from ifcsr.evaluation.bench_cpu import worker; worker(json.loads(sys.argv[1]))"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {spec.get('job')} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("BENCH-RESULT "):])


def worker(spec: dict) -> None:
    """Entry point of a benchmark subprocess: runs one job and prints one BENCH-RESULT line."""
    import warnings

    warnings.filterwarnings("ignore")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    model, weights = load_model(spec.get("checkpoint"))
    job = spec["job"]
    if job == "infer":
        out = _worker_infer(model, spec)
    elif job == "train":
        out = _worker_train(model, spec)
    else:
        raise InputError(f"unknown job {job!r}")
    out.update(weights=weights, peak_mb=peak_rss_mb())
    print("BENCH-RESULT " + json.dumps(out), flush=True)


@torch.no_grad()
def _worker_infer(model, spec) -> dict:
    from ifcsr import tiling

    size, tile = spec["size"], spec["tile"]
    model.infer(photo_lr(16), tile=False)  # warm-up (lazy initialisation), tiny
    if tile:
        model.infer(photo_lr(16), tile=replace(tiling.TileConfig.for_model(model), latent_tile=32,
                                               latent_overlap=8, vae_tile=32))
    lr = photo_lr(size // model.scale)
    base = rss_mb()
    t0 = time.perf_counter()
    ends = model.infer(lr, tile=tile)
    seconds = time.perf_counter() - t0
    if spec.get("save"):
        from safetensors.torch import save_file

        save_file({"fidelity": ends.fidelity.contiguous(), "realism": ends.realism.contiguous()}, spec["save"])
    return dict(seconds=seconds, base_mb=base)


def _worker_train(model, spec) -> dict:
    from ifcsr.data.folders import SampleDataset
    from ifcsr.losses import FeatureNetworkError, build_feature_net
    from ifcsr.train import Trainer

    try:
        feature_net, fnet = build_feature_net(model.config.loss.feature_net), model.config.loss.feature_net
    except (FeatureNetworkError, FileNotFoundError, OSError):
        feature_net, fnet = build_feature_net("vgg-random"), "vgg-random (pretrained weights absent)"
    stage, steps = spec["stage"], spec["steps"]
    sc = replace(model.config.stage1 if stage == 1 else model.config.stage2, steps=steps,
                 batch_size=spec["batch"], crop_size=spec["crop"], checkpoint_every=0)
    cfg = replace(model.config, stage1=sc, stage2=sc)
    data = SampleDataset(crop_size=spec["crop"], scale=model.scale, seed=0, length=64)
    trainer = Trainer(model, data, config=cfg, device="cpu", feature_net=feature_net, progress=False)
    base = rss_mb()
    rows = trainer.train_stage(stage, steps=steps)
    secs = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]  # the first step is the warm-up
    return dict(seconds=statistics.median(secs), repeats=len(secs), base_mb=base, feature_net=fnet)


def part_c(bc: BenchConfig, log=print) -> list[dict]:
    """Training step time and peak memory, stages 1 and 2 (CPU, fresh process each)."""
    rows = []
    for stage in (1, 2):
        spec = dict(job="train", stage=stage, steps=bc.repeats + 1, batch=bc.train_batch, crop=bc.train_crop,
                    threads=torch.get_num_threads(), checkpoint=bc.checkpoint)
        r = _run_worker(spec)
        what = "fidelity LoRA" if stage == 1 else "realism LoRA on the blend"
        rows.append(_row("c", f"training step, stage {stage} ({what})", bc.train_crop, r["seconds"],
                         repeats=r["repeats"], peak_mb=r["peak_mb"],
                         note=f"batch {bc.train_batch}; peak RSS of a fresh process ({r['base_mb']:.0f} MB "
                              f"before the first step); loss features: {r['feature_net']}"))
        log(f"c stage {stage}: {r['seconds']:.2f} s/step, peak {r['peak_mb']:.0f} MB")
    return rows


@torch.no_grad()
def tiling_agreement(model) -> tuple[int, float]:
    """(side, PSNR dB of tiled vs untiled, worse endpoint) on an image that needs a 2 x 2 grid of
    UNet tiles and still fits the whole-image GroupNorm statistics (`stats_size`)."""
    from ifcsr import tiling

    cfg = tiling.TileConfig.for_model(model)
    side = min(cfg.latent_tile + cfg.latent_tile // 4, cfg.stats_size) * tiling.vae_factor(model)
    lr = photo_lr(side // model.scale)
    a, b = model.infer(lr, tile=False), model.infer(lr, tile=True)
    return side, min(psnr(a.fidelity, b.fidelity), psnr(a.realism, b.realism))


def _unet_tiles(model, side: int) -> int:
    from ifcsr import tiling

    cfg = tiling.TileConfig.for_model(model)
    h = side // tiling.vae_factor(model)
    return len(tiling.tile_starts(h, min(cfg.latent_tile, h), cfg.latent_overlap)) ** 2


def part_d(model, bc: BenchConfig, log=print) -> list[dict]:
    """Large images with and without tiling; each in a fresh subprocess (honest peak RSS)."""
    from ifcsr import tiling

    side, p = tiling_agreement(model)
    cfg = tiling.TileConfig.for_model(model)
    rows = [_row("d", "tiled vs untiled, PSNR dB (2x2 tiles, exact GroupNorm stats)", side, None, ratio=p,
                 ratio_of="dB, worse endpoint", target=">= 40", met=_met(p >= 40),
                 note=f"latent tile {cfg.latent_tile}, overlap {cfg.latent_overlap}")]
    log(f"d: tiled vs untiled at {side}: {p:.1f} dB")
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="ifcsr-bench-") as tmp:
        for S in bc.sizes_d:
            saved = {}
            for tile in (True, False):
                name = f"large image, {'tiled' if tile else 'untiled'}"
                if not tile and S > bc.untiled_max:
                    rows.append(_row("d", name, S, None, note=f"skipped: untiled above --untiled-max "
                                     f"{bc.untiled_max} (the tiny UNet's self-attention at 1/4 resolution is "
                                     "quadratic in pixels)"))
                    continue
                both = S <= bc.untiled_max
                path = os.path.join(tmp, f"{S}_{int(tile)}.safetensors") if both else None
                spec = dict(job="infer", size=S, tile=tile, threads=torch.get_num_threads(),
                            checkpoint=bc.checkpoint, save=path)
                r = _run_worker(spec)
                peaks[(S, tile)] = r["peak_mb"]
                if path:
                    saved[tile] = path
                tiles = f"{_unet_tiles(model, S)} UNet tiles; " if tile else ""
                rows.append(_row("d", name, S, r["seconds"], repeats=1, peak_mb=r["peak_mb"],
                                 note=f"{tiles}fresh process; {r['base_mb']:.0f} MB resident before inference"))
                log(f"d {S} {'tiled' if tile else 'untiled'}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB")
            if len(saved) == 2:
                from safetensors.torch import load_file

                a, b = (load_file(saved[t]) for t in (True, False))
                p = min(psnr(a["fidelity"], b["fidelity"]), psnr(a["realism"], b["realism"]))
                exact = S // tiling.vae_factor(model) <= cfg.stats_size
                rows.append(_row("d", "tiled vs untiled, PSNR dB", S, None, ratio=p, ratio_of="dB, worse endpoint",
                                 note="exact GroupNorm statistics" if exact else
                                 f"GroupNorm statistics estimated from the image resized to {cfg.stats_size}"))
        sizes = sorted(S for S, t in peaks if t)
        if len(sizes) >= 2:
            lo, hi = sizes[-2], sizes[-1]
            ratio = peaks[(hi, True)] / peaks[(lo, True)]
            rows.append(_row("d", f"tiled peak RSS {hi} / {lo}", hi, None, peak_mb=peaks[(hi, True)], ratio=ratio,
                             ratio_of=f"peak RSS / peak at {lo}", target="<= 1.25",
                             met=_met(ratio <= 1.25)))
            if hi >= 2048:
                rows.append(_row("d", f"tiled peak RSS at {hi}", hi, None, peak_mb=peaks[(hi, True)],
                                 target="< 4096 MB", met=_met(peaks[(hi, True)] < 4096)))
    return rows
