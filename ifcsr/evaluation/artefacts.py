"""Two artefact measures for super-resolved images: NIQE alone rewards ringing and stripes.
Imports numpy, torch and ifcsr.data.images.

- ``stripe_score(x, hr=None)``: periodic peaks in the high-frequency spectrum (stripes, checkerboards).
  No reference: the share of the luminance power that sits, above the LR's Nyquist frequency (the
  band an x`scale` SR model must invent), in spectral bins at least `peak_ratio` times the median
  of their frequency ring. Texture has a roughly isotropic spectrum: a periodogram bin of a
  random texture exceeds 10x its ring's median with probability exp(-10 ln 2) ~ 1e-3. Regular
  strokes put their power in a few bins (the striped realism endpoint of the bundle before
  issue 13: 97 % of its power above 0.25 cycles/px lies within 10 degrees of the horizontal axis).
  Some photos are regular themselves (rocket's launch tower scores 0.12 alone): given HR, only
  the peaks' power in excess of HR's counts.
- ``halo_score(x, hr)``: edge overshoot / halo energy against HR. Near HR's edges, how far the
  SR luminance leaves HR's own local [min, max] envelope (a window of `window` px tolerates
  small misalignment): root-mean-square excursion, in grey levels (0-255). HR scores 0 by
  construction; ringing, halos and embossed ridges overshoot the envelope.

Both take float images in [0, 1], (3, H, W) or (1, 3, H, W) (or what ``ifcsr.data.images.to_tensor``
accepts). Calibration on HR, bicubic, an over-sharpened image and a striped realism endpoint:
``analysis/realism_check.py`` (results in ``analysis/results/artefact_calibration.csv``).

Imports: numpy, scipy, torch and ifcsr.data.images / ifcsr.evaluation.metrics / ifcsr.losses (edge_mask, local_range) only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ifcsr.data.images import to_tensor
from ifcsr.losses import edge_mask, local_range


def _luma(x, name: str) -> torch.Tensor:
    """BT.601 luma Y in [0, 1] of a single image: (H, W) float64 tensor."""
    t = to_tensor(x, name=name).double()
    if t.shape[0] != 1:
        raise ValueError(f"{name}: one image expected, got a batch of {t.shape[0]}")
    r, g, b = t[0, 0], t[0, 1], t[0, 2]
    return (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0  # ycbcr Y (as psnr_y), [16, 235]/255


def _power_spectrum(y: np.ndarray) -> np.ndarray:
    H, W = y.shape
    win = np.outer(np.hanning(H), np.hanning(W))  # no edge-wrap leakage along the axes
    return np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean()) * win))) ** 2


def stripe_score(x, hr=None, *, scale: int = 4, peak_ratio: float = 10.0, rings: int = 64) -> float:
    """Share of the image's luminance power in spurious high-frequency spectral peaks (module doc).

    The power spectrum (Hann window, mean removed) is split into `rings` rings of equal radius;
    a bin is a peak when its power is >= peak_ratio x the median of its ring, i.e. far above
    what an isotropic (texture-like) spectrum puts at that frequency. Only radii >= 1 / (2 *
    scale) cycles/px count: above the LR's Nyquist frequency, the band an x`scale` model must
    invent. With `hr`, a peak counts only by its excess over HR's power there (HR's 3x3
    neighbourhood maximum): a lattice that HR has is content, not an artefact. The score is that
    power over the image's total (non-DC) power, so an image with almost no high frequencies
    (bicubic) scores ~0 even if its little HF is regular. Higher = more stripes.
    """
    from scipy.ndimage import maximum_filter

    y = _luma(x, "x").numpy()
    H, W = y.shape
    if min(H, W) < 32:
        raise ValueError(f"stripe_score needs at least 32x32 pixels, got {H}x{W}")
    if scale < 1 or peak_ratio <= 1 or rings < 2:
        raise ValueError(f"scale must be >= 1, peak_ratio > 1 and rings >= 2, got {scale}, {peak_ratio}, {rings}")
    power = _power_spectrum(y)
    excess = power
    if hr is not None:
        ref = _luma(hr, "hr").numpy()
        if ref.shape != y.shape:
            raise ValueError(f"x and hr sizes differ: {y.shape} vs {ref.shape}")
        excess = np.clip(power - maximum_filter(_power_spectrum(ref), size=3, mode="wrap"), 0, None)
    fy = np.fft.fftshift(np.fft.fftfreq(H))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(W))[None, :]
    r = np.hypot(fy, fx)
    ring = np.minimum((r / np.sqrt(0.5) * rings).astype(int), rings - 1)  # sqrt(0.5): the corner radius
    flat_ring, flat_power = ring.ravel(), power.ravel()
    median = np.array([np.median(flat_power[flat_ring == i]) if (flat_ring == i).any() else 0.0
                       for i in range(rings)])
    peaks = (r >= 1.0 / (2 * scale)) & (power >= peak_ratio * median[ring])
    total = power[r > 0].sum()
    return float(excess[peaks].sum() / total) if total > 0 else 0.0


def halo_score(x, hr, *, window: int = 5, edge_quantile: float = 0.9, dilate: int = 7) -> float:
    """RMS overshoot of x beyond HR's local luminance envelope near HR's edges, in grey levels.

    window: the envelope is HR's max / min over window x window px. Edge pixels: HR gradient
    magnitude above its `edge_quantile` quantile, dilated by `dilate` px (where halos live).
    """
    y, r = _luma(x, "x"), _luma(hr, "hr")
    if y.shape != r.shape:
        raise ValueError(f"x and hr sizes differ: {tuple(y.shape)} vs {tuple(r.shape)}")
    if window < 1 or window % 2 == 0 or dilate < 1 or dilate % 2 == 0:
        raise ValueError(f"window and dilate must be odd and positive, got {window}, {dilate}")
    if not 0 < edge_quantile < 1:
        raise ValueError(f"edge_quantile must be in (0, 1), got {edge_quantile}")
    r4, y4 = r[None, None], y[None, None]
    lo, hi = local_range(r4, window)
    over = F.relu(y4 - hi) + F.relu(lo - y4)
    near = edge_mask(r4, edge_quantile, dilate)  # the pixels the training-time penalty can target
    if not near.any():  # HR without a single edge (flat): nothing can halo
        return 0.0
    return float(255.0 * over[near].pow(2).mean().sqrt())
