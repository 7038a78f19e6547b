"""Tiled inference for large images, and the colour fixes OSEDiff offers.
Imports torch and ifcsr.errors only.

Large images go through the same one-step pipeline in tiles, so that peak memory stays
bounded as the image grows:

    x_up --tiled VAE encode--> z_L --tiled UNet (both adapters per tile)--> z_H --tiled VAE decode--> x

- UNet: overlapping latent tiles blended with Gaussian weights, as OSEDiff and PiSA-SR do
  (OSEDiff `osediff.py` / PiSA-SR `pisasr.py`: `_gaussian_weights`, tile 96, overlap 32 on
  SD's latent). Both adapters of a tile run in one UNet pass (per-sample adapter_names, the
  `models._MixedAdapters` trick), so every tile is encoded, denoised and decoded once.
- VAE: the image is cut into core tiles that partition it; each is run with `margin` latent
  pixels of context on every side, which are cropped off. Convolutions are then exact.
  GroupNorm is not: it normalises with statistics over the whole image. Per-tile statistics
  change the tone from tile to tile (seams); so, like TileVAE (multidiffusion-upscaler,
  `tilevae.py`), every GroupNorm of a tiled pass uses ONE set of statistics for the whole
  image (`GroupNormStats`), gathered by one pass over the whole image, resized to fit
  `stats_size` when larger (TileVAE's "fast" estimate). The result is seamless, and equal
  to the untiled VAE (to float rounding) when the image fits. The UNet's GroupNorms get the
  same treatment (on the random tiny backbone: 24 -> 36 dB against untiled at 192x256);
  its self-attention sees its tile only, as in the peers. `groupnorm="tile"` gives the
  peers' per-tile normalisation.
  SD's VAE has attention in its mid-block; per tile it sees only tile + margin, so SD's
  defaults use a generous margin (128 pixels).
- Colour fix (OSEDiff `test_osediff.py --align_method`, from StableSR `color_fix.py`):
  AdaIN matches per-channel mean and std to the LR; the wavelet fix keeps the output's high
  frequencies and takes the low frequencies from the LR.

`IFCSR.infer(lr, tile=None | True | False | TileConfig, color_fix=None | "adain" | "wavelet")`
dispatches here; `tile=None` tiles automatically above `TileConfig.auto_latent`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, InputTypeError

COLOR_FIXES = ("adain", "wavelet")


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes in LATENT pixels (for the tiny x1 VAE a latent pixel is an image pixel;
    for SD's x8 VAE it is 8x8 image pixels). `TileConfig.for_model(model)` picks the defaults."""
    latent_tile: int = 96        # UNet tile side (OSEDiff / PiSA-SR: 96 on SD's 64x64-per-512px latent)
    latent_overlap: int = 32     # overlap of neighbouring UNet tiles (OSEDiff / PiSA-SR: 32)
    vae_tile: int = 64           # VAE core tile side; cores partition the latent / image
    vae_margin: int = 16         # context on each side of a VAE core, cropped off (SD: 16 = 128 px)
    groupnorm: str = "image"     # "image": one set of GroupNorm statistics for the whole image; "tile": per tile (peers)
    stats_size: int = 96         # "image": statistics from the whole image, resized (area) to fit this side (latent px)
    auto_latent: int = 96        # tile=None tiles when the latent has more than auto_latent**2 pixels
    progress: bool | None = None  # tqdm over tiles: None = only on a terminal / notebook

    def __post_init__(self):
        if not 0 <= self.latent_overlap < self.latent_tile:
            raise InputError(f"latent_overlap must be in [0, latent_tile), got {self.latent_overlap} "
                             f"for latent_tile {self.latent_tile}")
        if min(self.latent_tile, self.vae_tile, self.stats_size, self.auto_latent) < 1 or self.vae_margin < 0:
            raise InputError(f"tile sizes must be positive: {self}")
        if self.groupnorm not in ("image", "tile"):
            raise InputError(f"groupnorm must be 'image' or 'tile', got {self.groupnorm!r}")

    @classmethod
    def for_model(cls, model) -> TileConfig:
        """Defaults for a model's backbone: SD-sized (OSEDiff's) or the tiny backbone's.

        The tiny backbone (x1 VAE, attention at 1/4 of the image), measured with 1 thread on
        a shared 2-core CPU: the untiled UNet grows quadratically through its self-attention
        (both adapters ~6 s at 256x256, ~19 s at 384x384, ~55 s at 512x512; peak RSS 1.9 GB
        at 512, 4.9 GB at 1024), while per unit of area tiles of 96 to 256 cost about the
        same. Larger tiles agree better with the untiled result (self-attention sees more):
        41.9 dB for tiles of 192 vs 36.2 dB for 128 on a 296x384 latent, exact whole-image
        GroupNorm statistics, random weights. Hence tiles
        of 192 with overlap 48 (stride 144, 1.8x redundancy), tiling above 384x384. Its VAE
        has only 3x3 convolutions (receptive radius 12 pixels): a 16-pixel margin is exact.
        """
        if model.backbone.is_tiny:
            return cls(latent_tile=192, latent_overlap=48, vae_tile=256, vae_margin=16,
                       stats_size=256, auto_latent=384)
        return cls()

    def check(self, model) -> None:
        m = unet_factor(model)
        if self.latent_tile % m:
            raise InputError(f"latent_tile {self.latent_tile} must be a multiple of the UNet's "
                             f"downsampling factor {m}")


def vae_factor(model) -> int:
    return 2 ** (len(model.vae.config.block_out_channels) - 1)


def unet_factor(model) -> int:
    return 2 ** (len(model.unet.config.block_out_channels) - 1)


def resolve(model, tile) -> TileConfig | None:
    """The TileConfig to use for `tile` (None = auto, True, False or a TileConfig), or None."""
    if tile is None or isinstance(tile, bool):
        return None if tile is False else TileConfig.for_model(model)
    if isinstance(tile, TileConfig):
        return tile
    raise InputTypeError(f"tile must be None (auto), True, False or a TileConfig, got {type(tile).__name__}")


def check_color_fix(color_fix) -> None:
    if color_fix is not None and color_fix not in COLOR_FIXES:
        raise InputError(f"color_fix must be None, 'adain' or 'wavelet', got {color_fix!r}")


def use_tiling(model, x_up: torch.Tensor, tile) -> TileConfig | None:
    """The TileConfig when this (B, 3, H, W) upsampled input is to be tiled, else None."""
    cfg = resolve(model, tile)
    if cfg is None:
        return None
    if tile is None:  # auto: only above the threshold
        f = vae_factor(model)
        h, w = math.ceil(x_up.shape[-2] / f), math.ceil(x_up.shape[-1] / f)
        if h * w <= cfg.auto_latent ** 2:
            return None
    cfg.check(model)
    return cfg


# --------------------------------------------------------------------------- cost estimate

# Above this many HR pixels (4096 x 4096) `ifcsr infer` / `ifcsr demo --image` stop and ask for
# --force-large: at the measured CPU rate below that is already about 25 minutes.
LARGE_HR_PIXELS = 4096 * 4096
# Tiny backbone, both endpoints, tiled, on this project's 2-core CPU: 350 s for a 2048 x 2048
# output (README, Performance; analysis/benchmarks.py part d).
TINY_CPU_SECONDS_PER_HR_PIXEL = 350.0 / 2048**2
# Real-ESRGAN x4plus with two merged heads (ifcsr.generator), both endpoints, one thread on this
# project's 2-core CPU with the other core busy: ~9 s for a 424 x 640 output (analysis/generator_eval.py)
GENERATOR_CPU_SECONDS_PER_HR_PIXEL = 9.0 / (424 * 640)


def estimate_cost(model, lr_hw, *, device=None) -> dict:
    """What inferring both endpoints of an LR image of size lr_hw = (h, w) will take, before it
    starts: HR pixels, memory of the full-resolution buffers, and time where a measured rate exists.

    Memory counts float32 buffers per HR pixel: the upsampled input, the two endpoints and the
    colour fix's working copy (3 channels each), plus z_L and the two z_H at latent resolution.
    It is an upper estimate of what tiling cannot bound (tiling bounds the networks' activations,
    not the full-size images). Time: the tiny backbone's measured CPU rate; no estimate for a GPU
    or the SD backbone (seconds = None)."""
    h, w = (int(v) for v in lr_hw)
    s = model.scale
    hr = h * s * w * s
    dev = torch.device(device) if device is not None else model.device
    if getattr(model, "kind", "diffusion") == "generator":
        # no latents: the upsampled input, the two endpoints and the colour fix's copy (LR tiles
        # bound the network's own activations, ifcsr.generator)
        seconds = hr * GENERATOR_CPU_SECONDS_PER_HR_PIXEL if dev.type == "cpu" else None
        return {"hr_size": (h * s, w * s), "hr_pixels": hr, "memory_bytes": int(hr * 4 * 3 * 4), "seconds": seconds}
    f = vae_factor(model)
    c = int(model.vae.config.latent_channels)
    floats = 4 * 3 + 3 * c / f**2
    seconds = hr * TINY_CPU_SECONDS_PER_HR_PIXEL if (model.backbone.is_tiny and dev.type == "cpu") else None
    return {"hr_size": (h * s, w * s), "hr_pixels": hr, "memory_bytes": int(hr * floats * 4), "seconds": seconds}


def describe_cost(cost: dict) -> str:
    H, W = cost["hr_size"]
    t = cost["seconds"]
    when = (f"about {t / 3600:.1f} h" if t >= 3600 else f"about {t / 60:.0f} min") if t is not None else \
        "time not estimated (no measured rate for this backbone/device)"
    return (f"output {W}x{H} ({cost['hr_pixels'] / 1e6:.0f} MP): about {cost['memory_bytes'] / 2**30:.1f} GiB of "
            f"full-resolution buffers, {when}")


def check_large(model, lr_hw, *, force: bool = False, what: str = "image", device=None) -> dict:
    """Refuse (InputError) an input whose output exceeds LARGE_HR_PIXELS unless force=True; the
    message gives the estimate. Returns the estimate."""
    cost = estimate_cost(model, lr_hw, device=device)
    if cost["hr_pixels"] > LARGE_HR_PIXELS and not force:
        raise InputError(f"{what}: very large input: {describe_cost(cost)}. Pass --force-large to proceed "
                         "(or downscale / crop the image first)")
    return cost


# --------------------------------------------------------------------------- grid and weights


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side `tile` covering [0, length), neighbours sharing at least
    `overlap`; the last tile is flush with the end (as OSEDiff's grid). One tile if length <= tile."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


def core_spans(length: int, core: int) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) spans of at most `core` that partition [0, length)."""
    return [(s, min(s + core, length)) for s in range(0, length, core)]


def gaussian_weights(height: int, width: int, *, var: float = 0.01, device=None) -> torch.Tensor:
    """(1, 1, height, width) blending weights of a tile, as OSEDiff's `_gaussian_weights`
    (var 0.01 of the normalised tile coordinate; the centre weighs ~3e5 times the edge)."""
    def probs(n):
        x = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2
        return torch.exp(-((x - mid) ** 2) / (n * n) / (2 * var)) / math.sqrt(2 * math.pi * var)

    w = torch.outer(probs(height), probs(width)).to(torch.float32)
    return w.view(1, 1, height, width).to(device)


def _tqdm(total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress, leave=False)


# --------------------------------------------------------------------------- GroupNorm statistics


class GroupNormStats:
    """Context manager: every nn.GroupNorm inside `module` is normalised with ONE set of
    per-(sample, group) statistics for the whole image, so that all tiles are treated alike.

    mode "accumulate": normalise each input with its own statistics (plain GroupNorm) and add
    them to running sums; `freeze()` turns the sums into the estimate and switches to mode
    "apply", which normalises every later input with it. One pass over the whole image gives
    exactly the untiled statistics.

    (Pooling the statistics of a spread of tiles instead was measured worse on the random
    tiny backbone, 25 vs 28 dB against untiled at 296x384: each tile's upstream layers are
    normalised by their own statistics, so the pooled deep-layer statistics are off.)
    """

    def __init__(self, module: nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)]
        self.sums: dict[int, list[torch.Tensor]] = {}
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = "accumulate"

    def freeze(self) -> GroupNormStats:
        for key, (n, s1, s2) in self.sums.items():
            mean = s1 / n
            self.stats[key] = (mean.float(), (s2 / n - mean * mean).clamp_min(0).float())
        self.mode = "apply"
        return self

    def _forward(self, gn: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[:2]
        xg = x.reshape(N, gn.num_groups, -1)
        if self.mode == "accumulate":
            var, mean = torch.var_mean(xg.float(), dim=-1, unbiased=False)
            n = xg.shape[-1]
            m64 = mean.double()
            acc = self.sums.setdefault(id(gn), [0, 0.0, 0.0])
            acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + n * m64, acc[2] + n * (var.double() + m64 * m64)
        else:
            mean, var = self.stats[id(gn)]
            if mean.shape[0] != N:
                raise RuntimeError(f"GroupNorm statistics were gathered for a batch of {mean.shape[0]}, "
                                   f"applied to {N}")
        y = (xg.float() - mean[..., None]) * torch.rsqrt(var[..., None] + gn.eps)
        y = y.reshape(x.shape).to(x.dtype)
        if gn.affine:
            shape = (1, C) + (1,) * (x.ndim - 2)
            y = y * gn.weight.view(shape) + gn.bias.view(shape)
        return y

    def __enter__(self):
        for gn in self.norms:
            gn.forward = (lambda x, gn=gn: self._forward(gn, x))  # instance attribute shadows the method
        return self

    def __exit__(self, *exc):
        for gn in self.norms:
            gn.__dict__.pop("forward", None)


def _fit(x: torch.Tensor, size: int) -> torch.Tensor:
    """x resized (area) so that its longer side is at most `size`; x itself when it fits."""
    h, w = x.shape[-2:]
    if max(h, w) <= size:
        return x
    s = size / max(h, w)
    return F.interpolate(x.float(), size=(max(1, round(h * s)), max(1, round(w * s))), mode="area").to(x.dtype)


# --------------------------------------------------------------------------- tiled passes


def _vae_tiles(h: int, w: int, cfg: TileConfig):
    """(core, input) boxes (y0, y1, x0, x1) in latent pixels of the tiled VAE passes."""
    m = cfg.vae_margin
    for y0, y1 in core_spans(h, cfg.vae_tile):
        for x0, x1 in core_spans(w, cfg.vae_tile):
            yield (y0, y1, x0, x1), (max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m))


def _tiled_vae(fn, vae: nn.Module, x: torch.Tensor, channels: int, *, scale_in: int, scale_out: int,
               cfg: TileConfig, desc: str) -> torch.Tensor:
    """Run `fn` (a VAE encode or decode) over core tiles with margins, all tiles normalised
    with the same GroupNorm statistics. Boxes are in latent pixels; x has scale_in and the
    output scale_out image pixels per latent pixel (encode: f -> 1, decode: 1 -> f)."""
    h, w = x.shape[-2] // scale_in, x.shape[-1] // scale_in
    tiles = list(_vae_tiles(h, w, cfg))
    a, s = scale_in, scale_out
    shared = len(tiles) > 1 and cfg.groupnorm == "image"
    with GroupNormStats(vae if shared else nn.Identity()) as gn:  # else plain GroupNorm, per tile
        if shared:
            fn(_fit(x, cfg.stats_size * a))  # the whole image (resized to fit): one forward pass
        gn.freeze()
        out = None
        with _tqdm(len(tiles), desc, cfg.progress) as bar:
            for (y0, y1, x0, x1), (r0, r1, c0, c1) in tiles:
                t = fn(x[..., r0 * a:r1 * a, c0 * a:c1 * a])
                if out is None:
                    out = torch.empty((t.shape[0], channels, h * s, w * s), dtype=t.dtype, device=t.device)
                out[..., y0 * s:y1 * s, x0 * s:x1 * s] = t[..., (y0 - r0) * s:(y1 - r0) * s, (x0 - c0) * s:(x1 - c0) * s]
                del t
                bar.update()
    return out


@torch.no_grad()
def tiled_encode(model, xp: torch.Tensor, cfg: TileConfig) -> torch.Tensor:
    """model.encode over tiles: (B, 3, H, W) in [0, 1], H and W multiples of the VAE factor -> z_L."""
    f = vae_factor(model)
    return _tiled_vae(model.encode, model.vae, xp, model.vae.config.latent_channels, scale_in=f, scale_out=1,
                      cfg=cfg, desc="tiled VAE encode")


@torch.no_grad()
def tiled_decode(model, z_H: torch.Tensor, cfg: TileConfig) -> torch.Tensor:
    """model.decode over tiles: z_H (N, C, h, w) -> (N, 3, h*f, w*f) in [0, 1]."""
    return _tiled_vae(lambda t: model.decode(t.to(model.dtype)), model.vae, z_H, 3, scale_in=1,
                      scale_out=vae_factor(model), cfg=cfg, desc="tiled VAE decode")


@torch.no_grad()
def tiled_denoise(model, z_L: torch.Tensor, adapters, cfg: TileConfig, *, batched: bool = True) -> torch.Tensor:
    """The UNet step over overlapping latent tiles, blended with Gaussian weights (OSEDiff).

    z_L (B, C, h, w) -> z_H (len(adapters) * B, C, h, w), adapter-major like `IFCSR.infer`'s
    batch. With batched=True every tile runs all adapters in one UNet pass. GroupNorm uses
    whole-image statistics (see GroupNormStats); self-attention sees its tile only, as in
    OSEDiff and PiSA-SR.
    """
    B, C, h, w = z_L.shape
    adapters = list(adapters)
    th, tw = min(cfg.latent_tile, h), min(cfg.latent_tile, w)
    ys, xs = tile_starts(h, th, cfg.latent_overlap), tile_starts(w, tw, cfg.latent_overlap)
    boxes = [(y, x) for y in ys for x in xs]
    # One UNet call per group of adapters: all of them (batched) or one at a time.
    groups = [adapters] if batched else [[a] for a in adapters]
    calls = []
    for group in groups:
        names = [a for a in group for _ in range(B)]
        arg = names if len(group) > 1 else group[0]

        def run(z, arg=arg, k=len(group)):
            return model.denoise(torch.cat([z] * k) if k > 1 else z, arg)

        shared = len(boxes) > 1 and cfg.groupnorm == "image"
        gn = GroupNormStats(model.unet if shared else nn.Identity())  # else plain GroupNorm, per tile
        if shared:
            with gn:
                run(_fit(z_L, cfg.stats_size))
        calls.append((run, gn.freeze()))
    wy, wx = gaussian_weights(th, 1, device=z_L.device), gaussian_weights(1, tw, device=z_L.device)
    weight = wy * wx
    z_H = torch.zeros((len(adapters) * B, C, h, w), dtype=torch.float32, device=z_L.device)
    # The weights are separable and the tiles a grid, so their sum is too: two vectors, not a map.
    total_y = torch.zeros((1, 1, h, 1), dtype=torch.float32, device=z_L.device)
    total_x = torch.zeros((1, 1, 1, w), dtype=torch.float32, device=z_L.device)
    for y in ys:
        total_y[..., y:y + th, :] += wy
    for x in xs:
        total_x[..., x:x + tw] += wx
    with _tqdm(len(boxes), "tiled UNet", cfg.progress) as bar:
        for y, x in boxes:
            z = z_L[..., y:y + th, x:x + tw]
            outs = []
            for run, gn in calls:
                with gn:
                    outs.append(run(z))
            z_H[..., y:y + th, x:x + tw].add_(torch.cat(outs).float() * weight)
            bar.update()
    return z_H.div_(total_y).div_(total_x)


@torch.no_grad()
def infer_tiled(model, x_up: torch.Tensor, adapters, cfg: TileConfig, *, batched: bool = True):
    """Endpoints for each adapter from an upsampled LR batch, all three stages tiled.

    Returns a tuple of (B, 3, H, W) images in [0, 1], one per adapter. Only the full-size
    input, latents and outputs are held; the working memory of a tile does not grow with
    the image.
    """
    xp, (H, W) = model._pad(x_up)
    B = xp.shape[0]
    z_L = tiled_encode(model, xp, cfg)
    del xp
    z_H = tiled_denoise(model, z_L, adapters, cfg, batched=batched)
    del z_L
    out = tiled_decode(model, z_H, cfg)
    del z_H
    return tuple(out[i * B:(i + 1) * B, :, :H, :W].contiguous() for i in range(len(adapters)))


# --------------------------------------------------------------------------- colour fix


def _source_like(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    if target.ndim != 4 or source.ndim != 4 or target.shape[:2] != source.shape[:2]:
        raise InputError(f"colour fix needs (B, C, H, W) target and source with the same B and C, "
                         f"got {tuple(target.shape)} and {tuple(source.shape)}")
    source = source.to(target.device, torch.float32)
    if source.shape[-2:] != target.shape[-2:]:
        source = F.interpolate(source, size=target.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    return source


def adain_color_fix(target: torch.Tensor, source: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-image, per-channel mean and std of `target` set to those of `source` (the LR; it is
    bicubic-resized to the target size first). StableSR / OSEDiff `adain_color_fix`."""
    source = _source_like(target, source)
    out = torch.empty_like(target, dtype=torch.float32)
    for i in range(target.shape[0]):  # one image at a time: temporaries stay one image large
        t, s = target[i:i + 1].float(), source[i:i + 1]
        t_var, t_mean = torch.var_mean(t.flatten(2), dim=-1)
        s_var, s_mean = torch.var_mean(s.flatten(2), dim=-1)
        scale = ((s_var + eps) / (t_var + eps)).sqrt()
        out[i:i + 1] = ((t - t_mean[..., None, None]) * scale[..., None, None] + s_mean[..., None, None])
    return out.clamp_(0, 1)


def _wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 16
    k = k.expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), k, groups=x.shape[1], dilation=radius)


def _wavelet_low(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """The low-frequency residual of a 5-level a-trous wavelet decomposition (StableSR)."""
    for i in range(levels):
        x = _wavelet_blur(x, 2 ** i)
    return x


def wavelet_color_fix(target: torch.Tensor, source: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of `target` plus low frequencies of `source` (the LR, bicubic-resized to
    the target size). StableSR / OSEDiff `wavelet_color_fix`: target - low(target) + low(source)."""
    source = _source_like(target, source)
    out = torch.empty_like(target, dtype=torch.float32)
    for i in range(target.shape[0]):
        t = target[i:i + 1].float()
        out[i:i + 1] = t - _wavelet_low(t, levels) + _wavelet_low(source[i:i + 1], levels)
    return out.clamp_(0, 1)


def color_fix(target: torch.Tensor, source: torch.Tensor, method: str, levels: int = 5) -> torch.Tensor:
    """Apply the colour fix `method` ("adain" or "wavelet") of `target` against `source`.
    levels: the wavelet fix's decomposition depth (5 in StableSR / OSEDiff). The LR supplies
    the band of periods longer than about 2^levels pixels: fewer levels take more from the LR."""
    check_color_fix(method)
    if method == "adain":
        return adain_color_fix(target, source)
    return wavelet_color_fix(target, source, levels=levels)


def color_fix_all(images, source: torch.Tensor, method: str | None, levels: int = 5) -> tuple:
    """`color_fix` of each image against `source`; the images unchanged when method is None."""
    return tuple(images) if method is None else tuple(color_fix(x, source, method, levels) for x in images)
