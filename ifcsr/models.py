"""Backbone loading, the two LoRA adapters, and the IFCSR model (infer both endpoints once, blend).
Imports torch, diffusers, peft, ifcsr.weights, ifcsr.data.images and the core (blend, risk, tiling, checkpoint, config).

One-step SR (DESIGN 1): the LR image is bicubic-upsampled to the HR size, mapped to
[-1, 1] and VAE-encoded to z_L; the UNet maps z_L to z_H in one pass; the VAE decodes z_H.

    residual (PiSA-SR, the paper's default):  z_H = z_L - UNet(z_L, t, empty prompt), small t
    x0 (OSEDiff):  eps = UNet(z_L, 999); z_H = DDPM step from t = 999 ("trailing" spacing)

The UNet's prediction type is read from the scheduler config: x0 serves "epsilon" (SD 2.1-base),
"v_prediction" (SD 2.1-768: z_H = sqrt(a) z_L - sqrt(1 - a) v) and "sample"; residual is refused
(InputError) for any but epsilon (`IFCSR._check_formulation`).

The fidelity network f_theta and the realism network f_phi are two LoRA adapters
("fidelity", "realism") on ONE frozen UNet; the VAE is frozen too.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import apply_umask, recover_folder, verify_manifest, write_folder
from .config import TINY, ModelConfig, TrainConfig
from .errors import CheckpointError, InputError, WeightsUnavailable
from .data.images import ImageError, to_tensor
from .generator import GeneratorBackbone, GeneratorIFCSR, is_generator  # noqa: F401
from .endpoints import Endpoints, clamp_halos, finite_endpoints as _finite_endpoints  # noqa: F401 (public here too)
from .lora import (  # noqa: F401 (public here too: ifcsr.models has always offered them)
    ADAPTERS,
    MixedAdapters as _MixedAdapters,
    adapter_metadata,
    adapter_state_dict,
    check_adapter_metadata,
    load_adapter_state_dict,
    load_safetensors as _load_safetensors,
    lora_parameters,
    read_json as _read_json,
)


PROMPT_FILE = "empty_prompt.safetensors"
BUNDLED_CHECKPOINT = Path(__file__).parent / "assets" / "tiny"
# Checkpoints that ship inside the package, by name: `IFCSR.load("realesrgan")`, `--checkpoint realesrgan`.
BUNDLED = {"tiny": BUNDLED_CHECKPOINT,  # the tiny diffusion backbone (issue 13's recipe)
           "realesrgan": Path(__file__).parent / "assets" / "realesrgan"}  # IFCSR on Real-ESRGAN x4plus (issue 27)


class BackboneNotFoundError(WeightsUnavailable):
    """Backbone weights are missing: not a local diffusers folder and not reachable on the hub."""


# --------------------------------------------------------------------------- backbone


def check_device(device=None) -> str:
    """The device to run on: `device` validated (a clear InputError for a misspelt name or a GPU
    that is not there), or cuda when present, else cpu."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"device {device!r}: not a device name ({err}); use cpu or cuda (cuda:N)") from None
    if d.type == "cuda" and (not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count()):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise InputError(f"device {device!r}: this machine has {have} CUDA GPU(s); use --device cpu")
    if d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r}: Apple MPS is not available here; use --device cpu")
    if d.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r}: unsupported; use cpu or cuda (cuda:N)")
    return str(d)




@dataclass
class Backbone:
    vae: nn.Module            # diffusers AutoencoderKL (frozen)
    unet: nn.Module           # diffusers UNet2DConditionModel (frozen base, LoRA added later)
    scheduler: object         # diffusers DDPMScheduler (trailing spacing, no clipping)
    prompt_embeds: torch.Tensor  # (1, S, D) embedding of the empty prompt
    source: str = TINY        # where it came from: "tiny", a folder or a hub id

    @property
    def is_tiny(self) -> bool:
        """The tiny backbone: built by `build_tiny_backbone` / stage 0 (source "tiny"), or loaded from a
        folder whose UNet has the tiny configuration (`is_tiny_unet_config`: what stage 0 saves, the
        bundled one included). Decided by the configuration, not the size: every other backbone --
        SD 2.1-base by hub id or folder, a reduced-width SD-shaped test model -- is a referenced one
        (`IFCSR.save` references it by path or hub id instead of embedding it; SD tile defaults)."""
        return self.source == TINY or is_tiny_unet_config(self.unet.config)


def tiny_vae_config() -> dict:
    """The tiny latent autoencoder (DESIGN 6, issue 7): x1 (no downsampling), 4 latent channels.

    x2/4ch reconstructs held-out photos at 24.1/20.0 dB, far below bicubic (29.9/26.2);
    x1/4ch reaches 34.6/29.7 dB and is also faster per step. GroupNorm with 8 groups: with
    32 groups of 32 channels it is instance norm, which cost ~5.5 dB. No mid-block attention:
    at x1 it would be full-resolution attention (quadratic in pixels). One ResNet per block:
    at x1 every convolution runs at full resolution, and two per block made a VAE step
    2.4x slower on 2 CPU cores for a reconstruction already far above bicubic.
    """
    return dict(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(32,), layers_per_block=1, latent_channels=4,
        norm_num_groups=8, mid_block_add_attention=False, scaling_factor=1.0, sample_size=64,
    )


def tiny_unet_config() -> dict:
    """The tiny UNet: same class as SD 2.1's, three levels (32, 64, 64), attention only at 1/4.

    With the x1 VAE the latent is as large as the image, so attention sits at the lowest
    level only (attention at full latent resolution costs ~4x per level up, DESIGN 6).
    """
    return dict(
        sample_size=64, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=32, attention_head_dim=8,
    )


TINY_PROMPT_SHAPE = (1, 4, 32)  # the tiny backbone's constant "empty prompt" embedding
# What tells the tiny UNet from any other (SD 2.1's, a reduced-width SD-shaped one): its blocks.
TINY_UNET_KEYS = ("block_out_channels", "cross_attention_dim", "down_block_types", "up_block_types")


def is_tiny_unet_config(config) -> bool:
    """True when a UNet configuration (a dict read from unet/config.json, or a UNet's `.config`) has
    the tiny backbone's blocks (`tiny_unet_config`, the keys in TINY_UNET_KEYS)."""
    tiny = tiny_unet_config()

    def as_list(v):
        return list(v) if isinstance(v, (list, tuple)) else [v]

    return all(k in config and as_list(config[k]) == as_list(tiny[k]) for k in TINY_UNET_KEYS)


def is_tiny_backbone(source) -> bool:
    """True for the tiny backbone: "tiny", or a diffusers folder whose UNet has the tiny
    configuration (what stage 0 saves). Every other backbone -- SD 2.1-base by hub id or folder,
    or any other UNet -- is a referenced backbone (and `ifcsr train` uses the paper preset for it
    unless told otherwise, `ifcsr.recipes.preset_for`)."""
    if str(source) == TINY:
        return True
    f = Path(str(source)) / "unet" / "config.json"
    if not f.is_file():
        return False  # a hub id (or nothing yet): not the tiny backbone
    try:
        unet = json.loads(f.read_text())
    except (OSError, ValueError):
        return False  # unreadable: load_backbone names the file when it is loaded
    return isinstance(unet, dict) and is_tiny_unet_config(unet)


def make_scheduler(config: dict | None = None):
    """DDPMScheduler as OSEDiff uses it: trailing spacing (set_timesteps(1) -> t = 999), no clipping."""
    from diffusers import DDPMScheduler

    overrides = dict(timestep_spacing="trailing", clip_sample=False)
    if config is None:
        return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                             beta_start=0.00085, beta_end=0.012, **overrides)
    # diffusers drops the keys its "_use_default_values" lists (those that were defaults when the config
    # was made): an edited copy (prediction_type="v_prediction") must keep its edits
    config = {k: v for k, v in dict(config).items() if k != "_use_default_values"}
    return DDPMScheduler.from_config(config, **overrides)


def build_tiny_backbone(seed: int = 0) -> Backbone:
    """A randomly initialised tiny backbone (stage 0 trains it). UNet's conv_out starts at 0."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**tiny_vae_config())
        unet = UNet2DConditionModel(**tiny_unet_config())
        # Zero output conv: the residual model then starts exactly at VAE(bicubic) (DESIGN 6).
        nn.init.zeros_(unet.conv_out.weight)
        nn.init.zeros_(unet.conv_out.bias)
        prompt = torch.randn(TINY_PROMPT_SHAPE) / math.sqrt(TINY_PROMPT_SHAPE[-1])
    return Backbone(vae.eval(), unet.eval(), make_scheduler(), prompt, source=TINY)


def base_unet(unet: nn.Module) -> nn.Module:
    """The UNet without LoRA layers (a copy when adapters are attached), for saving the backbone."""
    if not any("lora_" in n for n, _ in unet.named_parameters()):
        return unet
    clean = type(unet).from_config(unet.config)
    state = {k.replace(".base_layer.", "."): v for k, v in unet.state_dict().items() if "lora_" not in k}
    clean.load_state_dict(state, strict=True)
    return clean.to(next(unet.parameters()).dtype)


def save_backbone(backbone: Backbone, path) -> Path:
    """Save in diffusers layout (vae/, unet/, scheduler/) plus the empty-prompt embedding."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone.vae.save_pretrained(path / "vae")
    base_unet(backbone.unet).save_pretrained(path / "unet")
    backbone.scheduler.save_pretrained(path / "scheduler")
    save_file({"prompt_embeds": backbone.prompt_embeds.detach().cpu().contiguous()}, path / PROMPT_FILE)
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "IFCSRTinyBackbone", "vae": ["diffusers", "AutoencoderKL"],
        "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDPMScheduler"],
    }, indent=2))
    apply_umask(path)  # shareable: safetensors writes 0600
    return path


def _missing_backbone(source, err) -> BackboneNotFoundError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    hint = (
        f"Backbone {str(source)!r} could not be loaded ({type(err).__name__}: {err}).\n"
        "It must be a local folder in diffusers layout (unet/, vae/, scheduler/, and text_encoder/ + "
        "tokenizer/ or a cached empty_prompt.safetensors) or a hub id such as "
        "'stabilityai/stable-diffusion-2-1-base'. "
    )
    if offline or not Path(str(source)).exists():
        hint += ("Without network, download it on a connected machine "
                 "(`huggingface-cli download stabilityai/stable-diffusion-2-1-base --local-dir sd21`) "
                 "and pass the folder, or use the bundled tiny backbone (backbone='tiny').")
    return BackboneNotFoundError(hint)


def read_prompt(path, *, fix: str = "copy the checkpoint again or retrain") -> torch.Tensor:
    """The (1, S, D) empty-prompt embedding stored in `path` (an empty_prompt.safetensors). A file
    that is empty, truncated, of another layout or holds NaN is a CheckpointError naming it and
    saying what fixes it (`fix`), never safetensors' "header too small"."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        emb = load_file(path)["prompt_embeds"]
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable empty-prompt embedding ({err}); the file is empty, truncated "
                              f"or corrupt: {fix}") from None
    except KeyError:
        raise CheckpointError(f"{path}: holds no 'prompt_embeds' tensor, so it is not an empty-prompt embedding: "
                              f"{fix}") from None
    if emb.ndim != 3 or emb.shape[0] != 1 or not emb.is_floating_point() or not torch.isfinite(emb).all():
        raise CheckpointError(f"{path}: the empty-prompt embedding must be a finite float tensor of shape (1, S, D), "
                              f"got {emb.dtype} {tuple(emb.shape)}: {fix}")
    return emb


def _check_prompt_width(prompt: torch.Tensor, unet: nn.Module, where) -> None:
    """The prompt feeds the UNet's cross-attention: a width other than its cross_attention_dim would
    fail inside the first forward pass, far from the file at fault."""
    want = getattr(unet.config, "cross_attention_dim", None)
    if isinstance(want, int) and prompt.shape[-1] != want:
        raise CheckpointError(f"{where}: the empty-prompt embedding is {prompt.shape[-1]} wide, the UNet's "
                              f"cross-attention expects {want}: the file belongs to another backbone; copy the "
                              "checkpoint again or retrain")


def empty_prompt_embedding(source, *, revision=None, cache_dir=None, device="cpu") -> torch.Tensor:
    """Empty-prompt embedding: read from `empty_prompt.safetensors`, else computed once with the
    backbone's tokenizer + text encoder (freed afterwards) and cached next to a local backbone
    (or in ``ifcsr.weights.cache.ifcsr_cache_dir("prompts")`` for a hub id)."""
    from safetensors.torch import save_file

    from .weights.cache import ifcsr_cache_dir

    local = Path(str(source))
    cache = (local / PROMPT_FILE) if local.is_dir() else (
        Path(cache_dir or ifcsr_cache_dir("prompts")) / str(source).replace("/", "--") / PROMPT_FILE)
    for candidate in (cache, local / PROMPT_FILE):
        if candidate.is_file():
            return read_prompt(candidate, fix="copy the backbone (or checkpoint) again" if candidate.parent == local
                               else "delete it and it is computed again from the backbone's text encoder")
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tok = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", revision=revision)
        te = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", revision=revision).to(device).eval()
    except (OSError, ValueError) as err:
        # the UNet and VAE loaded: what is missing is the prompt, not "the backbone"
        raise BackboneNotFoundError(
            f"Backbone {str(source)!r}: no empty-prompt embedding. It is read from {cache} (or from the "
            f"{PROMPT_FILE} at the top of a checkpoint trained on this backbone), else computed once with the "
            "backbone's tokenizer/ and text_encoder/, which could not be loaded "
            f"({type(err).__name__}: {err}). Provide tokenizer/ and text_encoder/ (or that file), or load "
            "a checkpoint that carries its own.") from err
    ids = tok("", padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = te(ids.to(device))[0].float().cpu()
    del te
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({"prompt_embeds": emb.contiguous()}, cache)
    except OSError:
        pass  # read-only location: recompute next time
    return emb


def load_backbone(source=TINY, *, revision=None, variant=None, dtype=torch.float32, device="cpu",
                  prompt_embeds=None) -> Backbone:
    """Load a backbone with diffusers' `from_pretrained(source, subfolder=...)`.

    source: "tiny" (the bundled tiny backbone), a local diffusers folder, or a hub id. The
    same code loads SD 2.1-base and the tiny backbone that stage 0 saves.
    prompt_embeds: the empty-prompt embedding to use, a (1, S, D) tensor or the path of an
        empty_prompt.safetensors (a checkpoint's own, `IFCSR.load`). Given, the backbone's
        tokenizer and text encoder are not needed (nor read); else `empty_prompt_embedding`.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    if str(source) == TINY:
        source = BUNDLED_CHECKPOINT / "backbone"
        if not source.is_dir():
            raise BackboneNotFoundError(
                f"the bundled tiny backbone is missing ({source}); rebuild it with `ifcsr train --preset tiny`")
    kw = dict(revision=revision, variant=variant, torch_dtype=dtype)
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kw)
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kw)
        sched = DDPMScheduler.from_pretrained(source, subfolder="scheduler", revision=revision)
    except (OSError, ValueError) as err:  # EnvironmentError for missing files / offline hub
        raise _missing_backbone(source, err) from err
    if prompt_embeds is None:
        prompt, where = empty_prompt_embedding(source, revision=revision), f"{source}/{PROMPT_FILE}"
    elif isinstance(prompt_embeds, torch.Tensor):
        prompt, where = prompt_embeds.detach(), "prompt_embeds"
        if prompt.ndim != 3 or prompt.shape[0] != 1 or not prompt.is_floating_point() or \
                not torch.isfinite(prompt).all():
            raise InputError(f"prompt_embeds must be a finite float tensor of shape (1, S, D), got "
                             f"{prompt.dtype} {tuple(prompt.shape)}")
    else:
        prompt, where = read_prompt(prompt_embeds), prompt_embeds
    _check_prompt_width(prompt, unet, where)
    return Backbone(vae.to(device).eval(), unet.to(device).eval(), make_scheduler(sched.config),
                    prompt.to(device, dtype), source=str(source))


# --------------------------------------------------------------------------- LoRA


def add_lora_adapters(unet: nn.Module, cfg: ModelConfig, names=ADAPTERS, *, seed: int = 0) -> None:
    """Freeze the UNet and add one LoRA adapter per name, as diffusers' LoRA training does.

    The random LoRA A matrices are drawn after seeding with `seed` inside a forked RNG, so the
    same config starts from the same adapters whatever ran before in the process (a recipe
    that trains stage 0 first, or one that reuses a saved backbone), and the global RNG is
    left as it was. B starts at zero, so every adapter starts as the bare backbone."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    present = {n.rsplit(".", 1)[-1] for n, _ in unet.named_modules()} | {n for n, _ in unet.named_modules()}
    targets = [t for t in cfg.target_modules if t in present or any(n.endswith("." + t) for n, _ in unet.named_modules())]
    if not targets:
        raise InputError(f"none of the LoRA target modules {cfg.target_modules} exist in this UNet")
    devices = [unet.device] if getattr(unet, "device", torch.device("cpu")).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, init_lora_weights="gaussian",
                              target_modules=targets)
            with warnings.catch_warnings():
                # Two named adapters on one UNet is diffusers' documented multi-adapter use; peft
                # still warns "Already found a `peft_config` attribute" on the second add_adapter.
                # Ignore exactly that warning, only here.
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute",
                                        category=UserWarning)
                unet.add_adapter(lcfg, adapter_name=name)
    unet.set_adapter(names[0])


# --------------------------------------------------------------------------- IFCSR


class IFCSR(nn.Module):
    """One frozen one-step diffusion backbone with a fidelity and a realism LoRA adapter.

    >>> model = IFCSR.load()                   # the bundled tiny checkpoint
    >>> ends = model.infer(lr)                 # both endpoints, one VAE encode
    >>> x = ends.blend(0.3)                    # (1 - 0.3) * fidelity + 0.3 * realism
    """

    def __init__(self, backbone: Backbone, config: TrainConfig | ModelConfig | None = None):
        super().__init__()
        if config is None:
            config = TrainConfig()
        if isinstance(config, ModelConfig):
            config = TrainConfig(model=config)
        self.config = config
        self.backbone = backbone
        self.vae = backbone.vae.requires_grad_(False)
        self.unet = backbone.unet
        self.scheduler = backbone.scheduler
        self.register_buffer("prompt_embeds", backbone.prompt_embeds.detach().clone(), persistent=False)
        add_lora_adapters(self.unet, self.mcfg)
        self.history: list[dict] = []
        self._check_formulation()

    kind = "diffusion"

    # -- config ---------------------------------------------------------------------
    @property
    def adapter_host(self) -> nn.Module:
        """The module that carries the LoRA layers: the UNet."""
        return self.unet

    def describe(self) -> str:
        what = "the tiny diffusion backbone" if self.backbone.is_tiny else f"diffusion backbone {self.backbone.source}"
        return f"{what} with two rank-{self.mcfg.lora_rank} LoRAs"

    @property
    def mcfg(self) -> ModelConfig:
        return self.config.model

    @property
    def scale(self) -> int:
        return self.mcfg.scale

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def timestep(self) -> int:
        if self.mcfg.formulation == "x0":
            # OSEDiff: one step at t = 999. With the default "leading" spacing set_timesteps(1)
            # gives t = 0 (no denoising at all); "trailing" gives 999.
            self.scheduler.set_timesteps(1)
            return int(self.scheduler.timesteps[0])
        return self.mcfg.timestep

    @property
    def prediction_type(self) -> str:
        """What the backbone's UNet predicts, from its scheduler config: "epsilon" (SD 2.1-base, the
        tiny backbone), "v_prediction" (SD 2.1-768) or "sample"."""
        return str(getattr(self.scheduler.config, "prediction_type", "epsilon"))

    def _check_formulation(self):
        """Refuse a formulation the backbone cannot serve (InputError).

        x0 (OSEDiff): any prediction type; `denoise` turns the UNet's output at t = 999 into x0 as
        DDPMScheduler.step does ("epsilon", "v_prediction" and "sample").
        residual (PiSA-SR): epsilon only. z_H = z_L - UNet(z_L, t) reads the output as the noise in z_L;
        a v-prediction (SD 2.1-768) or sample-prediction UNet outputs something else, and
        subtracting it would start training far from the backbone's prior.
        """
        pt = self.prediction_type
        if pt not in ("epsilon", "v_prediction", "sample"):
            raise InputError(f"backbone {self.backbone.source}: unknown prediction_type {pt!r} in its scheduler "
                             "config; supported: 'epsilon', 'v_prediction' (x0 formulation), 'sample' (x0)")
        if self.mcfg.formulation == "residual" and pt != "epsilon":
            raise InputError(
                f"backbone {self.backbone.source} predicts {pt!r} (scheduler config prediction_type; SD 2.1-768 is "
                "a v-prediction model), but the residual formulation z_H = z_L - UNet(z_L, t) needs an "
                "epsilon-prediction backbone such as SD 2.1-base. Use formulation='x0' (one DDPM step from "
                "t = 999, which converts v and sample predictions to x0), or an epsilon backbone")
        if self.mcfg.formulation == "x0" and self.timestep != self.scheduler.config.num_train_timesteps - 1:
            raise InputError(f"x0 formulation needs trailing spacing (t = 999), scheduler gives {self.timestep}")

    @property
    def size_multiple(self) -> int:
        """HR sizes are padded to a multiple of this (VAE and UNet downsampling factors)."""
        vae_f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_f = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return vae_f * unet_f

    # -- the pipeline, step by step -------------------------------------------------
    def prepare(self, lr) -> torch.Tensor:
        """LR image (tensor/PIL/numpy) -> bicubic x scale upsample, (B, 3, H, W) in [0, 1]."""
        x = to_tensor(lr, name="lr").to(self.device, torch.float32)
        if min(x.shape[-2:]) < 4:
            raise ImageError(f"lr: image of {tuple(x.shape[-2:])} pixels is too small (at least 4x4)")
        H, W = x.shape[-2] * self.scale, x.shape[-1] * self.scale
        return F.interpolate(x, size=(H, W), mode="bicubic", align_corners=False).clamp_(0, 1)

    def _pad(self, x):
        m = self.size_multiple
        H, W = x.shape[-2:]
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            mode = "reflect" if ph < H and pw < W else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (H, W)

    def encode(self, x_up: torch.Tensor) -> torch.Tensor:
        """[0, 1] image (padded to size_multiple) -> z_L, scaled latent."""
        z = self.vae.encode((x_up * 2 - 1).to(self.dtype)).latent_dist.mode()
        return z * self.vae.config.scaling_factor

    def denoise(self, z_L: torch.Tensor, adapter: str | list[str]) -> torch.Tensor:
        """One UNet pass with the given adapter (or a list: one adapter per sample, one pass)."""
        t = torch.full((z_L.shape[0],), self.timestep, device=z_L.device, dtype=torch.long)
        emb = self.prompt_embeds.to(z_L.dtype).expand(z_L.shape[0], -1, -1)
        if isinstance(adapter, str):
            self.unet.set_adapter(adapter)
            pred = self.unet(z_L, t, encoder_hidden_states=emb).sample
        else:
            with _MixedAdapters(self.unet, adapter):
                pred = self.unet(z_L, t, encoder_hidden_states=emb).sample
        if self.mcfg.formulation == "residual":
            return z_L - pred  # PiSA-SR residual learning (epsilon backbones only: _check_formulation)
        # x0: the DDPM step from t = 999 to the end. With prev t = -1, alpha_prev = 1 and the
        # step's prev_sample equals its pred_original_sample (plus 1e-10 noise, skipped here);
        # pred_original_sample per prediction type as in diffusers' DDPMScheduler.step.
        a = self.scheduler.alphas_cumprod.to(z_L.device)[self.timestep].to(z_L.dtype)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * z_L - (1 - a).sqrt() * pred  # x0 = sqrt(a) z_t - sqrt(1 - a) v
        if self.prediction_type == "sample":
            return pred
        return (z_L - (1 - a).sqrt() * pred) / a.sqrt()  # x0 = (z_t - sqrt(1 - a) eps) / sqrt(a)

    def decode(self, z_H: torch.Tensor) -> torch.Tensor:
        """z_H -> image in [0, 1]."""
        x = self.vae.decode(z_H / self.vae.config.scaling_factor).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    def branch(self, lr_up: torch.Tensor, adapter: str, z_L: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable output of one branch from an upsampled LR batch (training path)."""
        xp, (H, W) = self._pad(lr_up)
        if z_L is None:
            with torch.no_grad():
                z_L = self.encode(xp)
        return self.decode(self.denoise(z_L, adapter))[..., :H, :W]

    def training_outputs(self, lr: torch.Tensor, stage: int):
        """(fidelity, realism or None, bicubic upsample) for the trainer: stage 1 gives f_theta with
        gradients; stage 2 gives f_theta without and f_phi with gradients. One VAE encode, without
        gradients (the VAE is frozen)."""
        x_up = self.prepare(lr)
        xp, (H, W) = self._pad(x_up)
        with torch.no_grad():
            z_L = self.encode(xp)

        def out_of(adapter):
            return self.decode(self.denoise(z_L, adapter))[..., :H, :W]

        if stage == 1:
            return out_of("fidelity"), None, x_up
        with torch.no_grad():  # theta is frozen in stage 2
            fid = out_of("fidelity")
        return fid, out_of("realism"), x_up

    # -- inference ------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, lr, *, batched: bool = True, tile=None, color_fix: str | None = "config",
              progress: bool = False) -> Endpoints:
        """Both endpoint images for an LR input, in [0, 1]. One VAE encode serves both branches;
        with batched=True both adapters run in one UNet pass and one decode.

        tile: None tiles large images automatically (above `ifcsr.tiling.TileConfig.auto_latent`),
            True forces tiling, False disables it, a `TileConfig` forces it with those sizes.
        color_fix: None, "adain" or "wavelet" (OSEDiff's colour fixes against the LR);
            "config" (default) uses the checkpoint's `ModelConfig.color_fix`.
        progress: a tqdm bar over the passes (encode, UNet, decode; over tiles when tiled), for
            the command line and notebooks, where one large image can take a minute on a CPU.
        """
        from dataclasses import replace as _replace

        from tqdm.auto import tqdm

        from . import tiling

        color_fix = self.mcfg.color_fix if color_fix == "config" else color_fix
        tiling.check_color_fix(color_fix)
        x_up = self.prepare(lr)
        cfg = tiling.use_tiling(self, x_up, tile)
        if cfg is not None:
            if progress and cfg.progress is None:
                cfg = _replace(cfg, progress=True)
            fid, real = tiling.infer_tiled(self, x_up, ADAPTERS, cfg, batched=batched)
            # the clamp runs on the stitched images: its edge quantile is the whole image's
            return Endpoints(*_finite_endpoints(self._antiring(*tiling.color_fix_all(
                (fid, real), x_up, color_fix, self.mcfg.color_fix_levels)), ADAPTERS))
        xp, (H, W) = self._pad(x_up)
        steps = ["VAE encode", "UNet (both adapters)", "VAE decode"] if batched else \
            ["VAE encode", "UNet fidelity", "VAE decode", "UNet realism", "VAE decode"]
        # At most five passes, each seconds long: draw every one (mininterval=0, miniters=1), so the
        # bar always shows where it is, also its final "n/n" before it is cleared.
        with tqdm(total=len(steps), desc=f"infer {W}x{H}", disable=not progress, leave=False,
                  mininterval=0, miniters=1,
                  bar_format="{desc}: {n}/{total} passes |{bar}| {elapsed} {postfix}") as bar:
            def done(i):
                bar.update(1)
                if i + 1 < len(steps):
                    bar.set_postfix_str(steps[i + 1])

            bar.set_postfix_str(steps[0])
            z_L = self.encode(xp)
            done(0)
            B = z_L.shape[0]
            if batched:
                z = self.denoise(torch.cat([z_L, z_L]), ["fidelity"] * B + ["realism"] * B)
                done(1)
                out = self.decode(z)[..., :H, :W]
                done(2)
                fid, real = out[:B], out[B:]
            else:
                z = self.denoise(z_L, "fidelity")
                done(1)
                fid = self.decode(z)[..., :H, :W]
                done(2)
                z = self.denoise(z_L, "realism")
                done(3)
                real = self.decode(z)[..., :H, :W]
                done(4)
        return Endpoints(*_finite_endpoints(self._antiring(*tiling.color_fix_all(
            (fid.contiguous(), real.contiguous()), x_up, color_fix, self.mcfg.color_fix_levels)), ADAPTERS))

    def _antiring(self, fid: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fidelity, realism) with ModelConfig.antiring's clamp applied to realism (when on)."""
        if not self.mcfg.antiring:
            return fid, real
        return fid, clamp_halos(real, fid, self.mcfg.antiring, self.mcfg.antiring_edges)

    @torch.no_grad()
    def infer_branch(self, lr, adapter: str = "fidelity", *, tile=None, color_fix: str | None = "config") -> torch.Tensor:
        """One endpoint only (e.g. the single-branch cost baseline). tile, color_fix: as in `infer`.
        The realism endpoint of a model with `ModelConfig.antiring` needs the fidelity one as its
        clamp's reference: both are inferred then (one encode, as `infer`)."""
        from . import tiling

        if adapter == "realism" and self.mcfg.antiring:
            return self.infer(lr, tile=tile, color_fix=color_fix).realism

        color_fix = self.mcfg.color_fix if color_fix == "config" else color_fix
        tiling.check_color_fix(color_fix)
        x_up = self.prepare(lr)
        cfg = tiling.use_tiling(self, x_up, tile)
        if cfg is not None:
            out = tiling.infer_tiled(self, x_up, [adapter], cfg)
            return _finite_endpoints(tiling.color_fix_all(out, x_up, color_fix, self.mcfg.color_fix_levels),
                                     [adapter])[0]
        xp, (H, W) = self._pad(x_up)
        out = self.decode(self.denoise(self.encode(xp), adapter))[..., :H, :W]
        return _finite_endpoints(tiling.color_fix_all((out,), x_up, color_fix, self.mcfg.color_fix_levels),
                                 [adapter])[0]

    def super_resolve(self, lr, gamma=0.5, **blend_kwargs) -> torch.Tensor:
        """Infer both endpoints and blend them at gamma (scalar, per-sample or per-pixel)."""
        return self.infer(lr).blend(gamma, **blend_kwargs)

    # -- persistence ----------------------------------------------------------------
    def save(self, path, *, history: list[dict] | None = None, extra: dict | None = None,
             write_extra=None) -> Path:
        """Write adapters (safetensors), config.json, history.json and ifcsr.json (the backbone record).

        The tiny backbone (`Backbone.is_tiny`) is embedded (backbone/); any other is referenced by
        hub id or absolute folder, with its empty-prompt embedding at the top level
        (empty_prompt.safetensors), so that `load` needs neither a copy nor its text encoder.

        Written to a temporary folder first, then renamed, so an interrupted save never
        leaves a half-written checkpoint in place. write_extra(folder), when given, writes more
        files into that temporary folder (the trainer state), so they arrive together.
        """
        from safetensors.torch import save_file

        def write(tmp: Path) -> None:
            for name in ADAPTERS:
                # role, rank, alpha and placement in the file itself: IFCSR.load refuses swapped
                # files and a config.json edited to another alpha (check_adapter_metadata)
                save_file(adapter_state_dict(self.unet, name), tmp / f"{name}.safetensors",
                          metadata={"adapter": name, **adapter_metadata(self.mcfg)})
            # The tiny backbone (a few MB) travels inside the checkpoint; any other (SD 2.1-base: 5 GB)
            # is referenced by hub id or absolute folder, with the empty-prompt embedding at the top
            # level, so that loading never needs its text encoder (DESIGN 2).
            embed = self.backbone.is_tiny
            if embed:
                save_backbone(self.backbone, tmp / "backbone")
                ref = "backbone"
            else:
                save_file({"prompt_embeds": self.prompt_embeds.cpu().contiguous()}, tmp / PROMPT_FILE)
                ref = str(self.backbone.source)
                if Path(ref).is_dir():  # a local folder: absolute, so the checkpoint loads from any directory
                    ref = str(Path(ref).resolve())
            self.config.save(tmp / "config.json")
            meta = {"backbone": ref,
                    "feature_net": self.config.loss.feature_net, **(extra or {})}
            (tmp / "ifcsr.json").write_text(json.dumps(meta, indent=2))
            (tmp / "history.json").write_text(json.dumps(history if history is not None else self.history))
            if write_extra is not None:
                write_extra(tmp)

        return write_folder(path, write)

    @classmethod
    def load(cls, path=None, *, device="cpu", dtype=torch.float32, backbone=None, verify: bool = True) -> "IFCSR":
        """Load a checkpoint folder (default: the bundled tiny checkpoint), or a bundled one by name
        ("tiny", "realesrgan": `BUNDLED`). A checkpoint on a pretrained generator gives a GeneratorIFCSR.

        verify: check every file against the sha256 recorded in its checksums.json (written by
        `save`); a missing, truncated or changed file is a CheckpointError naming it."""
        if isinstance(path, str) and path in BUNDLED and not Path(path).exists():
            path = BUNDLED[path]  # a bundled checkpoint by name (a folder of that name wins)
        path = Path(path) if path is not None else BUNDLED_CHECKPOINT
        if not path.exists():
            try:
                recover_folder(path)  # a save killed between its two renames
            except OSError:
                pass
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not an ifcsr checkpoint (no config.json); pass the folder that "
                                  "`ifcsr train` wrote (OUT/final) or omit it for the bundled checkpoint")
        if verify:
            verify_manifest(path)
        config = TrainConfig.load(path / "config.json")
        if is_generator(config.model.backbone):  # a pretrained-generator checkpoint (ifcsr.generator)
            return GeneratorIFCSR.load_checkpoint(path, config, device=device, dtype=dtype, backbone=backbone)
        meta = _read_json(path / "ifcsr.json") if (path / "ifcsr.json").is_file() else {}
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path / 'ifcsr.json'}: expected a JSON object (the backbone record), got "
                                  f"{type(meta).__name__}; copy the checkpoint again or retrain")
        if backbone is None:
            # No ifcsr.json (an older or hand-assembled checkpoint): its own embedded backbone when
            # it has one, not the path it was trained from (config.json may hold a relative one,
            # such as ifcsr/assets/tiny/backbone, or a hub id that needs a connection).
            ref = meta.get("backbone", "backbone" if (path / "backbone").is_dir() else config.model.backbone)
            if not isinstance(ref, str) or not ref:
                raise CheckpointError(f"{path / 'ifcsr.json'}: 'backbone' must name a folder or hub id, got "
                                      f"{type(ref).__name__}; copy the checkpoint again or retrain")
            local = path / ref if (path / ref).is_dir() else None
            # Embedded (a folder inside the checkpoint, the tiny backbone): its own prompt file comes with
            # it. Referenced (a folder elsewhere, absolute since `save` writes it so, or a hub id): the
            # checkpoint's top-level prompt, passed in BEFORE loading, so that the backbone's text
            # encoder is never needed for it (SD 2.1 copied without text_encoder/, offline).
            embedded = local is not None and local.resolve().is_relative_to(path.resolve())
            own_prompt = path / PROMPT_FILE if not embedded and (path / PROMPT_FILE).is_file() else None
            backbone = load_backbone(local or ref, revision=config.model.revision, variant=config.model.variant,
                                     dtype=dtype, device=device, prompt_embeds=own_prompt)
        model = cls(backbone, config)
        for name in ADAPTERS:
            f = path / f"{name}.safetensors"
            if not f.is_file():
                raise CheckpointError(f"{path}: adapter file {f.name} is missing; copy the checkpoint again or retrain")
            check_adapter_metadata(f, name, adapter_metadata(config.model))
            load_adapter_state_dict(model.unet, name, _load_safetensors(f), source=f)
        if (path / "history.json").is_file():
            model.history = _read_json(path / "history.json")
            if not isinstance(model.history, list) or not all(isinstance(r, dict) for r in model.history):
                raise CheckpointError(f"{path / 'history.json'}: expected a list of records (one object per step); "
                                      "the checkpoint is corrupt: copy it again or retrain")
        return model.to(device, dtype)

    @classmethod
    def from_backbone(cls, source=TINY, config: TrainConfig | ModelConfig | None = None, *,
                      device="cpu", dtype=torch.float32) -> "IFCSR":
        """Fresh adapters on a backbone (for training). A generator backbone (its name, e.g.
        "realesrgan-x4plus", or a GeneratorBackbone) gives a GeneratorIFCSR."""
        cfg = config if config is not None else TrainConfig()
        if isinstance(cfg, ModelConfig):
            cfg = TrainConfig(model=cfg)
        if isinstance(source, GeneratorBackbone) or is_generator(str(source)):
            return GeneratorIFCSR.from_backbone(source, cfg, device=device, dtype=dtype)
        ref = source.source if isinstance(source, Backbone) else str(source)
        cfg = replace(cfg, model=replace(cfg.model, backbone=ref))
        bb = source if isinstance(source, Backbone) else load_backbone(
            source, revision=cfg.model.revision, variant=cfg.model.variant, dtype=dtype, device=device)
        return cls(bb, cfg).to(device, dtype)
