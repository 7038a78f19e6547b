"""A gamma that picks itself: choose gamma for one image from its two cached endpoints.
Imports numpy, torch, the core (blend, risk), ifcsr.evaluation.metrics and (in
``compare_with_oracles``) pandas.

ifcsr.evaluation.metrics (pyiqa) is imported only when a no-reference index is asked for. No network is called: every candidate gamma is a pixel blend of the endpoints.

Objectives (``auto_gamma(fidelity, realism, objective, hr=None)``):

- ``"psnr"`` (needs HR): the PSNR-Y-optimal gamma in closed form. PSNR-Y is a function of the
  MSE of the Y channel, and Y is affine in RGB, so Y(blend) = blend(Y) and
  gamma* = -<Y_F - Y_HR, Y_R - Y_F> / |Y_R - Y_F|^2 (``ifcsr.blend.mse_optimal_gamma``),
  clipped to [0, 1] (the MSE is a parabola: the clip is the constrained optimum).
- a no-reference index (``"niqe"``, ``"piqe"``, any NR metric of ``ifcsr.evaluation.metrics.REGISTRY``,
  or a callable image -> float to minimise): a 1-D search. NR indices are NOT unimodal in
  gamma in general, so the search is a coarse grid (default 11 points, step 0.1), then a
  golden-section refinement inside the two grid cells around the best grid point (to a
  bracket of ``tol`` = 0.01); the best of all evaluated points is returned, so the result
  is never worse than the grid's best. Higher-better indices are negated.
- ``"knee"``: the best trade-off of the perception-distortion curve, defined here as follows.
  On a gamma grid (default 11 points) take distortion D = RMSE of Y against HR, or, without
  HR, against the fidelity endpoint (then D = gamma * RMS(Y_R - Y_F), linear in gamma), and
  perception P = an NR index (default NIQE, lower better). Keep the Pareto-optimal points
  (no other point is at least as good in both and better in one). Normalise both axes to
  [0, 1] over that front. The knee is the front point farthest from the chord between the
  front's two extremes, on the side of the utopia point (0, 0) -- the "maximum distance to
  the chord" rule (Kneedle-like). When the front is a single point (one gamma dominates,
  e.g. no trade-off at all), that point; when no point lies strictly on the utopia side of
  the chord (a straight or concave front), the front point nearest to (0, 0).

Judging a choice (``compare_with_oracles``, used by analysis/risk_realsr.py): an objective
scored on the index it optimises finds that index's per-image oracle by construction, so the
table marks those rows (``optimised``) and the verdict comes from the indices it never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ifcsr.blend import blend, mse_optimal_gamma

_GOLDEN = (math.sqrt(5) - 1) / 2  # 0.618...


@dataclass
class AutoGamma:
    """The chosen gamma and how it was found. ``float(result)`` is the gamma."""

    gamma: float
    objective: str
    method: str  # "closed form", "grid + golden section", "knee of the PD curve"
    value: float | None = None  # the objective at gamma (NR index, PSNR-Y in dB, or None for knee)
    evaluations: list[dict] = field(default_factory=list)  # every gamma scored: dicts of gamma, values

    def __float__(self) -> float:
        return float(self.gamma)


def _single(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch tensor (1, 3, H, W) or (3, H, W), got {type(x).__name__}")
    t = x.unsqueeze(0) if x.ndim == 3 else x
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"{name}: expected (1, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if t.shape[0] != 1:
        raise ValueError(f"{name}: auto_gamma chooses one gamma per image; got a batch of {t.shape[0]} "
                         "(call it per image)")
    if not t.is_floating_point() or not torch.isfinite(t).all():
        raise ValueError(f"{name}: expected finite float values in [0, 1]")
    return t.detach().float().cpu()


def _luma(x: torch.Tensor) -> np.ndarray:
    from ifcsr.risk import luma

    return luma(x)[0, 0].double().numpy()


def psnr_gamma(fidelity, realism, hr) -> AutoGamma:
    """The PSNR-Y-optimal gamma, closed form, clipped to [0, 1] (0 where the endpoints' Y agree)."""
    f, r, h = _single(fidelity, "fidelity"), _single(realism, "realism"), _single(hr, "hr")
    if h.shape != f.shape:
        raise ValueError(f"hr {tuple(h.shape)} and the endpoints {tuple(f.shape)} differ in size")
    yf, yr, yh = _luma(f), _luma(r), _luma(h)
    g_star = mse_optimal_gamma(yf, yr, yh)
    g = 0.0 if math.isnan(g_star) else min(max(g_star, 0.0), 1.0)
    yb = yf + g * (yr - yf)
    mse = float(np.mean((yb - yh) ** 2))
    psnr = 10 * math.log10(1.0 / (mse + 1e-8))  # as ifcsr.evaluation.ymetrics.psnr_y
    return AutoGamma(g, "psnr", "closed form", psnr, [dict(gamma=g, psnr=psnr, gamma_unclipped=g_star)])


def nr_scorer(objective, *, device="cpu") -> tuple[Callable[[torch.Tensor], float], str, bool]:
    """(image -> float, name, lower_better) for an NR metric name or a callable (lower better)."""
    if callable(objective):
        return (lambda x: float(objective(x))), getattr(objective, "__name__", "callable"), True
    from ifcsr.evaluation.metrics import REGISTRY, MetricUnavailableError, _cached_suite

    spec = REGISTRY.get(objective)
    if spec is None or spec.kind != "NR":
        nr = [n for n, s in REGISTRY.items() if s.kind == "NR"]
        raise ValueError(f"objective {objective!r} is not a no-reference metric; use 'psnr' (with hr), "
                         f"'knee', a callable, or one of: {', '.join(nr)}")
    suite = _cached_suite((objective,), str(torch.device(device)))
    if objective in suite.unavailable:
        raise MetricUnavailableError(f"{objective} cannot run here: {suite.unavailable[objective]}")

    def score(x: torch.Tensor) -> float:
        df = suite.compute(x, names=[objective])
        if df.empty:
            raise MetricUnavailableError(f"{objective} cannot run here: {suite.unavailable.get(objective, '?')}")
        return float(df["value"].iloc[0])

    return score, objective, spec.lower_better


def search_gamma(cost: Callable[[float], float], *, grid: int = 11, tol: float = 0.01) -> tuple[float, float, list]:
    """Minimise cost(gamma) over [0, 1]: a grid of `grid` points, then golden-section search in
    the bracket [g_best - step, g_best + step] down to width `tol`. Returns (gamma, cost, evals)
    with evals a list of (gamma, cost) in evaluation order; the best evaluated point wins."""
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
    if not (tol > 0):
        raise ValueError(f"tol must be positive, got {tol!r}")
    evals: list[tuple[float, float]] = []
    seen: dict[float, float] = {}

    def f(g: float) -> float:
        g = float(min(max(g, 0.0), 1.0))
        if g not in seen:
            v = float(cost(g))
            if math.isnan(v):
                raise ValueError(f"the objective is NaN at gamma {g:.4f}")
            seen[g] = v
            evals.append((g, v))
        return seen[g]

    gs = np.linspace(0.0, 1.0, grid)
    vals = [f(g) for g in gs]
    i = int(np.argmin(vals))
    step = 1.0 / (grid - 1)
    a, b = max(gs[i] - step, 0.0), min(gs[i] + step, 1.0)
    # golden section on [a, b]: keeps two interior points, one new evaluation per step
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = f(d)
    g_best = min(seen, key=lambda g: (seen[g], g))
    return g_best, seen[g_best], evals


def nr_gamma(fidelity, realism, objective="niqe", *, grid: int = 11, tol: float = 0.01, device="cpu") -> AutoGamma:
    """The gamma that optimises a no-reference index (see the module docstring)."""
    f, r = _single(fidelity, "fidelity"), _single(realism, "realism")
    if f.shape != r.shape:
        raise ValueError(f"fidelity {tuple(f.shape)} and realism {tuple(r.shape)} differ in shape")
    score, name, lower = nr_scorer(objective, device=device)
    sign = 1.0 if lower else -1.0
    g, v, evals = search_gamma(lambda g: sign * score(blend(f, r, g)), grid=grid, tol=tol)
    return AutoGamma(g, name, "grid + golden section", sign * v, [dict(gamma=x, **{name: sign * y}) for x, y in evals])


def knee_point(distortion, perception) -> int:
    """Index of the knee of a perception-distortion curve (both lower better), by the rule in
    the module docstring: Pareto front, normalised, farthest from the chord on the utopia side."""
    D = np.asarray(distortion, dtype=float)
    P = np.asarray(perception, dtype=float)
    if D.shape != P.shape or D.ndim != 1 or D.size == 0:
        raise ValueError(f"distortion and perception must be 1-D of one length, got {D.shape} and {P.shape}")
    if not (np.isfinite(D).all() and np.isfinite(P).all()):
        raise ValueError("distortion and perception must be finite")
    front = [i for i in range(D.size)
             if not np.any((D <= D[i]) & (P <= P[i]) & ((D < D[i]) | (P < P[i])))]
    # one index per distinct point (equal points: the first, i.e. the lowest gamma)
    uniq: dict[tuple, int] = {}
    for i in front:
        uniq.setdefault((D[i], P[i]), i)
    front = sorted(uniq.values(), key=lambda i: D[i])
    if len(front) == 1:
        return front[0]
    d, p = D[front], P[front]
    x = (d - d.min()) / (d.max() - d.min())  # along the front D rises and P falls: both spans > 0
    y = (p - p.min()) / (p.max() - p.min())
    # chord from (0, 1) (least distortion) to (1, 0) (best perception): x + y = 1;
    # the signed distance towards the utopia point (0, 0) is (1 - x - y) / sqrt(2)
    dist = (1 - x - y) / math.sqrt(2)
    k = int(np.argmax(dist))
    if dist[k] <= 1e-12:
        k = int(np.argmin(x**2 + y**2))
    return front[k]


def knee_gamma(fidelity, realism, hr=None, *, perception="niqe", gammas=None, device="cpu") -> AutoGamma:
    """The knee of the perception-distortion curve over a gamma grid (module docstring)."""
    f, r = _single(fidelity, "fidelity"), _single(realism, "realism")
    if f.shape != r.shape:
        raise ValueError(f"fidelity {tuple(f.shape)} and realism {tuple(r.shape)} differ in shape")
    h = None if hr is None else _single(hr, "hr")
    if h is not None and h.shape != f.shape:
        raise ValueError(f"hr {tuple(h.shape)} and the endpoints {tuple(f.shape)} differ in size")
    gs = np.linspace(0, 1, 11) if gammas is None else np.asarray(gammas, dtype=float)
    if gs.ndim != 1 or gs.size < 2 or not np.isfinite(gs).all() or gs.min() < 0 or gs.max() > 1:
        raise ValueError("gammas must be at least 2 finite values in [0, 1]")
    score, name, lower = nr_scorer(perception, device=device)
    sign = 1.0 if lower else -1.0
    yf, yr = _luma(f), _luma(r)
    ref = yf if h is None else _luma(h)
    D, P = [], []
    for g in gs:
        D.append(float(np.sqrt(np.mean((yf + g * (yr - yf) - ref) ** 2))))
        P.append(sign * score(blend(f, r, float(g))))
    k = knee_point(D, P)
    against = "fidelity endpoint" if h is None else "hr"
    evals = [dict(gamma=float(g), rmse_y=d, **{name: sign * p}) for g, d, p in zip(gs, D, P)]
    return AutoGamma(float(gs[k]), "knee", f"knee of the PD curve (RMSE-Y vs {against}, {name})",
                     None, evals)


def compare_with_oracles(scalar, auto, metrics: dict[str, bool]):
    """Each auto-gamma objective against one gamma for all images and the per-image oracle, on every
    metric in `metrics` (name -> lower_better): a pandas DataFrame with columns metric, choice,
    gamma, value, recovered, optimised, n_images.

    scalar: one row per (image, gamma) of the scalar blend on a gamma grid (columns image, gamma and
    one per metric). auto: one row per (image, objective) with the chosen gamma and the choice's
    scores in columns ``at_<metric>``. A metric missing from either frame is left out.

    - best single gamma: the grid gamma whose mean over the images is best;
    - per-image oracle: per image, the best value among every gamma scored for it (the grid and
      each objective's choice), then the mean over images;
    - recovered = (auto - best single) / (oracle - best single) on the set means: 1 is the
      oracle's whole gain, 0 no better than one gamma for all, below 0 worse;
    - optimised: True where the objective IS that metric. There the search maximises what it
      is scored on, so a recovered share near 1 holds by construction and shows only that the
      search works; the rows with optimised False (an index the objective never saw, e.g. PIQE
      or the full-reference lpips-hed for ``"niqe"``) are the independent check.
    """
    import pandas as pd

    images = list(dict.fromkeys(auto["image"]))
    sc = scalar[scalar["image"].isin(images)]
    rows = []
    for metric, lower in metrics.items():
        col = f"at_{metric}"
        if metric not in sc.columns or col not in auto.columns:
            continue
        sign = -1.0 if lower else 1.0  # sign * value: higher is better
        per_gamma = sc.groupby("gamma")[metric].mean()
        best_gamma = float((sign * per_gamma).idxmax())
        best = float(per_gamma[best_gamma])
        oracle = float(np.mean([sign * max((sign * sc.loc[sc["image"] == im, metric]).max(),
                                           (sign * auto.loc[auto["image"] == im, col]).max())
                                for im in images]))
        gain = sign * (oracle - best)
        rows.append(dict(metric=metric, choice="best single gamma", gamma=best_gamma, value=best,
                         recovered=0.0, optimised=False))
        rows.append(dict(metric=metric, choice="per-image oracle", gamma=np.nan, value=oracle,
                         recovered=1.0, optimised=False))
        for obj, a in auto.groupby("objective", sort=False):
            v = float(a[col].mean())
            rows.append(dict(metric=metric, choice=f"auto:{obj}", gamma=float(a["gamma"].mean()), value=v,
                             recovered=sign * (v - best) / gain if gain > 0 else np.nan, optimised=obj == metric))
    out = pd.DataFrame(rows, columns=["metric", "choice", "gamma", "value", "recovered", "optimised"])
    out["n_images"] = len(images)
    return out


def auto_gamma(fidelity, realism, objective="knee", hr=None, *, grid: int = 11, tol: float = 0.01,
               perception: str = "niqe", gammas=None, device="cpu") -> AutoGamma:
    """Choose gamma for one image from its endpoints; see the module docstring.

    objective: "psnr" (needs hr), "knee", an NR metric name ("niqe", "piqe", ...) or a callable
    image -> float to minimise. grid, tol: the NR search; perception, gammas: the knee's NR
    index and gamma grid (default 11 points). Returns an ``AutoGamma`` (``float()`` of it is gamma).
    """
    if isinstance(objective, str) and objective == "psnr":
        if hr is None:
            raise ValueError("objective 'psnr' needs the HR image (hr=...); without HR use 'knee' or "
                             "a no-reference index such as 'niqe'")
        return psnr_gamma(fidelity, realism, hr)
    if isinstance(objective, str) and objective == "knee":
        return knee_gamma(fidelity, realism, hr, perception=perception, gammas=gammas, device=device)
    if not (callable(objective) or isinstance(objective, str)):
        raise TypeError(f"objective must be a name or a callable, got {type(objective).__name__}")
    return nr_gamma(fidelity, realism, objective, grid=grid, tol=tol, device=device)
