"""`ifcsr bench`: what control, inference, training and large images cost, measured in one run.

Parts (each a list of rows in one table and one CSV):
  a  the cost of ONE change of the control, on one model, at two output sizes:
     IFCSR's pixel blend of the cached endpoints (torch float32, numpy uint8 for display),
     next to a plain copy of the output array; latent-space control as PiSA-SR does it (two
     UNet passes + a VAE decode per change); weight interpolation as ESRGAN's DNI does it
     (merge the LoRA weights, then one UNet pass + a decode per change).
  b  the first inference of both endpoints (batched in one UNet pass, and sequential) vs one
     single-branch inference.
  c  a training step of stage 1 and stage 2 (tiny backbone, CPU): time and peak memory.
  d  large images: time and peak RSS with and without tiling, each in a fresh subprocess.
  e  (`--parts sd`) on a GPU: a backbone with SD 2.1-base's exact configuration (random
     weights, no download): at 512x512 fp16, one branch vs both endpoints batched and
     sequential, the blend, the peers' control; a training step of stages 1 and 2 at batch 4,
     512 px crops, bf16 autocast, with and without gradient checkpointing: time and peak GPU
     memory. Without a GPU it prints what it would measure (`sd_plan`) and that none is present.

Every time is the median of `repeats` runs after a warm-up; the machine, the thread count
and the load average at the start are recorded in every row. Parts a-d run on the CPU.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ifcsr.errors import InputError

COLUMNS = ["part", "measure", "size", "seconds", "repeats", "peak_mb", "ratio", "ratio_of", "target", "met",
           "note", "weights", "device", "threads", "machine", "load"]

# Stable Diffusion 2.1-base, unet/config.json and vae/config.json (stabilityai/stable-diffusion-2-1-base),
# written out so that part e needs no download. diffusers' `attention_head_dim` is the number of heads.
SD21_BASE_UNET = dict(
    act_fn="silu", attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, dual_cross_attention=False, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4,
    sample_size=64, up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    use_linear_projection=True,
)
SD21_BASE_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=768,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
SD21_PROMPT_SHAPE = (1, 77, 1024)  # CLIP ViT-H text encoder output for the empty prompt


@dataclass
class BenchConfig:
    parts: tuple[str, ...] = ("a", "b", "c", "d", "e")
    sizes_a: tuple[int, ...] = (256, 1024)   # output sides for the cost of control
    sizes_b: tuple[int, ...] = (256,)        # output side for first inference
    sizes_d: tuple[int, ...] = (512, 1024, 2048)  # output sides for large images
    untiled_max: int = 1024                  # part d runs the untiled pipeline up to this side
    train_crop: int = 128                    # part c: HR crop (issue: 128x128, batch 4)
    train_batch: int = 4
    repeats: int = 3                         # timed runs of network work (median); above 512 px, half
    blend_repeats: int = 50                  # timed runs of blends and copies (median)
    threads: int | None = None               # torch threads (None: leave as is)
    checkpoint: str | None = None            # None: bundled checkpoint if present, else random weights
    gpu_size: int = 512                      # part e output side
    train_batch_gpu: int = 4                 # part e training step: the paper's batch 4 ...
    train_crop_gpu: int = 512                # ... of 512 px HR crops
    train_steps_gpu: int = 6                 # part e: steps per stage and setting (the first warms up)
    train_precision_gpu: str = "bf16"        # part e: autocast of the training steps (the paper preset's)
    quick: bool = False
    progress: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **kw) -> BenchConfig:
        """CI-sized: small images, few repeats; the same code paths (seconds, not minutes)."""
        base = dict(sizes_a=(64, 128), sizes_b=(64,), sizes_d=(128,), untiled_max=128, train_crop=32,
                    train_batch=2, repeats=2, blend_repeats=10, quick=True)
        base.update(kw)
        return cls(**base)


# --------------------------------------------------------------------------- helpers


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return dict(machine=f"{model}, {os.cpu_count()} cores, torch {torch.__version__}",
                threads=torch.get_num_threads(), load=round(load, 2))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, repeats: int, *, warmup: int = 1, device="cpu") -> float:
    """Median wall time of fn() over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; else the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def photo_lr(side: int) -> torch.Tensor:
    """An LR input of side x side pixels: scikit-image's astronaut (512x512), resized."""
    from PIL import Image

    from ifcsr.data.samples import load_sample

    im = Image.fromarray(load_sample("astronaut"))
    if im.size != (side, side):
        im = im.resize((side, side), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255


def random_tiny_model(seed: int = 0):
    """The tiny backbone with random weights and random (non-zero) LoRA B matrices."""
    from ifcsr.models import IFCSR, build_tiny_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # LoRA A is drawn from the global generator: the same model in every process
        model = IFCSR(build_tiny_backbone(seed))
        for name, p in model.unet.named_parameters():
            if "lora_B" in name:
                p.data = torch.randn(p.shape) * 0.01
    return model.eval()


def load_model(checkpoint: str | None = None):
    """(model, weights) where weights says "bundled checkpoint", "checkpoint PATH" or "random weights"."""
    from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR

    if checkpoint:
        return IFCSR.load(checkpoint).eval(), f"checkpoint {checkpoint}"
    if (BUNDLED_CHECKPOINT / "config.json").is_file():
        return IFCSR.load().eval(), "bundled checkpoint"
    return random_tiny_model(), "random weights"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else -10 * np.log10(mse)


# --------------------------------------------------------------------------- the peers' control


def latent_control(model, z_L, gamma: float, cfg=None) -> torch.Tensor:
    """One change of a latent-space control as PiSA-SR does it: two UNet passes (one per LoRA;
    PiSA-SR runs the pixel LoRA, then both), mixed in latent space, then a VAE decode.
    z_L is cached (encoded once); cfg: a TileConfig for large images."""
    from ifcsr import tiling

    if cfg is None:
        z_f = model.denoise(z_L, "fidelity")
        z_r = model.denoise(z_L, "realism")
        return model.decode(torch.lerp(z_f, z_r, gamma))
    B = z_L.shape[0]
    z = tiling.tiled_denoise(model, z_L, ("fidelity", "realism"), cfg, batched=False)
    return tiling.tiled_decode(model, torch.lerp(z[:B], z[B:], gamma), cfg)


class WeightInterpolation:
    """ESRGAN's network interpolation (DNI) of the two adapters, as a context manager:

        W(a) = W_0 + (1 - a) dW_fidelity + a dW_realism     in every LoRA layer

    `change(z_L, a)` merges W(a) into the base weights and runs one UNet pass (adapters off)
    and a decode: what a DNI slider costs per move. The weights are restored on exit.
    """

    def __init__(self, model):
        from peft.tuners.lora import LoraLayer

        self.model = model
        self.layers = []
        for m in model.unet.modules():
            if isinstance(m, LoraLayer):
                w = m.get_base_layer().weight
                self.layers.append((w, w.detach().clone(), m.get_delta_weight("fidelity").detach(),
                                    m.get_delta_weight("realism").detach()))

    def merge(self, a: float) -> None:
        for w, w0, d_f, d_r in self.layers:
            w.data.copy_(w0).add_(d_f, alpha=1 - a).add_(d_r, alpha=a)

    def __enter__(self):
        self.model.unet.disable_adapters()
        return self

    def __exit__(self, *exc):
        for w, w0, _, _ in self.layers:
            w.data.copy_(w0)
        self.model.unet.enable_adapters()

    @torch.no_grad()
    def change(self, z_L, a: float, cfg=None) -> torch.Tensor:
        from ifcsr import tiling

        self.merge(a)
        if cfg is None:  # adapters are disabled: "fidelity" only names the call, no LoRA runs
            return self.model.decode(self.model.denoise(z_L, "fidelity"))
        z = tiling.tiled_denoise(self.model, z_L, ("fidelity",), cfg)
        return tiling.tiled_decode(self.model, z, cfg)


# --------------------------------------------------------------------------- parts


def _row(part, measure, size=None, seconds=None, *, repeats=None, peak_mb=None, ratio=None, ratio_of="",
         target="", met="", note="") -> dict:
    return dict(part=part, measure=measure, size=size, seconds=seconds, repeats=repeats, peak_mb=peak_mb,
                ratio=ratio, ratio_of=ratio_of, target=target, met=met, note=note)


def _repeats(bc: BenchConfig, size: int) -> int:
    """Timed runs of network work at this output size: all of them up to 512 px, half above
    (a change at 1024 px re-runs tens of UNet tiles: minutes each on 2 CPU cores)."""
    return bc.repeats if size <= 512 else max(1, bc.repeats // 2)


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


@torch.no_grad()
def _encode(model, lr, cfg):
    from ifcsr import tiling

    xp, _ = model._pad(model.prepare(lr))
    return model.encode(xp) if cfg is None else tiling.tiled_encode(model, xp, cfg)


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
    code = "import json, sys; from ifcsr.evaluation.bench import worker; worker(json.loads(sys.argv[1]))"
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


# --------------------------------------------------------------------------- run, table, CLI


def run(bc: BenchConfig, log=print, csv_path=None) -> list[dict]:
    """Run the selected parts; every row carries the machine, threads and weights. With
    csv_path, the CSV is rewritten after every part (an interrupted run keeps what it has)."""
    if bc.threads:
        torch.set_num_threads(bc.threads)
    info = machine_info()
    parts = {"e" if p == "sd" else p for p in bc.parts}  # "sd": the SD 2.1-base-sized GPU part
    unknown = parts - set("abcde")
    if unknown:
        raise InputError(f"unknown parts {sorted(unknown)}; choose from a, b, c, d, e (sd = e)")
    model = weights = None
    if parts & {"a", "b", "c", "d"}:
        model, weights = load_model(bc.checkpoint)
        log(f"model: {weights}; {info['machine']}; {info['threads']} threads; load average {info['load']}")
    rows = []
    for part in sorted(parts):
        t0 = time.perf_counter()
        if part == "a":
            new = part_a(model, bc, log)
        elif part == "b":
            new = part_b(model, bc, log)
        elif part == "c":
            new = part_c(bc, log)
        elif part == "d":
            new = part_d(model, bc, log)
        else:
            new = part_e(bc, log)
        for r in new:
            gpu = part == "e" and torch.cuda.is_available()
            r.update(weights="random weights (SD 2.1-base config)" if part == "e" else weights,
                     device="cuda" if gpu else "cpu", **info)
        rows += new
        log(f"part {part}: {time.perf_counter() - t0:.0f} s")
        if csv_path is not None:
            write_csv(rows, csv_path)
    return rows


def write_csv(rows: list[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return path


def _fmt_time(s) -> str:
    if s is None or s == "":
        return ""
    s = float(s)
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def format_table(rows: list[dict]) -> str:
    """A plain-text table: part, measure, size, median time, peak MB, ratio, target, met."""
    head = ["part", "measure", "size", "time", "peak MB", "ratio", "target", "met"]
    body = []
    for r in rows:
        ratio = r.get("ratio")
        ratio_s = "" if ratio is None else (f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2f}")
        if ratio_s and r.get("ratio_of"):
            ratio_s += f" ({r['ratio_of']})"
        body.append([r["part"], r["measure"], "" if r.get("size") is None else str(r["size"]),
                     _fmt_time(r.get("seconds")), "" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}",
                     ratio_s, r.get("target") or "", r.get("met") or ""])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    notes = [f"  {r['part']} {r['measure']} @{r.get('size')}: {r['note']}" for r in rows if r.get("note")]
    if rows:
        r0 = rows[0]
        out.insert(0, f"machine: {r0['machine']}; {r0['threads']} threads; load average at start {r0['load']}; "
                      f"parts a-d on CPU; weights: {r0['weights']}")
    return "\n".join(out + (["notes:"] + notes if notes else []))
