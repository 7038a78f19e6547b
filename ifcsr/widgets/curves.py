"""The perception-distortion curve the explorer draws (matplotlib, Agg): points of a sweep summary,
the baselines' markers, a pre-rendered plot with a moving marker. Imports numpy, pandas, matplotlib."""

from __future__ import annotations

import numpy as np

from ifcsr.errors import InputError
from ifcsr.widgets.live import encode_image

CURVE_COLUMNS = ("method", "gamma", "gamma_map", "n_images")  # non-metric columns of a sweep summary


# ----------------------------------------------------------------------------- the curve


def curve_points(curve, x: str, y: str, *, method: str = "IFCSR"):
    """(gammas, xs, ys) of the scalar-gamma curve of `method`, sorted by gamma.

    curve: a sweep summary (``ifcsr.evaluation.sweep.SweepResult.summary``: columns method, gamma,
    gamma_map, metrics...), a tidy frame (columns gamma, metric, value; mean over images), or
    a dict {"gamma": [...], x: [...], y: [...]}.
    """
    import pandas as pd

    if isinstance(curve, dict):
        df = pd.DataFrame(curve)
    else:
        df = curve.copy()
    if "metric" in df.columns and "value" in df.columns:  # tidy
        if "method" in df.columns:
            df = df[df["method"] == method]
        if "gamma_map" in df.columns:
            df = df[df["gamma_map"].fillna("") == ""]
        df = df.pivot_table(index="gamma", columns="metric", values="value", aggfunc="mean").reset_index()
    else:
        if "method" in df.columns:
            df = df[df["method"] == method]
        if "gamma_map" in df.columns:
            df = df[df["gamma_map"].fillna("") == ""]
    for col in ("gamma", x, y):
        if col not in df.columns:
            raise InputError(f"curve has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    df = df.dropna(subset=["gamma", x, y]).sort_values("gamma")
    if len(df) < 2:
        raise InputError(f"curve needs at least 2 gammas with {x} and {y}, got {len(df)}")
    return df["gamma"].to_numpy(float), df[x].to_numpy(float), df[y].to_numpy(float)


def baseline_points(curve, x: str, y: str, *, method: str = "IFCSR") -> dict:
    """{label: (xs, ys)} of every method in a sweep summary other than `method`'s scalar curve:
    one point for bicubic or Real-ESRGAN, a polyline (sorted by gamma) for gamma-swept methods
    (naive blend, k = 1, DNI), one point per gamma map (labelled with the map's name)."""
    if curve is None or isinstance(curve, dict) or "method" not in getattr(curve, "columns", ()):
        return {}
    if "metric" in curve.columns or x not in curve.columns or y not in curve.columns:
        return {}
    df = curve[curve[x].notna() & curve[y].notna()].copy()
    df["gamma_map"] = df["gamma_map"].fillna("") if "gamma_map" in df.columns else ""
    out = {}
    for (m, gm), g in df.groupby(["method", "gamma_map"], sort=False):
        if m == method and gm == "":
            continue
        g = g.sort_values("gamma") if "gamma" in g.columns else g
        label = f"{m} [{gm}]" if gm else str(m)
        out[label] = (g[x].to_numpy(float), g[y].to_numpy(float))
    return out


def _lower_better(name: str) -> bool:
    try:
        from ifcsr.evaluation.metrics import REGISTRY

        return REGISTRY[name].lower_better
    except (ImportError, KeyError):
        return True


def _metric_label(name: str) -> str:
    try:
        from ifcsr.evaluation.metrics import REGISTRY

        spec = REGISTRY[name]
        arrow = "lower is better" if spec.lower_better else "higher is better"
        return f"{(spec.label or name).split(' (not')[0]} ({arrow})"
    except (ImportError, KeyError):
        return name


class CurvePlot:
    """A perception-distortion curve rendered ONCE with matplotlib (Agg); each move only
    paints a marker into a copy of the pixels and re-encodes a small PNG (no matplotlib redraw,
    which costs tens of milliseconds)."""

    def __init__(self, gammas, xs, ys, *, x: str, y: str, baselines: dict | None = None,
                 size=(360, 270), dpi: int = 90, title: str | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.gammas, self.xs, self.ys = (np.asarray(a, float) for a in (gammas, xs, ys))
        fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(self.xs, self.ys, "-", color="0.35", lw=1.2, zorder=1)
        sc = ax.scatter(self.xs, self.ys, c=self.gammas, cmap="coolwarm", vmin=0, vmax=1, s=12, zorder=2)
        ends = [int(np.argmin(np.abs(self.gammas - g))) for g in (0.0, 1.0)]
        for i, (label, (bx, by)) in enumerate((baselines or {}).items()):
            color = f"C{i % 10}"
            if len(bx) > 1:
                ax.plot(bx, by, "-", lw=0.8, color=color, marker=".", ms=3, zorder=2, label=label)
            else:
                ax.scatter(bx, by, marker="s", s=16, color=color, edgecolor="black", lw=0.4, zorder=3, label=label)
        if baselines:
            ax.legend(fontsize=5, loc="best", framealpha=0.6)
        fig.colorbar(sc, ax=ax, pad=0.02, fraction=0.05).ax.tick_params(labelsize=6)
        ax.set_xlabel(_metric_label(x), fontsize=7)
        ax.set_ylabel(_metric_label(y), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.margins(0.12)
        # Oriented as ifcsr.widgets.figures.perception_distortion_figure: better is down and to the left.
        if not _lower_better(x):
            ax.invert_xaxis()
        if not _lower_better(y):
            ax.invert_yaxis()
        if title:
            ax.set_title(title, fontsize=8)
        fig.tight_layout(pad=0.4)
        for i in ends:  # label the endpoints on the inner side, so the text stays in the axes
            fx, _ = (ax.transAxes.inverted().transform(ax.transData.transform((self.xs[i], self.ys[i]))))
            right = fx > 0.5
            ax.annotate(f"gamma {self.gammas[i]:g}", (self.xs[i], self.ys[i]), fontsize=6,
                        xytext=(-4 if right else 4, 4), textcoords="offset points", ha="right" if right else "left")
        canvas.draw()
        self.background = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        self._trans = ax.transData
        self._h = self.background.shape[0]
        self._frame = self.background.copy()
        r = 5
        yy, xx = np.mgrid[-r - 1 : r + 2, -r - 1 : r + 2]
        d = np.sqrt(yy**2 + xx**2)
        self._disk = [(dy, dx) for dy, dx, dd in zip(yy.ravel(), xx.ravel(), d.ravel()) if dd <= r - 1.5]
        self._ring = [(dy, dx) for dy, dx, dd in zip(yy.ravel(), xx.ravel(), d.ravel()) if r - 1.5 < dd <= r + 0.5]
        self.x = x
        self.y = y
        self._png: dict = {}

    def png(self, gamma: float, *, hollow: bool = False) -> bytes:
        """`render` encoded as PNG, cached per gamma rounded to 0.005 (the slider moves in steps
        of 0.01; a map's mean gamma is continuous, and half a percent is under a pixel here)."""
        g = round(float(gamma) * 200) / 200
        key = (g, hollow)
        if key not in self._png:
            if len(self._png) > 512:
                self._png.clear()
            self._png[key] = encode_image(self.render(g, hollow=hollow), "png")
        return self._png[key]

    def point(self, gamma: float) -> tuple[float, float]:
        """The curve at gamma (linear interpolation between swept gammas)."""
        return float(np.interp(gamma, self.gammas, self.xs)), float(np.interp(gamma, self.gammas, self.ys))

    def render(self, gamma: float, *, hollow: bool = False) -> np.ndarray:
        """The curve with a marker at gamma: HxWx3 uint8 (a reused buffer)."""
        px, py = self._trans.transform(self.point(gamma))
        cx, cy = int(round(px)), int(round(self._h - py))
        f = self._frame
        np.copyto(f, self.background)
        H, W = f.shape[:2]
        for pts, color in ((self._ring, (255, 255, 255) if not hollow else (200, 30, 30)),
                           (self._disk, (200, 30, 30) if not hollow else None)):
            if color is None:
                continue
            for dy, dx in pts:
                yy, xx = cy + dy, cx + dx
                if 0 <= yy < H and 0 <= xx < W:
                    f[yy, xx] = color
        return f
