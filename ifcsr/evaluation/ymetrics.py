"""PSNR and SSIM on the Y channel, in pure torch, equal to pyiqa's ``psnr``/``ssim`` with
``test_y_channel=True, color_space="ycbcr"`` (tested): the protocol of OSEDiff and the paper, fast
enough for a live slider. Imports torch, ifcsr.errors and ifcsr.data.images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ifcsr.data.images import ImageError, to_tensor
from ifcsr.errors import InputError

# Y of BT.601 studio-swing YCbCr, (w . rgb + 16) / 255 (pyiqa.utils.color_util.rgb2ycbcr), and
# Y of YIQ (pyiqa's default color space; MATLAB's rgb2gray weights): (weights, bias, divisor).
_Y_WEIGHTS = {"ycbcr": ((65.481, 128.553, 24.966), 16.0, 255.0),
              "yiq": ((0.299, 0.587, 0.114), 0.0, 1.0)}


def _pair(x, y, *, min_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = to_tensor(x, name="sr"), to_tensor(y, name="hr")
    if x.shape != y.shape:
        raise ImageError(f"sr and hr sizes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ImageError(f"need images of at least {min_size}x{min_size} pixels, got {tuple(x.shape[-2:])}")
    return x, y.to(x.device)


def _y_channel(x: torch.Tensor, color_space: str) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) luma in [0, 1], as pyiqa's to_y_channel."""
    if color_space not in _Y_WEIGHTS:
        raise InputError(f"color_space must be one of {sorted(_Y_WEIGHTS)}, got {color_space!r}")
    w, bias, div = _Y_WEIGHTS[color_space]
    w = torch.tensor(w, dtype=x.dtype, device=x.device)
    # pyiqa's op order (channels-last matmul, + bias, / divisor) so float32 results agree
    y = torch.matmul(x.permute(0, 2, 3, 1), w) + bias
    return (y / div if div != 1.0 else y).unsqueeze(1)


def psnr_y(x, y, *, color_space: str = "ycbcr") -> torch.Tensor:
    """PSNR in dB on the Y channel, per image: (B,). Bit-equal to pyiqa's ``psnr`` with
    ``test_y_channel=True, color_space=color_space`` (data range 1, eps 1e-8, no rounding).
    """
    x, y = _pair(x, y)
    x = x.float().clamp(0, 1)  # check_range allowed 1e-4 of blending round-off; pyiqa refuses it
    y = y.float().clamp(0, 1)
    mse = ((_y_channel(x, color_space) - _y_channel(y, color_space)) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / (mse + 1e-8))


def _gauss_1d() -> torch.Tensor:
    # pyiqa's fspecial(11, 1.5) is the outer product of this normalised 1-D kernel (its
    # eps-threshold never triggers at this size); separable filtering is 5x cheaper. pyiqa
    # rounds its 2-D window to float32, which moves SSIM by up to ~1e-6 (sigma = E[X^2] - mu^2
    # cancels on the 0..255 scale); this float64 kernel is the exact one.
    t = torch.arange(11, dtype=torch.float64) - 5.0
    g = torch.exp(-(t**2) / (2 * 1.5**2))
    return g / g.sum()


def ssim_y(x, y, *, color_space: str = "ycbcr") -> torch.Tensor:
    """SSIM on the Y channel, per image: (B,) float64. Equal (within 2e-6) to pyiqa's ``ssim``
    with ``test_y_channel=True, color_space=color_space``: Y on the 0..255 scale rounded to integers
    (as MATLAB's uint8), Gaussian 11x11 window sigma 1.5, 'valid' filtering, no downsampling,
    negative contrast-structure terms clipped at 0 (pyiqa's relu).
    """
    x, y = _pair(x, y, min_size=11)
    x = x.float().clamp(0, 1)
    y = y.float().clamp(0, 1)
    X = (_y_channel(x, color_space) * 255.0).round().double()
    Y = (_y_channel(y, color_space) * 255.0).round().double()
    g = _gauss_1d().to(X.device)
    gh, gv = g.view(1, 1, 1, 11), g.view(1, 1, 11, 1)

    def blur(t):  # separable 'valid' Gaussian: (B, 1, H, W) -> (B, 1, H-10, W-10)
        return F.conv2d(F.conv2d(t, gh), gv)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = blur(X), blur(Y)
    s11 = blur(X * X) - mu1**2
    s22 = blur(Y * Y) - mu2**2
    s12 = blur(X * Y) - mu1 * mu2
    cs = F.relu((2 * s12 + c2) / (s11 + s22 + c2))
    ssim_map = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs
    return ssim_map.mean(dim=(1, 2, 3))
