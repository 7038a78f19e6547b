"""Two artefact measures for super-resolved images: NIQE alone rewards ringing and stripes.

- ``stripe_score(x)``: periodic peaks in the high-frequency spectrum (stripes, checkerboards).
  No reference: the fraction of the luminance power above the LR Nyquist frequency (the band an
  x`scale` SR model must invent) that sits in isolated spectral peaks, bins at least `peak_ratio`
  times their local median. A random texture has a smooth spectrum: for Gaussian noise a
  periodogram bin exceeds 10x the median with probability exp(-10 ln 2) ~ 1e-3, so the score is
  near 0.01; a regular stroke pattern puts much of its energy in a few bins.
- ``halo_score(x, hr)``: edge overshoot / halo energy against HR. Near HR's edges, how far the
  SR luminance leaves HR's own local [min, max] envelope (a window of `window` px tolerates
  small misalignment): root-mean-square excursion, in grey levels (0-255). HR scores 0 by
  construction; ringing, halos and embossed ridges overshoot the envelope.

Both take float images in [0, 1], (3, H, W) or (1, 3, H, W) (or what ``ifcsr.images.to_tensor``
accepts). Calibration on HR, bicubic, an over-sharpened image and a striped realism endpoint:
``analysis/realism_check.py`` (results in ``analysis/results/artefact_calibration.csv``).

Imports: numpy, scipy, torch and ifcsr.images / ifcsr.metrics only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .images import to_tensor


def _luma(x, name: str) -> torch.Tensor:
    """BT.601 luma Y in [0, 1] of a single image: (H, W) float64 tensor."""
    t = to_tensor(x, name=name).double()
    if t.shape[0] != 1:
        raise ValueError(f"{name}: one image expected, got a batch of {t.shape[0]}")
    r, g, b = t[0, 0], t[0, 1], t[0, 2]
    return (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0  # ycbcr Y (as psnr_y), [16, 235]/255


def stripe_score(x, *, scale: int = 4, peak_ratio: float = 10.0, background: int = 9) -> float:
    """Fraction of high-frequency luminance power in isolated spectral peaks (see module doc).

    scale: the SR factor; power at radii >= 1 / (2 * scale) cycles/px (above the LR's Nyquist)
    counts. peak_ratio: a bin is a peak when its power is >= peak_ratio x the median of its
    background x background neighbourhood. Returns a number in [0, 1]; higher = more periodic.
    """
    from scipy.ndimage import median_filter

    y = _luma(x, "x").numpy()
    H, W = y.shape
    if min(H, W) < 32:
        raise ValueError(f"stripe_score needs at least 32x32 pixels, got {H}x{W}")
    if scale < 1 or peak_ratio <= 1:
        raise ValueError(f"scale must be >= 1 and peak_ratio > 1, got {scale}, {peak_ratio}")
    win = np.outer(np.hanning(H), np.hanning(W))  # no edge-wrap leakage along the axes
    power = np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean()) * win))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(H))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(W))[None, :]
    hf = np.hypot(fy, fx) >= 1.0 / (2 * scale)
    bg = median_filter(power, size=background, mode="wrap")
    peaks = hf & (power >= peak_ratio * np.maximum(bg, 1e-30))
    total = power[hf].sum()
    return float(power[peaks].sum() / total) if total > 0 else 0.0


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
    hi = F.max_pool2d(r4, window, 1, window // 2)
    lo = -F.max_pool2d(-r4, window, 1, window // 2)
    over = F.relu(y4 - hi) + F.relu(lo - y4)
    gy, gx = torch.gradient(r)
    grad = torch.hypot(gx, gy)
    edges = (grad >= torch.quantile(grad.flatten().float(), edge_quantile).double()).double()
    near = F.max_pool2d(edges[None, None], dilate, 1, dilate // 2) > 0
    return float(255.0 * over[near].pow(2).mean().sqrt())
