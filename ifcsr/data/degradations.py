"""Real-ESRGAN-style degradations: blur kernels, resize, noise, JPEG, and the bicubic and
second-order pipelines. Imports numpy, torch, PIL, ifcsr.errors and ifcsr.data.images.

Image tensors are float in [0, 1], (3, H, W) per sample or (B, 3, H, W) per batch
(DESIGN.md section 5). Degradations turn an HR tensor into its LR counterpart of size
(H // scale, W // scale); they are seeded, so the same seed gives a bitwise identical LR.

The Real-ESRGAN second-order pipeline (Wang et al., "Real-ESRGAN", ICCVW 2021) is written
here in numpy/torch rather than imported from basicsr, which is unmaintained and breaks
on current torchvision. Its defaults are OSEDiff's `dataloaders/params_realesrgan.yml`,
which PiSA-SR and IFCSR train with too.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from ifcsr.data.images import ImageError, to_tensor, to_uint8
from ifcsr.errors import InputError, InputTypeError

# --------------------------------------------------------------------------------------
# Seeds and tensor plumbing
# --------------------------------------------------------------------------------------


def _as_rng(seed) -> np.random.Generator:
    """None (fresh entropy), an int, or a Generator (used as is, so callers can chain)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise InputTypeError(f"seed must be None, an int or a numpy.random.Generator, got {type(seed).__name__}")


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    # Noise is drawn on the CPU from a generator seeded by the numpy stream, so the
    # result is the same on every device and for every call with the same seed.
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


def _as_batch(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """(3, H, W) or (B, 3, H, W) float -> (B, 3, H, W), and whether to squeeze back.

    Intermediate images may overshoot [0, 1] (bicubic ringing), so only shape, dtype and
    finiteness are checked here; the degradation classes check the range of their input.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ImageError(f"{name}: expected a float torch.Tensor, got {type(x).__name__}")
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ImageError(f"{name}: expected shape (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ImageError(f"{name}: contains NaN or infinite values")
    return x, single


def _back(x: torch.Tensor, single: bool) -> torch.Tensor:
    return x[0] if single else x


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 uint8 levels (last line of Real-ESRGAN's feed_data)."""
    return torch.clamp((x * 255.0).round(), 0, 255) / 255.0


# --------------------------------------------------------------------------------------
# Blur kernels (Real-ESRGAN paper, section 3.2; basicsr/data/degradations.py formulas)
# --------------------------------------------------------------------------------------

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_SIZES = tuple(range(7, 22, 2))  # odd sizes 7..21 (Real-ESRGAN `kernel_range`)
KERNEL_PAD = 21  # every kernel is zero-padded to 21x21 so a batch can share one shape


def blur_kernel(kind: str, size: int, *, sigma_x: float, sigma_y: float | None = None,
                theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """A normalised (size, size) blur kernel.

    kind: "gaussian"  exp(-0.5 q), "generalized" exp(-0.5 q^beta), "plateau" 1/(1 + q^beta),
    with q = x^T Sigma^-1 x and Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T
    (Real-ESRGAN eqs. 2-4). sigma_y=None means isotropic.
    """
    if size % 2 != 1 or size < 1:
        raise InputError(f"kernel size must be odd and positive, got {size}")
    if sigma_x <= 0 or (sigma_y is not None and sigma_y <= 0):
        raise InputError(f"sigmas must be positive, got sigma_x={sigma_x}, sigma_y={sigma_y}")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)  # (size, size, 2), (x, y) offsets from the centre
    q = np.einsum("...i,ij,...j->...", grid, np.linalg.inv(cov), grid)
    if kind == "gaussian":
        kernel = np.exp(-0.5 * q)
    elif kind == "generalized":
        kernel = np.exp(-0.5 * np.power(q, beta))
    elif kind == "plateau":
        kernel = 1.0 / (np.power(q, beta) + 1.0)
    else:
        raise InputError(f"unknown kernel kind {kind!r}; valid: 'gaussian', 'generalized', 'plateau'")
    return (kernel / kernel.sum()).astype(np.float32)


def sinc_kernel(cutoff: float, size: int, *, pad_to: int = 0) -> np.ndarray:
    """Circular low-pass (2-D sinc) kernel with cut-off frequency ``cutoff`` (radians).

    k(r) = cutoff * J1(cutoff * r) / (2 pi r), the ideal disc filter (Real-ESRGAN eq. 5);
    it causes the ringing and overshoot artefacts of real images. Normalised to sum 1.
    """
    from scipy.special import j1

    if size % 2 != 1 or size < 1:
        raise InputError(f"kernel size must be odd and positive, got {size}")
    if not 0 < cutoff <= math.pi:
        raise InputError(f"cutoff must be in (0, pi], got {cutoff}")
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    r = np.hypot(*np.meshgrid(ax, ax))
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    kernel[(size - 1) // 2, (size - 1) // 2] = cutoff**2 / (4 * np.pi)  # limit r -> 0
    kernel /= kernel.sum()
    if pad_to > size:
        pad = (pad_to - size) // 2
        kernel = np.pad(kernel, pad)
    return kernel.astype(np.float32)


def random_kernel(seed=None, *, kernel_list: Sequence[str] = KERNEL_KINDS,
                  kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
                  sigma_range: tuple[float, float] = (0.2, 3.0),
                  betag_range: tuple[float, float] = (0.5, 4.0),
                  betap_range: tuple[float, float] = (1.0, 2.0),
                  sinc_prob: float = 0.1, pad_to: int = KERNEL_PAD) -> np.ndarray:
    """Draw one blur kernel as Real-ESRGAN's dataset does, zero-padded to (pad_to, pad_to).

    Size uniform over odd 7..21; with probability sinc_prob a sinc kernel, otherwise a kind
    from kernel_list with kernel_prob (defaults: OSEDiff params_realesrgan.yml, first round).
    """
    rng = _as_rng(seed)
    size = int(rng.choice(KERNEL_SIZES))
    if rng.uniform() < sinc_prob:
        # Cut-off range from Real-ESRGAN: small kernels cannot represent very low cut-offs.
        omega = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return sinc_kernel(omega, size, pad_to=pad_to)
    kind = kernel_list[int(rng.choice(len(kernel_list), p=np.asarray(kernel_prob) / np.sum(kernel_prob)))]
    if kind not in KERNEL_KINDS:
        raise InputError(f"unknown kernel kind {kind!r}; valid: {', '.join(KERNEL_KINDS)}")
    sigma_x = rng.uniform(*sigma_range)
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = None, 0.0
    else:
        sigma_y, theta = rng.uniform(*sigma_range), rng.uniform(-math.pi, math.pi)
    beta = 1.0
    if kind.startswith(("generalized", "plateau")):
        lo, hi = betag_range if kind.startswith("generalized") else betap_range
        # As basicsr: beta below or above 1 with equal odds, so shapes sharper and flatter
        # than a Gaussian are equally likely (with betap_range (1, 2), half are beta = 1).
        beta = rng.uniform(lo, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, hi)
    shape = "gaussian" if kind in ("iso", "aniso") else kind.split("_")[0]
    kernel = blur_kernel(shape, size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)
    pad = max(0, (pad_to - size) // 2)
    return np.pad(kernel, pad)


# --------------------------------------------------------------------------------------
# Degradation steps: each takes (3, H, W) or (B, 3, H, W) and returns the same rank
# --------------------------------------------------------------------------------------

RESIZE_MODES = ("area", "bilinear", "bicubic")  # Real-ESRGAN picks one uniformly


def apply_blur(x: torch.Tensor, kernel) -> torch.Tensor:
    """Convolve every channel with ``kernel`` ((k, k), or (B, k, k) one per sample).

    Reflect padding as basicsr's filter2D; images smaller than the kernel's half-width
    (tiny test crops) fall back to replicate padding, which reflect cannot do.
    """
    x, single = _as_batch(x, "apply_blur")
    k = torch.as_tensor(np.asarray(kernel) if not isinstance(kernel, torch.Tensor) else kernel)
    k = k.to(device=x.device, dtype=x.dtype)
    if k.ndim == 2:
        k = k.expand(x.shape[0], *k.shape)
    if k.ndim != 3 or k.shape[0] != x.shape[0] or k.shape[1] != k.shape[2] or k.shape[1] % 2 != 1:
        raise InputError(
            f"kernel must be (k, k) or (B, k, k) with odd k and B={x.shape[0]}, got {tuple(k.shape)}"
        )
    b, c, h, w = x.shape
    pad = k.shape[-1] // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    # One grouped convolution for the whole batch: sample i's channels use kernel i.
    weight = k.repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, b * c, *xp.shape[-2:]), weight, groups=b * c)
    return _back(out.reshape(b, c, h, w), single)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize to ``size`` = (h, w) without antialiasing, as Real-ESRGAN does (its aliasing
    is part of the degradation)."""
    x, single = _as_batch(x, "resize")
    if mode not in RESIZE_MODES:
        raise InputError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    size = (max(1, int(size[0])), max(1, int(size[1])))
    extra = {} if mode == "area" else {"align_corners": False}
    return _back(F.interpolate(x, size=size, mode=mode, **extra), single)


def random_resize(x: torch.Tensor, seed=None, *, resize_prob: Sequence[float] = (0.2, 0.7, 0.1),
                  resize_range: tuple[float, float] = (0.15, 1.5),
                  base_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize by a random factor: up/down/keep with ``resize_prob``, factor from
    ``resize_range`` (up: [1, hi], down: [lo, 1]) and a random mode among area/bilinear/bicubic.

    The factor applies to the current size, or to ``base_size`` (Real-ESRGAN's second
    round resizes relative to the final LR size).
    """
    rng = _as_rng(seed)
    x, single = _as_batch(x, "random_resize")
    kind = int(rng.choice(3, p=np.asarray(resize_prob) / np.sum(resize_prob)))
    if kind == 0:  # up
        factor = rng.uniform(1.0, resize_range[1])
    elif kind == 1:  # down
        factor = rng.uniform(resize_range[0], 1.0)
    else:  # keep
        factor = 1.0
    mode = RESIZE_MODES[int(rng.integers(3))]
    h, w = base_size if base_size is not None else x.shape[-2:]
    return _back(resize(x, (int(h * factor), int(w * factor)), mode), single)


def add_gaussian_noise(x: torch.Tensor, seed=None, *, sigma_range: tuple[float, float] = (1.0, 30.0),
                       gray_prob: float = 0.4) -> torch.Tensor:
    """Add Gaussian noise with sigma ~ U(sigma_range) on the 0-255 scale, per sample;
    with probability gray_prob the noise is the same in all channels. Clamps to [0, 1]."""
    rng = _as_rng(seed)
    x, single = _as_batch(x, "add_gaussian_noise")
    b, _, h, w = x.shape
    sigma = torch.as_tensor(rng.uniform(*sigma_range, size=b) / 255.0, dtype=x.dtype).view(b, 1, 1, 1)
    gray = torch.as_tensor(rng.uniform(size=b) < gray_prob, dtype=x.dtype).view(b, 1, 1, 1)
    gen = _torch_generator(rng)
    color = torch.randn(b, 3, h, w, generator=gen, dtype=x.dtype)
    mono = torch.randn(b, 1, h, w, generator=gen, dtype=x.dtype)
    noise = (color * (1 - gray) + mono * gray) * sigma
    return _back(torch.clamp(x + noise.to(x.device), 0, 1), single)


def add_poisson_noise(x: torch.Tensor, seed=None, *, scale_range: tuple[float, float] = (0.05, 3.0),
                      gray_prob: float = 0.4) -> torch.Tensor:
    """Add Poisson (shot) noise, scaled by ~U(scale_range), per sample; with probability
    gray_prob it is computed on the luma and shared by all channels. Clamps to [0, 1].

    As basicsr's generate_poisson_noise_pt: the photon count is 2^ceil(log2(number of
    distinct grey levels)), so the noise level adapts to the image's dynamic range.
    """
    rng = _as_rng(seed)
    x, single = _as_batch(x, "add_poisson_noise")
    b = x.shape[0]
    scale = rng.uniform(*scale_range, size=b)
    gray = rng.uniform(size=b) < gray_prob
    gen = _torch_generator(rng)
    out = []
    for i in range(b):
        img = x[i : i + 1].detach().cpu()
        if gray[i]:
            img = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])  # ITU-R 601 luma
        img = torch.clamp((img * 255.0).round(), 0, 255) / 255.0
        vals = 2.0 ** math.ceil(math.log2(max(2, len(torch.unique(img)))))
        noise = torch.poisson(img * vals, generator=gen) / vals - img
        out.append(noise.expand(1, 3, *img.shape[-2:]) * float(scale[i]))
    noise = torch.cat(out).to(device=x.device, dtype=x.dtype)
    return _back(torch.clamp(x + noise, 0, 1), single)


def jpeg_compress(x: torch.Tensor, quality) -> torch.Tensor:
    """JPEG encode/decode at ``quality`` (int 1..100, or one per sample) with PIL.

    Clamped first, as Real-ESRGAN does before its JPEG step. PIL's default 4:2:0 chroma
    subsampling matches OpenCV and basicsr's DiffJPEG.
    """
    from PIL import Image

    x, single = _as_batch(x, "jpeg_compress")
    qualities = np.broadcast_to(np.asarray(quality), (x.shape[0],))
    out = []
    for img, q in zip(x, qualities):
        q = round(float(q))
        if not 1 <= q <= 100:
            raise InputError(f"JPEG quality must be in [1, 100], got {q}")
        buf = io.BytesIO()
        Image.fromarray(to_uint8(img.clamp(0, 1))).save(buf, format="JPEG", quality=q)
        with Image.open(buf) as im:
            out.append(to_tensor(np.array(im.convert("RGB")))[0])
    return _back(torch.stack(out).to(device=x.device, dtype=x.dtype), single)


# --------------------------------------------------------------------------------------
# Degradation pipelines
# --------------------------------------------------------------------------------------


def _check_hr(hr, scale: int) -> tuple[torch.Tensor, bool]:
    single = not (isinstance(hr, torch.Tensor) and hr.ndim == 4)  # numpy/PIL are one image
    x = to_tensor(hr, name="hr")
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise ImageError(f"hr: {h}x{w} is smaller than the scale factor {scale}")
    return x.float(), single


@dataclass(frozen=True)
class BicubicDegradation:
    """Bicubic x``scale`` downsampling with antialiasing, then uint8 quantisation.

    torch's antialiased bicubic (``antialias=True``) matches PIL's BICUBIC resize within
    one grey level: it low-passes before subsampling, as MATLAB's imresize does, rather
    than aliasing like plain 4-tap bicubic sampling. ``seed`` is accepted and ignored.
    """

    scale: int = 4

    def __call__(self, hr, *, seed=None) -> torch.Tensor:
        x, single = _check_hr(hr, self.scale)
        h, w = x.shape[-2:]
        lr = F.interpolate(x, size=(h // self.scale, w // self.scale), mode="bicubic",
                           align_corners=False, antialias=True)
        return _back(quantize(lr), single)


@dataclass(frozen=True)
class DegradationParams:
    """Real-ESRGAN second-order degradation settings.

    Defaults: OSEDiff `dataloaders/params_realesrgan.yml` (= Real-ESRGAN's
    `train_realesrnet_x4plus.yml`), which PiSA-SR reuses. Noise sigmas are on the 0-255 scale.
    """

    # first round: blur -> resize -> noise -> JPEG
    kernel_list: tuple[str, ...] = KERNEL_KINDS
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1  # chance the blur is a sinc (ringing) kernel
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # second round: (blur) -> resize -> noise -> [resize back + sinc, JPEG] in random order
    second_blur_prob: float = 0.8
    kernel_list2: tuple[str, ...] = KERNEL_KINDS
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)  # up, down, keep
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # final stage
    final_sinc_prob: float = 0.8  # else an identity (pulse) kernel

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("kernel_list"):
                bad = [k for k in v if k not in KERNEL_KINDS]
                if bad:
                    raise InputError(f"{f.name}: unknown kernel kinds {bad}; valid: {', '.join(KERNEL_KINDS)}")
            elif f.name.endswith("_prob") or f.name.endswith("_prob2"):
                if isinstance(v, tuple):
                    if any(p < 0 for p in v) or not math.isclose(sum(v), 1.0, abs_tol=1e-6):
                        raise InputError(f"{f.name}: probabilities must be >= 0 and sum to 1, got {v}")
                elif not 0 <= v <= 1:
                    raise InputError(f"{f.name}: probability must be in [0, 1], got {v}")
            elif isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
                raise InputError(f"{f.name}: expected a (low, high) range with low <= high, got {v}")
        for a, b in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            if len(getattr(self, a)) != len(getattr(self, b)):
                raise InputError(f"{a} and {b} must have the same length")


class RealESRGANDegradation:
    """Real-ESRGAN's second-order degradation (Wang et al. 2021), as OSEDiff/PiSA-SR train.

    ``RealESRGANDegradation(4, noise_range=(1, 10))`` overrides single fields of
    DegradationParams; ``params=`` passes a whole one. Each sample of a batch gets its own
    independent draw. No unsharp-masking of the HR: OSEDiff leaves it commented out.
    """

    def __init__(self, scale: int = 4, params: DegradationParams | None = None, **overrides):
        if int(scale) != scale or scale < 1:
            raise InputError(f"scale must be a positive integer, got {scale}")
        names = {f.name for f in fields(DegradationParams)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputTypeError(f"unknown degradation parameters {unknown}; valid: {', '.join(sorted(names))}")
        self.scale = int(scale)
        self.params = replace(params or DegradationParams(), **overrides)

    def __repr__(self) -> str:
        return f"RealESRGANDegradation(scale={self.scale}, params={self.params})"

    def __call__(self, hr, *, seed=None) -> torch.Tensor:
        x, single = _check_hr(hr, self.scale)
        rng = _as_rng(seed)
        children = [np.random.default_rng(s) for s in rng.integers(0, 2**62, size=x.shape[0])]
        lr = torch.cat([self._one(x[i : i + 1], r) for i, r in enumerate(children)])
        return _back(lr, single)

    def _one(self, hr: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        p = self.params
        h, w = hr.shape[-2:]
        final = (h // self.scale, w // self.scale)
        # Kernels are drawn first, as Real-ESRGAN's dataset does before the model degrades.
        kernel1 = random_kernel(rng, kernel_list=p.kernel_list, kernel_prob=p.kernel_prob,
                                sigma_range=p.blur_sigma, betag_range=p.betag_range,
                                betap_range=p.betap_range, sinc_prob=p.sinc_prob)
        kernel2 = random_kernel(rng, kernel_list=p.kernel_list2, kernel_prob=p.kernel_prob2,
                                sigma_range=p.blur_sigma2, betag_range=p.betag_range2,
                                betap_range=p.betap_range2, sinc_prob=p.sinc_prob2)
        if rng.uniform() < p.final_sinc_prob:
            size = int(rng.choice(KERNEL_SIZES))
            final_kernel = sinc_kernel(rng.uniform(math.pi / 3, math.pi), size, pad_to=KERNEL_PAD)
        else:
            final_kernel = np.zeros((KERNEL_PAD, KERNEL_PAD), np.float32)
            final_kernel[KERNEL_PAD // 2, KERNEL_PAD // 2] = 1.0  # pulse: no blur

        # ---- first round ----
        out = apply_blur(hr, kernel1)
        out = random_resize(out, rng, resize_prob=p.resize_prob, resize_range=p.resize_range)
        out = self._noise(out, rng, p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range,
                          p.gray_noise_prob)
        out = jpeg_compress(out, rng.uniform(*p.jpeg_range))
        # ---- second round ----
        if rng.uniform() < p.second_blur_prob:
            out = apply_blur(out, kernel2)
        out = random_resize(out, rng, resize_prob=p.resize_prob2, resize_range=p.resize_range2,
                            base_size=(h / self.scale, w / self.scale))
        out = self._noise(out, rng, p.gaussian_noise_prob2, p.noise_range2, p.poisson_scale_range2,
                          p.gray_noise_prob2)
        # ---- final: [resize back + sinc] and JPEG in random order ----
        # Real-ESRGAN: other orders (sinc + JPEG + resize) give twisted lines.
        if rng.uniform() < 0.5:
            out = apply_blur(resize(out, final, RESIZE_MODES[int(rng.integers(3))]), final_kernel)
            out = jpeg_compress(out, rng.uniform(*p.jpeg_range2))
        else:
            out = jpeg_compress(out, rng.uniform(*p.jpeg_range2))
            out = apply_blur(resize(out, final, RESIZE_MODES[int(rng.integers(3))]), final_kernel)
        return quantize(out)

    @staticmethod
    def _noise(x, rng, gaussian_prob, sigma_range, poisson_range, gray_prob):
        if rng.uniform() < gaussian_prob:
            return add_gaussian_noise(x, rng, sigma_range=sigma_range, gray_prob=gray_prob)
        return add_poisson_noise(x, rng, scale_range=poisson_range, gray_prob=gray_prob)
