"""Where realism is risky: the ghosting-risk map of two endpoints, risk-aware gamma maps, and
a ghosting measure against HR. Imports only torch and numpy (no metric, model or widget).

The blend's known failure mode is ghosting (DESIGN 1): where the fidelity and realism
endpoints put an edge in different places, a mid-gamma blend shows both, a doubled edge.
`ghosting_risk` finds those places from the two endpoints alone (no HR), so it is free at
inference time; `risk_aware_gamma` turns it into a per-pixel gamma map of a given mean that
keeps gamma low there; `ghost_edge_energy` measures doubled edges of an output against HR.

Definitions (Y = BT.601 luma in [0, 1], as ``ifcsr.evaluation.ymetrics.psnr_y``; G_s = Gaussian of std s):

    g_k   = grad(G_sigma * Y_k)                       k in {F, R}: fidelity, realism
    T_k   = G_rho * |g_k|^2                           local gradient energy (trace of the structure tensor)
    r     = G_rho * (g_F . g_R) / sqrt(T_F T_R)       local gradient correlation, in [-1, 1]
                                                      (r = 1 where both T are 0: nothing to disagree on)
    w     = T^2 / (T^2 + tau^4),  T = min(T_F, T_R)   both endpoints have structure here, in [0, 1)
    risk  = clip(1 - r, 0, 1) * w                     in [0, 1]
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# BT.601 studio-swing luma of RGB in [0, 1] (pyiqa's rgb2ycbcr, as ifcsr.evaluation.ymetrics.psnr_y).
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_BIAS = 16.0 / 255.0


class RiskInputError(ValueError):
    """An input of the risk functions is malformed: wrong type, shape, dtype, range or NaN."""


# ----------------------------------------------------------------------------- inputs


def _as_batch(x, name: str) -> tuple[torch.Tensor, bool]:
    """(B, 3, H, W) float32 tensor in [0, 1] from a tensor (B, 3, H, W) / (3, H, W) or a numpy
    image HxWx3 / BxHxWx3 (uint8, or float in [0, 1]); and whether the input was numpy."""
    if isinstance(x, np.ndarray):
        if x.ndim not in (3, 4) or x.shape[-1] != 3:
            raise RiskInputError(f"{name}: expected a numpy image HxWx3 or BxHxWx3, got shape {x.shape}")
        if x.dtype == np.uint8:
            t = torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0
        elif np.issubdtype(x.dtype, np.floating):
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        else:
            raise RiskInputError(f"{name}: numpy images must be uint8 or float in [0, 1], got {x.dtype}")
        t = t.unsqueeze(0) if t.ndim == 3 else t
        t, was_numpy = t.permute(0, 3, 1, 2), True
    elif isinstance(x, torch.Tensor):
        if x.ndim not in (3, 4) or x.shape[-3] != 3:
            raise RiskInputError(f"{name}: expected a tensor (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise RiskInputError(f"{name}: torch images must be float tensors in [0, 1], got {x.dtype}")
        t, was_numpy = (x.unsqueeze(0) if x.ndim == 3 else x).detach().float(), False
    else:
        raise RiskInputError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")
    if not torch.isfinite(t).all():
        raise RiskInputError(f"{name} contains NaN or infinite values")
    # 1e-4 of slack: blends of [0, 1] images may round just outside (as ifcsr.evaluation.metrics allows)
    if t.numel() and (t.min() < -1e-4 or t.max() > 1 + 1e-4):
        raise RiskInputError(f"{name}: values must be in [0, 1], got [{t.min().item():.3g}, {t.max().item():.3g}]")
    if min(t.shape[-2:]) < 2:
        raise RiskInputError(f"{name}: need images of at least 2x2 pixels, got {tuple(t.shape[-2:])}")
    return t, was_numpy


def _pair(a, b, names) -> tuple[torch.Tensor, torch.Tensor, bool]:
    ta, na = _as_batch(a, names[0])
    tb, nb = _as_batch(b, names[1])
    if na != nb:
        raise RiskInputError(f"{names[0]} and {names[1]} must both be torch tensors or both numpy arrays")
    if ta.shape != tb.shape:
        raise RiskInputError(f"{names[0]} {tuple(ta.shape)} and {names[1]} {tuple(tb.shape)} differ in shape")
    return ta, tb, na


def _out(m: torch.Tensor, was_numpy: bool, batched: bool):
    """(B, 1, H, W) -> the caller's form: (B, 1, H, W) / (1, H, W) tensors; (H, W) / (B, H, W) numpy."""
    if was_numpy:
        a = m[:, 0].cpu().numpy().astype(np.float32, copy=False)
        return a if batched else a[0]
    return m if batched else m[0]


def _is_batched(x) -> bool:
    return x.ndim == 4


# ----------------------------------------------------------------------------- filters


def luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma in [0, 1] (ifcsr.evaluation.ymetrics.psnr_y's Y)."""
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) + _Y_BIAS


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), truncated at 3 sigma, reflected borders."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    C = x.shape[1]
    H, W = x.shape[-2:]
    # reflect padding needs pad < size; fall back to replicate on tiny images
    mode = "reflect" if r < min(H, W) else "replicate"
    x = F.pad(x, (r, r, 0, 0), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    x = F.pad(x, (0, 0, r, r), mode=mode)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _grad(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of (B, 1, H, W), replicated borders: (gx, gy) per pixel of luma."""
    p = F.pad(y, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return gx, gy


def structure_tensor(y: torch.Tensor, *, sigma: float = 1.0, rho: float = 2.0):
    """Gradient and smoothed structure tensor of luma (B, 1, H, W):
    (gx, gy, Jxx, Jxy, Jyy), each (B, 1, H, W)."""
    gx, gy = _grad(_gauss(y, sigma))
    J = _gauss(torch.cat([gx * gx, gx * gy, gy * gy], dim=1), rho)
    return gx, gy, J[:, 0:1], J[:, 1:2], J[:, 2:3]


def coherent_energy(Jxx, Jxy, Jyy) -> torch.Tensor:
    """l1 - l2 of the structure tensor: the energy of ONE dominant orientation (an edge or a
    line); isotropic noise has l1 close to l2 and so little of it."""
    return torch.sqrt((Jxx - Jyy) ** 2 + 4 * Jxy**2)


# ----------------------------------------------------------------------------- the risk map


def ghosting_risk(fidelity, realism, *, sigma: float = 1.0, rho: float = 3.0, tau: float = 0.01):
    """Per-pixel ghosting risk in [0, 1] from the two endpoints alone (no HR).

        risk = clip(1 - r, 0, 1) * T^2 / (T^2 + tau^4),    T = min(T_F, T_R)

    r = G_rho*(g_F . g_R) / sqrt(G_rho*|g_F|^2  G_rho*|g_R|^2) is the local correlation of the
    endpoints' luma gradients (g = grad of luma smoothed by G_sigma) and T_k = G_rho*|g_k|^2 the
    local gradient energy of each (see the module docstring).

    - Same edge, other contrast (realism = a + b * fidelity, b > 0): g_R = b g_F, so r = 1 and
      the risk is 0 whatever b is.
    - Edges in different places (shifted, doubled): the gradient profiles overlap less, so r
      drops. For Gaussian profiles of std s shifted by d inside the window, r = exp(-d^2 / (4 s^2)):
      a shift well under the edge's own width (which the blend shows as one wider edge) scores
      low, a shift of 2 s or more (which the blend shows as two edges) scores high. s is the
      edge's blur combined with sigma.
    - Texture or noise added where the other endpoint is flat: T = min(T_F, T_R) is near 0
      there, so w silences it. Noise added on or near an edge: the window rho holds the edge's
      energy, which dominates the correlation, so r stays near 1.
    - Opposite polarity (r < 0) counts as full disagreement (clip at 1).
    - Two edges farther apart than about 2 rho do not share a window: they count as separate
      structures, not as one edge in two places.

    sigma: pre-smoothing of luma in pixels (suppresses pixel noise; widens s).
    rho: the window in pixels (3: edges up to ~6 px apart count as one edge displaced).
    tau: gradient magnitude (luma per pixel) from which structure counts: T = tau^2 gives
        w = 0.5. 0.01 is a 0.1 luma step spread over ~4 pixels, averaged over the window;
        noise of std 0.03 on a flat area stays far below it after the sigma = 1 smoothing
        (tests/test_risk.py has the figures).

    fidelity, realism: tensors (B, 3, H, W) / (3, H, W) float in [0, 1], or numpy HxWx3 /
    BxHxWx3 (uint8 or float in [0, 1]); both the same kind and shape. Computed in float64.
    Returns (B, 1, H, W) / (1, H, W) float32 tensors for tensors, (H, W) / (B, H, W) float32
    arrays for numpy.
    """
    for name, v in (("sigma", sigma), ("rho", rho), ("tau", tau)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise RiskInputError(f"{name} must be a positive number, got {v!r}")
    f, r, was_numpy = _pair(fidelity, realism, ("fidelity", "realism"))
    batched = _is_batched(fidelity)
    with torch.no_grad():
        # float64: the energies of faint gradients (1e-10 and less) keep their ratios
        gxf, gyf, fxx, _, fyy = structure_tensor(luma(f.double()), sigma=sigma, rho=rho)
        gxr, gyr, rxx, _, ryy = structure_tensor(luma(r.double()), sigma=sigma, rho=rho)
        t_f, t_r = fxx + fyy, rxx + ryy
        den = torch.sqrt(t_f * t_r)
        tiny = den <= 1e-24  # both (or one) flat to rounding: nothing to correlate; w is 0 there
        corr = torch.where(tiny, torch.ones_like(den), _gauss(gxf * gxr + gyf * gyr, rho) / den.clamp_min(1e-24))
        t = torch.minimum(t_f, t_r)
        w = t * t / (t * t + tau**4)
        risk = ((1 - corr).clamp(0, 1) * w).clamp(0, 1).float()
    return _out(risk, was_numpy, batched)


# ----------------------------------------------------------------------------- risk-aware gamma


class RiskAwareGamma:
    """Risk-aware gamma maps of any mean for one risk map, cheap enough for a slider.

        gamma(p) = clip(c - strength * risk(p), 0, 1)

    with the offset c solved per image so that mean(gamma) = mean_gamma. The mean of the
    clipped map, m(c) = (1/N) sum_p clip(c - s risk(p), 0, 1), is continuous, piecewise linear
    and non-decreasing in c, from 0 at c = 0 to 1 at c = 1 + s max(risk): a bisection on c
    always brackets the target. With the values s risk(p) sorted once (here, at construction)
    and their prefix sums, m(c) costs two binary searches -- no pass over the image -- so a
    new mean costs the bisection (microseconds) plus one clip to build the map.
    The bisection stops when |m(c) - mean_gamma| <= tol (default 1e-7) or the bracket is under
    1e-15; targets 0 and 1 are exact (c = 0: all zeros; c = 1 + s max(risk): all ones).
    gamma is non-increasing in risk; strength = 0 gives the scalar gamma everywhere.

    risk: (H, W) / (B, H, W) numpy or (H, W) / (1, H, W) / (B, 1, H, W) tensor with values in
    [0, 1] (what `ghosting_risk` returns). Maps come back in the same type and shape, float32,
    as ``Endpoints.blend`` / ``ifcsr.blend.blend`` accept them.
    """

    def __init__(self, risk, *, strength: float = 1.0, tol: float = 1e-7):
        if isinstance(strength, bool) or not (isinstance(strength, (int, float)) and math.isfinite(strength)
                                               and strength >= 0):
            raise RiskInputError(f"strength must be a non-negative number, got {strength!r}")
        if not (isinstance(tol, float) and 0 < tol < 1):
            raise RiskInputError(f"tol must be a float in (0, 1), got {tol!r}")
        if isinstance(risk, torch.Tensor):
            a = risk.detach().cpu().double().numpy()
            self.kind, self.device = "torch", risk.device
        elif isinstance(risk, np.ndarray):
            a = np.asarray(risk, dtype=np.float64)
            self.kind, self.device = "numpy", None
        else:
            raise RiskInputError(f"risk must be a torch tensor or numpy array, got {type(risk).__name__}")
        if a.ndim not in (2, 3, 4) or (a.ndim == 4 and a.shape[1] != 1) or a.size == 0:
            raise RiskInputError(f"risk must be (H, W), (B, H, W) or (B, 1, H, W), got shape {a.shape}")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise RiskInputError("risk must hold finite values in [0, 1]")
        self.shape = a.shape
        self.strength, self.tol = float(strength), tol
        # per image: the leading axis is the batch, except for a plain (H, W) map
        self._base = (a.reshape(1, -1) if a.ndim == 2 else a.reshape(a.shape[0], -1)) * self.strength
        self._sorted = np.sort(self._base, axis=1)
        self._prefix = np.concatenate([np.zeros((len(self._sorted), 1)), np.cumsum(self._sorted, axis=1)], axis=1)
        self._buf = np.empty(self._base.shape, np.float32)

    def _mean(self, i: int, c: float) -> float:
        v, P = self._sorted[i], self._prefix[i]
        a = int(np.searchsorted(v, c - 1.0, side="right"))  # s risk <= c - 1: gamma = 1
        b = int(np.searchsorted(v, c, side="left"))         # c - 1 < s risk < c: gamma = c - s risk
        return (a + (b - a) * c - (P[b] - P[a])) / v.size

    def offsets(self, mean_gamma: float) -> list[float]:
        """The offset c of each image for this mean."""
        if isinstance(mean_gamma, bool) or not (isinstance(mean_gamma, (int, float, np.floating))
                                                 and 0 <= float(mean_gamma) <= 1):
            raise RiskInputError(f"mean_gamma must be a number in [0, 1], got {mean_gamma!r}")
        m = float(mean_gamma)
        out = []
        for i in range(len(self._sorted)):
            hi_c = 1.0 + float(self._sorted[i, -1])
            if m <= 0.0:
                out.append(0.0)
                continue
            if m >= 1.0:
                out.append(hi_c)
                continue
            lo, hi = 0.0, hi_c
            c = 0.5 * (lo + hi)
            while hi - lo > 1e-15:
                c = 0.5 * (lo + hi)
                err = self._mean(i, c) - m
                if abs(err) <= self.tol:
                    break
                lo, hi = (c, hi) if err < 0 else (lo, c)
            out.append(c)
        return out

    def __call__(self, mean_gamma: float):
        """The gamma map of this mean, in the risk map's type and shape (float32)."""
        m = float(mean_gamma)
        for i, c in enumerate(self.offsets(mean_gamma)):
            if m <= 0.0 or m >= 1.0:  # exact ends, whatever float32 does to c
                self._buf[i] = m
                continue
            np.subtract(np.float32(c), self._base[i], out=self._buf[i], casting="unsafe")
        g = np.clip(self._buf, 0.0, 1.0).reshape(self.shape)
        return torch.from_numpy(g).to(self.device) if self.kind == "torch" else g


def risk_aware_gamma(risk, mean_gamma: float, *, strength: float = 1.0, tol: float = 1e-7):
    """A per-pixel gamma map of mean `mean_gamma` that is lower where `risk` is higher:
    ``clip(c - strength * risk, 0, 1)`` with c solved by bisection (see `RiskAwareGamma`,
    which also serves many means of one risk map quickly)."""
    return RiskAwareGamma(risk, strength=strength, tol=tol)(mean_gamma)


# ----------------------------------------------------------------------------- ghosting vs HR


def ghost_edge_energy(output, hr, *, radius: int = 3, sigma: float = 1.0, rho: float = 1.0,
                      hr_edge: float = 0.02):
    """Doubled-edge (ghost) energy of `output` against HR, per image (B,): lower is better.

        ghost = sum_p K_out(p) * [no HR edge within `radius` px of p] / sum_p K_hr(p)

    K = l1 - l2 is the coherent edge energy of the structure tensor (sigma, rho as in
    `ghosting_risk`, with a narrower window rho = 1 to localise edges). An HR edge is a pixel
    whose smoothed luma gradient magnitude exceeds `hr_edge` (0.02 luma per pixel: a 0.1 step
    blurred over a few pixels); the mask dilates HR's edges by `radius` pixels (a square
    max-pool). So it counts edge energy the output puts where HR has no edge nearby -- the
    second copy of a doubled edge, or a hallucinated line -- relative to HR's own edge energy,
    so images of different contrast weigh alike. Isotropic noise adds little K. A correct edge
    that is only sharper or softer stays inside the dilated mask and is not counted.

    output, hr: as `ghosting_risk` accepts (same kind and shape). Returns a float64 numpy array (B,).
    """
    if not (isinstance(radius, int) and radius >= 0):
        raise RiskInputError(f"radius must be a non-negative integer, got {radius!r}")
    x, h, _ = _pair(output, hr, ("output", "hr"))
    with torch.no_grad():
        *_, oxx, oxy, oyy = structure_tensor(luma(x), sigma=sigma, rho=rho)
        hgx, hgy, hxx, hxy, hyy = structure_tensor(luma(h), sigma=sigma, rho=rho)
        edge = (torch.sqrt(hgx**2 + hgy**2) > hr_edge).float()
        near = F.max_pool2d(edge, 2 * radius + 1, stride=1, padding=radius) if radius else edge
        k_out = coherent_energy(oxx, oxy, oyy)
        k_hr = coherent_energy(hxx, hxy, hyy)
        num = (k_out * (1 - near)).sum(dim=(1, 2, 3))
        den = k_hr.sum(dim=(1, 2, 3)).clamp_min(1e-12)
    return (num / den).double().numpy()
