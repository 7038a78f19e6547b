"""What every benchmark part shares: the run's configuration (`BenchConfig`), timing and memory
helpers, test images and models, the peers' control (PiSA-SR's latent mix, DNI's weight
interpolation) and the table's rows. Imports torch, numpy, ifcsr core and ifcsr.data."""



from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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




# --------------------------------------------------------------------------- rows


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
