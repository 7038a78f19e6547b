"""Image-space fidelity-realism control, the point of the paper.
Imports numpy, torch and ifcsr.errors only: the blend needs no model.

    x_hat = (1 - gamma) * f_theta(x_L) + gamma * f_phi(x_L)          (IFCSR, Eq. for x_hat)

Both endpoints are inferred once; every later gamma is this pixel blend, with no network
call. gamma may be a scalar, one value per sample, or a per-pixel map, which none of the
peer methods (PiSA-SR's latent scales, ESRGAN's network interpolation) offers.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .errors import InputError, InputTypeError


class GammaError(InputError):
    """gamma is malformed: NaN, outside [0, 1] without extrapolation, a wrong shape or type."""


class EndpointError(InputError):
    """An endpoint image that cannot be blended: NaN/inf, or values outside its range."""


# Endpoint tensors already checked, by id: (weakref, version, data_ptr, shape). A slider blends
# the same two endpoints hundreds of times; each is checked once (one aminmax pass), and again
# only when it changes in place (torch bumps `_version`) or is a new tensor.
_CHECKED: dict[int, tuple] = {}


def _tensor_key(x: torch.Tensor) -> tuple:
    return (x._version, x.data_ptr(), tuple(x.shape), x.dtype, x.device)


def check_endpoint(x, name: str) -> None:
    """NaN/inf and range check of one endpoint: torch float in [0, 1] (cached per tensor), numpy
    float in [0, 1] (two reductions; NaN fails them); numpy uint8 cannot be out of range."""
    import weakref

    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8 or not x.size or not np.issubdtype(x.dtype, np.floating):
            return  # uint8 is always in range; other dtypes are refused by the blend itself
        lo, hi = float(x.min()), float(x.max())  # NaN propagates into both
        if not (lo >= 0.0 and hi <= 1.0):
            raise EndpointError(_range_message(name, lo, hi, "numpy float", "uint8 arrays are taken as 0..255"))
        return
    if not x.numel() or not x.is_floating_point():
        return
    entry = _CHECKED.get(id(x))
    if entry is not None and entry[0]() is x and entry[1] == _tensor_key(x):
        return
    lo, hi = (v.item() for v in torch.aminmax(x.detach()))
    if not (lo >= -1e-4 and hi <= 1 + 1e-4):  # eps as images.check_range: float rounding of [0, 1] results
        raise EndpointError(_range_message(name, lo, hi, "torch", "divide 0..255 images by 255"))
    if len(_CHECKED) > 256:
        _CHECKED.clear()
    _CHECKED[id(x)] = (weakref.ref(x), _tensor_key(x))


def _range_message(name, lo, hi, kind, hint) -> str:
    if lo != lo or hi != hi:
        return f"{name}: the endpoint contains NaN values (a corrupt checkpoint or a failed inference)"
    if abs(lo) == float("inf") or abs(hi) == float("inf"):
        return f"{name}: the endpoint contains infinite values"
    return f"{name}: {kind} endpoint values must be in [0, 1], got [{lo:.4g}, {hi:.4g}] ({hint})"


def _check_gamma_type(gamma) -> None:
    if isinstance(gamma, bool) or gamma is None or isinstance(gamma, (str, bytes)):
        raise GammaError(f"gamma must be a number in [0, 1] (or a sequence / array of them), got {gamma!r}")
    if isinstance(gamma, numbers.Real):
        return
    if isinstance(gamma, numbers.Complex):
        raise GammaError(f"gamma must be real, got the complex number {gamma!r}")
    if isinstance(gamma, torch.Tensor):
        if gamma.is_complex() or gamma.dtype == torch.bool:
            raise GammaError(f"gamma tensor must be real numbers, got dtype {gamma.dtype}")
        return
    try:
        arr = np.asarray(gamma)
    except (TypeError, ValueError) as err:
        raise GammaError(f"gamma must be numbers, got {type(gamma).__name__} ({err})") from None
    if arr.dtype.kind not in "iuf":
        raise GammaError(f"gamma must be real numbers, got {type(gamma).__name__} of dtype {arr.dtype}")


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
    _check_gamma_type(gamma)
    if isinstance(fidelity, torch.Tensor) and isinstance(realism, torch.Tensor):
        check_endpoint(fidelity, "fidelity")  # cached per tensor: a slider pays it once
        check_endpoint(realism, "realism")
        return _blend_torch(fidelity, realism, gamma, extrapolate, out)
    if isinstance(fidelity, np.ndarray) and isinstance(realism, np.ndarray):
        check_endpoint(fidelity, "fidelity")
        check_endpoint(realism, "realism")
        return _blend_numpy(fidelity, realism, gamma, extrapolate, out)
    raise InputTypeError(
        "fidelity and realism must both be torch tensors or both numpy arrays, got "
        f"{type(fidelity).__name__} and {type(realism).__name__}"
    )


def _check_gamma_values(g, extrapolate: bool) -> None:
    # numpy maps are checked in numpy (the explorer's per-move path: a 512x512 map costs ~0.3 ms
    # here, ~13 ms through a float64 torch copy)
    arr = g if isinstance(g, torch.Tensor) else np.asarray(g)
    if not bool((torch.isfinite(arr) if isinstance(arr, torch.Tensor) else np.isfinite(arr)).all()):
        raise GammaError("gamma contains NaN or infinite values")
    size = arr.numel() if isinstance(arr, torch.Tensor) else arr.size
    if not extrapolate and size and (float(arr.min()) < 0 or float(arr.max()) > 1):
        raise GammaError(
            f"gamma must be in [0, 1], got range [{float(arr.min()):.3g}, {float(arr.max()):.3g}]; "
            "pass extrapolate=True to go beyond the endpoints (the result is clipped to [0, 1])"
        )


def _blend_torch(f, r, gamma, extrapolate, out):
    if f.shape != r.shape:
        raise InputError(f"fidelity {tuple(f.shape)} and realism {tuple(r.shape)} differ in shape")
    if f.ndim not in (3, 4) or f.shape[-3] != 3:
        raise InputError(f"expected images (B, 3, H, W) or (3, H, W), got {tuple(f.shape)}")
    if not (f.is_floating_point() and r.is_floating_point()):
        raise InputError("torch endpoints must be float tensors in [0, 1]")
    squeeze = f.ndim == 3
    if squeeze:
        f, r = f.unsqueeze(0), r.unsqueeze(0)
    B, _, H, W = f.shape
    want = tuple(f.shape[1:]) if squeeze else tuple(f.shape)  # the endpoints' own shape
    if out is not None and (not isinstance(out, torch.Tensor) or tuple(out.shape) != want):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"out must be a tensor of the endpoints' shape {want}, got {got}")
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
        raise InputError(f"fidelity {f.shape} {f.dtype} and realism {r.shape} {r.dtype} differ")
    if f.ndim not in (3, 4) or f.shape[-1] != 3:
        raise InputError(f"expected numpy images HxWx3 or BxHxWx3, got {f.shape}")
    if f.dtype != np.uint8 and not np.issubdtype(f.dtype, np.floating):
        raise InputError(f"numpy endpoints must be uint8 or float in [0, 1], got {f.dtype}")
    H, W = f.shape[-3:-1]
    B = f.shape[0] if f.ndim == 4 else None
    if out is not None and (not isinstance(out, np.ndarray) or out.shape != f.shape):
        raise InputError(f"out must be an array of the endpoints' shape {f.shape}, "
                         f"got {out.shape if isinstance(out, np.ndarray) else type(out).__name__}")
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
    # Fixed-point blend for display (the explorer's path, scalar gamma or per-pixel map): 8-bit
    # weights w = round(256 gamma), (f (256 - w) + r w + 128) >> 8 in uint16, no float image.
    if g.ndim == 0:
        w = int(round(float(g) * 256))
        fixed = not extrapolate or 0 <= w <= 256
    else:
        fixed = not extrapolate or bool(g.min() >= 0 and g.max() <= 1)
        if fixed:
            w = np.rint(g * 256).astype(np.uint16)
    if fixed:
        # products straight into uint16 (at most 255 * 256 + 128 < 2**16), the map broadcast over
        # the channels without a copy: ~4x faster than casting both images first (512 px map)
        if g.ndim:
            w = np.broadcast_to(w, f.shape)
        res = np.multiply(f, 256 - w, dtype=np.uint16)
        res += np.multiply(r, w, dtype=np.uint16)
        res += 128
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
        raise InputError(f"fidelity, realism and target must have one shape, got {f.shape}, {r.shape}, {t.shape}")
    d = (r - f).ravel()
    dd = float(d @ d)
    return float("nan") if dd == 0.0 else float(-((f - t).ravel() @ d) / dd)
