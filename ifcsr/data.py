"""Sample images, folder datasets and Real-ESRGAN-style degradations.

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
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import InputError, InputTypeError, MissingFileError, UnknownNameError
from .images import ImageError, load_image, to_tensor, to_uint8

# --------------------------------------------------------------------------------------
# Sample photos that ship inside scikit-image (offline; DESIGN.md section 3)
# --------------------------------------------------------------------------------------

# Natural RGB photos only: grey (camera, moon...), synthetic (color, logo) and
# medical/microscopy (retina, ihc) images are left out on purpose. Fixed order.
SAMPLE_NAMES = ("astronaut", "rocket", "hubble_deep_field", "motorcycle", "chelsea", "coffee")
HELD_OUT = ("chelsea", "coffee")  # evaluation photos (DESIGN.md section 6)
TRAIN_NAMES = tuple(n for n in SAMPLE_NAMES if n not in HELD_OUT)


@cache
def _read_sample(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]  # left view of the stereo pair
    else:
        image = getattr(skimage.data, name)()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.flags.writeable = False  # the cache is shared; callers get copies
    return image


def load_sample(name: str) -> np.ndarray:
    """One bundled photo as an HxWx3 uint8 array (a fresh copy)."""
    if name not in SAMPLE_NAMES:
        raise UnknownNameError(f"unknown sample image {name!r}; valid names: {', '.join(SAMPLE_NAMES)}")
    return _read_sample(name).copy()


def sample_images() -> dict[str, np.ndarray]:
    """All bundled photos, name -> HxWx3 uint8, in the order of SAMPLE_NAMES."""
    return {name: load_sample(name) for name in SAMPLE_NAMES}


def train_images() -> dict[str, np.ndarray]:
    """The bundled photos used for training (TRAIN_NAMES)."""
    return {name: load_sample(name) for name in TRAIN_NAMES}


def held_out_images() -> dict[str, np.ndarray]:
    """The bundled photos kept for evaluation (HELD_OUT)."""
    return {name: load_sample(name) for name in HELD_OUT}


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


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")


def _crop_item(image: np.ndarray, rng: np.random.Generator, *, crop_size: int, degradation,
               name: str, vflip: bool) -> dict:
    """Random crop + flips of an HxWx3 uint8 image, then degrade it into an LR/HR pair."""
    h, w = image.shape[:2]
    top, left = int(rng.integers(h - crop_size + 1)), int(rng.integers(w - crop_size + 1))
    patch = image[top : top + crop_size, left : left + crop_size]
    # Horizontal flips only by default, as Real-ESRGAN (use_hflip) and OSEDiff: photos
    # upside down are not natural images and a diffusion prior knows it.
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    if vflip and rng.uniform() < 0.5:
        patch = patch[::-1]
    hr = to_tensor(np.ascontiguousarray(patch))[0]
    lr = degradation(hr, seed=rng)
    return {"hr": hr, "lr": lr, "name": name}


def _check_crop(crop_size: int, scale: int) -> None:
    if crop_size < scale or crop_size % scale:
        raise InputError(f"crop_size {crop_size} must be a positive multiple of scale {scale}")


def _check_degradation(degradation, scale: int):
    degradation = BicubicDegradation(scale) if degradation is None else degradation
    if getattr(degradation, "scale", scale) != scale:
        raise InputError(f"degradation scale {degradation.scale} differs from dataset scale {scale}")
    return degradation


def _list_images(root: Path, extensions: Sequence[str], recursive: bool = True) -> list[Path]:
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in exts)


def _image_size(path: Path, decode: bool) -> tuple[int, int]:
    """(H, W) of an image file; decode=True reads every pixel so truncation shows now."""
    if decode:
        return load_image(path).shape[:2]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it)") from err
    except OSError as err:
        raise ImageError(f"{path}: unreadable image ({err})") from err


def _warn_skipped(skipped: list[str], what: str, stacklevel: int = 3) -> None:
    if not skipped:
        return
    shown = "\n  ".join(skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    warnings.warn(f"{what}: skipped {len(skipped)} file(s):\n  {shown}{more}", stacklevel=stacklevel)


class ImageFolder(Dataset):
    """Random HR crops from every image under ``root`` (recursive) and their degraded LR.

    Items: {"hr": (3, crop, crop), "lr": (3, crop/scale, crop/scale), "name": path
    relative to root}. Crop, flips and degradation are drawn from (seed, epoch, index):
    `set_epoch(e)` gives every file a fresh crop and degradation each epoch, as Real-ESRGAN
    training does, and a resumed run that sets the same epoch sees the same items.
    ``limit`` keeps the first N files in sorted order (the paper: the first 10k of FFHQ).

    Unreadable, truncated, non-image and too-small files are skipped with one warning at
    init (``strict=True`` raises instead). ``verify=False`` reads headers only, which is
    fast for huge folders; truncated files are then caught (and skipped) when first read.
    A file that becomes unreadable during training is skipped with a warning too, never
    crashing a long run. ``length`` sets an epoch's size (default: one crop per file).
    """

    def __init__(self, root, *, crop_size: int = 128, scale: int = 4, degradation=None,
                 min_size: int | None = None, strict: bool = False, seed: int = 0,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, length: int | None = None,
                 vflip: bool = False, verify: bool = True, limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(f"{self.root}: no such folder")
        _check_crop(crop_size, scale)
        self.crop_size, self.scale, self.seed, self.vflip = crop_size, scale, seed, vflip
        self.degradation = _check_degradation(degradation, scale)
        self.min_size = crop_size if min_size is None else min_size
        if self.min_size < crop_size:
            raise InputError(f"min_size {self.min_size} is below crop_size {crop_size}: crops would not fit")

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive (or None for every file), got {limit}")
        self.files: list[Path] = []
        skipped = []
        for path in _list_images(self.root, extensions)[:limit]:
            try:
                h, w = _image_size(path, decode=verify)
                if min(h, w) < self.min_size:
                    raise ImageError(f"{path}: {h}x{w} is smaller than min_size {self.min_size}")
            except ImageError as err:
                if strict:
                    raise
                skipped.append(str(err))
                continue
            self.files.append(path)
        _warn_skipped(skipped, f"ImageFolder({self.root})")
        if not self.files:
            raise ImageError(
                f"{self.root}: no usable images (extensions {', '.join(extensions)}, "
                f"min size {self.min_size}px, {len(skipped)} skipped)"
            )
        if length is not None and length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.length = len(self.files) if length is None else int(length)
        self.epoch = 0
        self._bad: set[Path] = set()

    def set_epoch(self, epoch: int) -> None:
        """Draw crops and degradations of epoch `epoch` (DataLoader workers copy the dataset when
        an epoch's iterator starts, so set it before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for ImageFolder of length {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = len(self.files)
        start = index % n
        # On failure, try every other file once, in an order fixed by (seed, index).
        order = [start] + [int(i) for i in rng.permutation(n) if i != start]
        for i in order:
            path = self.files[i]
            if path in self._bad:
                continue
            try:
                image = load_image(path)
                h, w = image.shape[:2]
                if min(h, w) < self.crop_size:
                    raise ImageError(f"{path}: {h}x{w} is smaller than crop_size {self.crop_size}")
            except ImageError as err:
                self._bad.add(path)
                warnings.warn(f"ImageFolder: skipping {err}", stacklevel=2)
                continue
            name = path.relative_to(self.root).with_suffix("").as_posix()
            return _crop_item(image, rng, crop_size=self.crop_size, degradation=self.degradation,
                              name=name, vflip=self.vflip)
        raise ImageError(f"{self.root}: every image became unreadable ({len(self._bad)} skipped)")


class SampleDataset(Dataset):
    """Random crops of the bundled scikit-image photos (held in memory); items as ImageFolder.

    ``length`` defaults to 64 crops per photo; `set_epoch` as ImageFolder.
    """

    def __init__(self, names: Sequence[str] = TRAIN_NAMES, *, crop_size: int = 128, scale: int = 4,
                 degradation=None, seed: int = 0, length: int | None = None, vflip: bool = False):
        _check_crop(crop_size, scale)
        if isinstance(names, str):
            raise InputTypeError(f"names must be a sequence of names, got the string {names!r}")
        if not names:
            raise InputError("names is empty")
        self.names = tuple(names)
        self.images = [load_sample(n) for n in self.names]  # KeyError lists valid names
        small = [f"{n} {im.shape[0]}x{im.shape[1]}"
                 for n, im in zip(self.names, self.images) if min(im.shape[:2]) < crop_size]
        if small:
            raise ImageError(f"sample images smaller than crop_size {crop_size}: {', '.join(small)}")
        self.crop_size, self.scale, self.seed, self.vflip = crop_size, scale, seed, vflip
        self.degradation = _check_degradation(degradation, scale)
        self.length = 64 * len(self.names) if length is None else int(length)
        if self.length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for SampleDataset of length {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        i = index % len(self.names)
        return _crop_item(self.images[i], rng, crop_size=self.crop_size, degradation=self.degradation,
                          name=self.names[i], vflip=self.vflip)


class MixedDataset(Dataset):
    """Several datasets mixed by a ratio, one epoch at a time: the paper's LSDIR + FFHQ layout.

    ``ratios=None`` gives each dataset its own length's share, which is what concatenating the
    folders does (OSEDiff and PiSA-SR list LSDIR and the first 10k FFHQ faces in one file).
    With ratios, an epoch of ``length`` items (default: the sum of the lengths) holds
    round(ratio_i * length) items of dataset i, largest remainders first; within dataset i
    they are the first ones of a permutation drawn from (seed, epoch, i), cycled when the
    share exceeds its size. `set_epoch` reaches every part, so crops, degradations and the
    choice of files are fresh each epoch and the same for the same epoch.
    """

    def __init__(self, datasets: Sequence[Dataset], ratios: Sequence[float] | None = None, *,
                 length: int | None = None, seed: int = 0):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        sizes = [len(d) for d in self.datasets]
        if min(sizes) < 1:
            raise ValueError(f"MixedDataset: a dataset is empty (sizes {sizes})")
        weights = np.asarray(sizes if ratios is None else list(ratios), dtype=np.float64)
        if len(weights) != len(self.datasets) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"ratios must give one non-negative share per dataset ({len(self.datasets)}), "
                             f"not all zero; got {None if ratios is None else list(ratios)}")
        self.length = sum(sizes) if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be positive, got {length}")
        share = weights / weights.sum() * self.length
        counts = np.floor(share).astype(int)
        for i in np.argsort(-(share - counts), kind="stable")[: self.length - counts.sum()]:
            counts[i] += 1  # largest remainders
        self.counts = [int(c) for c in counts]
        self.offsets = np.cumsum([0] + self.counts)
        self.seed, self.epoch = seed, 0
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for MixedDataset of length {self.length}")
        i = int(np.searchsorted(self.offsets, index, side="right")) - 1
        j = index - int(self.offsets[i])
        key = (self.epoch, i)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] == self.epoch}
            self._perms[key] = np.random.default_rng([self.seed, self.epoch, i]).permutation(len(self.datasets[i]))
        perm = self._perms[key]
        return self.datasets[i][int(perm[j % len(perm)])]


# RealSR names pairs Canon_001_LR4.png / Canon_001_HR.png; the StableSR/OSEDiff test sets use
# the same name in test_LR and test_HR (RealSR: Canon_001_LR4.png in both; DRealSR:
# DSC_1454_x1.png in both). Either way the key is the stem without an _LR<n>/_HR suffix.
_LR_SUFFIX = re.compile(r"_LR\d*$", re.IGNORECASE)
_HR_SUFFIX = re.compile(r"_HR$", re.IGNORECASE)
_ANY_SUFFIX = re.compile(r"_(LR\d*|HR)$", re.IGNORECASE)


def pair_key(stem: str) -> str:
    """The name an LR, HR or output file is paired by: its stem without _LR<n> / _HR."""
    return _ANY_SUFFIX.sub("", stem)


class PairedFolder(Dataset):
    """LR/HR test pairs laid out as RealSR/DRealSR: ``root/lr_dir`` and ``root/hr_dir``.

    Files are matched by stem after stripping ``_LR<n>``/``_HR`` suffixes (``pair_key``);
    unmatched files are reported with one warning, or raise ``ImageError`` with strict=True
    (a benchmark must score every image it claims to). Each HR must be exactly ``scale`` times its LR.
    Items: {"lr": (3, h, w), "hr": (3, scale*h, scale*w), "name": str}.
    """

    def __init__(self, root, *, scale: int = 4, lr_dir: str = "test_LR", hr_dir: str = "test_HR",
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, strict: bool = False):
        self.root, self.scale = Path(root), scale
        lr_root, hr_root = self.root / lr_dir, self.root / hr_dir
        for d in (lr_root, hr_root):
            if not d.is_dir():
                raise MissingFileError(
                    f"{d}: no such folder (expected {lr_dir}/ and {hr_dir}/ under {self.root})"
                )
        lr_files, hr_files = _list_images(lr_root, extensions, False), _list_images(hr_root, extensions, False)
        if lr_root.resolve() == hr_root.resolve():
            # One folder holding both (RealSR's own layout): the suffix says which is which.
            lr_files = [p for p in lr_files if _LR_SUFFIX.search(p.stem)]
            hr_files = [p for p in hr_files if _HR_SUFFIX.search(p.stem)]
        lr_by_key = self._by_key(lr_files)
        hr_by_key = self._by_key(hr_files)
        keys = sorted(lr_by_key.keys() & hr_by_key.keys())
        unmatched = [str(lr_by_key[k]) for k in sorted(lr_by_key.keys() - hr_by_key.keys())]
        unmatched += [str(hr_by_key[k]) for k in sorted(hr_by_key.keys() - lr_by_key.keys())]
        if unmatched and strict:
            raise ImageError(f"{self.root}: {len(unmatched)} file(s) without a partner in {lr_dir}/ and "
                             f"{hr_dir}/ (paired by name without _LR<n>/_HR): {', '.join(unmatched[:5])}"
                             + (", ..." if len(unmatched) > 5 else ""))
        _warn_skipped([f"{u} (no partner)" for u in unmatched], f"PairedFolder({self.root})")
        if not keys:
            raise ImageError(f"{self.root}: no LR/HR pairs matched by name in {lr_dir}/ and {hr_dir}/")
        self.pairs = [(k, lr_by_key[k], hr_by_key[k]) for k in keys]
        for name, lr_path, hr_path in self.pairs:
            (lh, lw), (hh, hw) = _image_size(lr_path, False), _image_size(hr_path, False)
            if (hh, hw) != (lh * scale, lw * scale):
                hint = " (LR already upsampled to HR size? downsample it first)" if (lh, lw) == (hh, hw) else ""
                raise ImageError(
                    f"pair {name!r}: HR {hr_path.name} is {hh}x{hw} but LR {lr_path.name} is {lh}x{lw}; "
                    f"expected HR = {scale} x LR = {lh * scale}x{lw * scale}{hint}"
                )

    @staticmethod
    def _by_key(files: list[Path]) -> dict[str, Path]:
        by_key: dict[str, Path] = {}
        for p in files:
            key = pair_key(p.stem)
            if key in by_key:
                raise ImageError(f"two files match the name {key!r}: {by_key[key]} and {p}")
            by_key[key] = p
        return by_key

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        name, lr_path, hr_path = self.pairs[index]
        return {"lr": to_tensor(load_image(lr_path))[0], "hr": to_tensor(load_image(hr_path))[0], "name": name}


def pairs_from_samples(names: Sequence[str] = HELD_OUT, degradation=None, crop: int | None = None,
                       *, seed: int = 0) -> list[dict]:
    """LR/HR pairs from the bundled photos, as PairedFolder items (for demos and analysis).

    degradation: default BicubicDegradation(4). crop: None keeps the whole photo (cut at
    the bottom/right to a multiple of the scale); an int takes a centred crop x crop.
    seed: sample i is degraded with seed + i.
    """
    degradation = BicubicDegradation(4) if degradation is None else degradation
    scale = degradation.scale
    if crop is not None:
        _check_crop(crop, scale)
    pairs = []
    for i, name in enumerate(names):
        image = load_sample(name)
        h, w = image.shape[:2]
        if crop is None:
            image = image[: h - h % scale, : w - w % scale]
        else:
            if min(h, w) < crop:
                raise ImageError(f"sample {name!r} is {h}x{w}, smaller than crop {crop}")
            top, left = (h - crop) // 2, (w - crop) // 2
            image = image[top : top + crop, left : left + crop]
        hr = to_tensor(np.ascontiguousarray(image))[0]
        pairs.append({"lr": degradation(hr, seed=seed + i), "hr": hr, "name": name})
    return pairs
