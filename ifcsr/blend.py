"""Image-space fidelity-realism control, the point of the paper.

    x_hat = (1 - gamma) * f_theta(x_L) + gamma * f_phi(x_L)          (IFCSR, Eq. for x_hat)

Both endpoints are inferred once; every later gamma is this pixel blend, with no network
call. gamma may be a scalar, one value per sample, or a per-pixel map, which none of the
peer methods (PiSA-SR's latent scales, ESRGAN's network interpolation) offers.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch


class GammaError(ValueError):
    """gamma is malformed: NaN, outside [0, 1] without extrapolation, or a wrong shape."""


def blend(fidelity, realism, gamma, *, extrapolate: bool = False, out=None):
    """Blend two endpoint images: ``(1 - gamma) * fidelity + gamma * realism``.

    fidelity, realism: torch tensors (B, 3, H, W) or (3, H, W) float in [0, 1], or numpy
        arrays HxWx3 / BxHxWx3, float in [0, 1] or uint8 (the result then is uint8 too).
    gamma: a scalar; one value per sample (length B); or a per-pixel map of shape
        (B, 1, H, W) or (H, W) for tensors, (H, W) / (B, H, W) / (H, W, 1) for numpy.
    extrapolate: allow gamma outside [0, 1]; the result is then clipped to [0, 1].
    out: optional preallocated output (same type, dtype and shape) to avoid allocations
        in a live slider.
    """
    if isinstance(fidelity, torch.Tensor) and isinstance(realism, torch.Tensor):
        return _blend_torch(fidelity, realism, gamma, extrapolate, out)
    if isinstance(fidelity, np.ndarray) and isinstance(realism, np.ndarray):
        return _blend_numpy(fidelity, realism, gamma, extrapolate, out)
    raise TypeError(
        "fidelity and realism must both be torch tensors or both numpy arrays, got "
        f"{type(fidelity).__name__} and {type(realism).__name__}"
    )


def _check_gamma_values(g, extrapolate: bool) -> None:
    arr = g if isinstance(g, torch.Tensor) else torch.as_tensor(np.asarray(g, dtype=np.float64))
    if not torch.isfinite(arr).all():
        raise GammaError("gamma contains NaN or infinite values")
    if not extrapolate and arr.numel() and (arr.min() < 0 or arr.max() > 1):
        raise GammaError(
            f"gamma must be in [0, 1], got range [{arr.min().item():.3g}, {arr.max().item():.3g}]; "
            "pass extrapolate=True to go beyond the endpoints (the result is clipped to [0, 1])"
        )


def _blend_torch(f, r, gamma, extrapolate, out):
    if f.shape != r.shape:
        raise ValueError(f"fidelity {tuple(f.shape)} and realism {tuple(r.shape)} differ in shape")
    if f.ndim not in (3, 4) or f.shape[-3] != 3:
        raise ValueError(f"expected images (B, 3, H, W) or (3, H, W), got {tuple(f.shape)}")
    if not (f.is_floating_point() and r.is_floating_point()):
        raise ValueError("torch endpoints must be float tensors in [0, 1]")
    squeeze = f.ndim == 3
    if squeeze:
        f, r = f.unsqueeze(0), r.unsqueeze(0)
    B, _, H, W = f.shape
    if isinstance(gamma, numbers.Real) and not isinstance(gamma, bool):
        _check_gamma_values(float(gamma), extrapolate)
        g = float(gamma)
    else:
        g = torch.as_tensor(gamma, dtype=f.dtype, device=f.device)
        _check_gamma_values(g, extrapolate)
        if g.ndim == 0:
            pass
        elif g.ndim == 1:  # one value per sample
            if g.shape[0] != B:
                raise GammaError(f"per-sample gamma has {g.shape[0]} values for a batch of {B}")
            g = g.view(B, 1, 1, 1)
        elif g.ndim == 2:  # (H, W) map shared by the batch
            if g.shape != (H, W):
                raise GammaError(f"gamma map {tuple(g.shape)} does not match image size {(H, W)}")
            g = g.view(1, 1, H, W)
        elif g.ndim == 4:
            if g.shape[1] != 1 or g.shape[2:] != (H, W) or g.shape[0] not in (1, B):
                raise GammaError(f"gamma map must be (B, 1, H, W) = ({B}, 1, {H}, {W}), got {tuple(g.shape)}")
        else:
            raise GammaError(f"gamma must be a scalar, (B,), (H, W) or (B, 1, H, W); got shape {tuple(g.shape)}")
    # f + g * (r - f) is (1 - g) f + g r with one multiply; torch.lerp does exactly this.
    if out is not None:
        res = torch.lerp(f, r, g, out=out.unsqueeze(0) if squeeze else out)
    else:
        res = torch.lerp(f, r, g)
    if extrapolate:
        res.clamp_(0.0, 1.0)
    return res[0] if squeeze else res


def _blend_numpy(f, r, gamma, extrapolate, out):
    if f.shape != r.shape or f.dtype != r.dtype:
        raise ValueError(f"fidelity {f.shape} {f.dtype} and realism {r.shape} {r.dtype} differ")
    if f.ndim not in (3, 4) or f.shape[-1] != 3:
        raise ValueError(f"expected numpy images HxWx3 or BxHxWx3, got {f.shape}")
    if f.dtype != np.uint8 and not np.issubdtype(f.dtype, np.floating):
        raise ValueError(f"numpy endpoints must be uint8 or float in [0, 1], got {f.dtype}")
    H, W = f.shape[-3:-1]
    B = f.shape[0] if f.ndim == 4 else None
    g = np.asarray(gamma, dtype=np.float32)
    _check_gamma_values(g, extrapolate)
    if g.ndim == 0:
        pass
    elif g.ndim == 1 and B is not None and g.shape[0] == B:
        g = g.reshape(B, 1, 1, 1)
    elif g.shape == (H, W):
        g = g[..., None]
    elif g.shape == (H, W, 1):
        pass
    elif B is not None and g.shape in ((B, H, W), (B, H, W, 1)):
        g = g.reshape(B, H, W, 1)
    else:
        raise GammaError(f"gamma of shape {g.shape} does not fit images of shape {f.shape}")
    if f.dtype == np.uint8:
        return _blend_uint8(f, r, g, extrapolate, out)
    res = f + g * (r - f)
    if extrapolate:
        np.clip(res, 0.0, 1.0, out=res)
    res = res.astype(f.dtype, copy=False)
    if out is not None:
        out[...] = res
        return out
    return res


def _blend_uint8(f, r, g, extrapolate, out):
    if g.ndim == 0:
        # Fixed-point blend for display: 8-bit weights, integer arithmetic, no float temporaries.
        w = int(round(float(g) * 256))
        if not extrapolate or 0 <= w <= 256:
            fi = f.astype(np.uint16)
            res = fi * (256 - w) + r.astype(np.uint16) * w + 128
            res >>= 8
            if out is not None:
                np.copyto(out, res, casting="unsafe")
                return out
            return res.astype(np.uint8)
    res = f.astype(np.float32) + g * (r.astype(np.float32) - f.astype(np.float32))
    res = np.clip(np.rint(res), 0, 255).astype(np.uint8)
    if out is not None:
        out[...] = res
        return out
    return res


def mse_optimal_gamma(fidelity, realism, target) -> float:
    """The gamma that minimises the MSE of the blend to `target` (closed form, not clipped).

    The blend's error is e_F + gamma * d with e_F = fidelity - target and d = realism - fidelity,
    so MSE(gamma) is a parabola with its minimum at

        gamma* = -<e_F, d> / |d|^2.

    PSNR therefore falls monotonically over [0, 1] iff gamma* <= 0, and over a grid of step h
    starting at 0 iff gamma* <= h / 2 (MSE(0) <= MSE(h) by the parabola's symmetry). gamma* > 0
    says the realism endpoint partly CORRECTS the fidelity endpoint's error: the two act as
    an ensemble whose average beats either. Accepts what `blend` accepts (float or uint8
    numpy, torch), with one shape for all three (a batch of one counts as its image);
    returns nan where the endpoints agree.
    """
    def arr(x):
        a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        while a.ndim > 3 and a.shape[0] == 1:  # a batch of one is the image itself
            a = a[0]
        return a

    f, r, t = arr(fidelity), arr(realism), arr(target)
    if not f.shape == r.shape == t.shape:
        raise ValueError(f"fidelity, realism and target must have one shape, got {f.shape}, {r.shape}, {t.shape}")
    d = (r - f).ravel()
    dd = float(d @ d)
    return float("nan") if dd == 0.0 else float(-((f - t).ravel() @ d) / dd)
