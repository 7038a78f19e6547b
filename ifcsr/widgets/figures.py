"""Static matplotlib figures of results: the endpoints side by side, metrics against gamma, the
perception-distortion plane, best gamma, the D-P toy, the risk map; `save_figures` writes a
sweep's. Imports numpy, torch, matplotlib (lazily), ifcsr core, data and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ifcsr.data.images import to_uint8
from ifcsr.errors import InputError


def _img(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return to_uint8(x)
    return np.asarray(x)


def default_crop(h: int, w: int, size: int | None = None) -> tuple[int, int, int]:
    """A centred square crop (top, left, size) covering ~1/4 of the shorter side."""
    size = size or max(16, min(h, w) // 4)
    return (h - size) // 2, (w - size) // 2, size


def endpoints_figure(panels: dict, *, crop=None, title: str | None = None, note: str | None = None):
    """Images side by side (top row) with the same zoomed crop of each below.

    panels: {label: image} where each image is a (3, H, W)/(1, 3, H, W) tensor in [0, 1]
    or an HxWx3 uint8 array, all of the same size (upsample the LR before passing it).
    crop: (top, left, size) in pixels; default: a centred square.
    """
    import matplotlib

    matplotlib.use(matplotlib.get_backend())  # keep the user's backend; Agg when headless
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    imgs = {k: _img(v) for k, v in panels.items()}
    shapes = {v.shape for v in imgs.values()}
    if len(shapes) != 1:
        raise InputError(f"panels must all have the same size, got {sorted(shapes)}")
    h, w = next(iter(shapes))[:2]
    top, left, size = crop or default_crop(h, w)
    n = len(imgs)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 2.6 * h / w + 2.8), squeeze=False,
                             gridspec_kw={"height_ratios": [h / w, 1.0]})
    for i, (label, im) in enumerate(imgs.items()):
        axes[0, i].imshow(im)
        axes[0, i].add_patch(Rectangle((left, top), size, size, fill=False, ec="yellow", lw=1.2))
        axes[0, i].set_title(label, fontsize=9)
        axes[1, i].imshow(im[top:top + size, left:left + size], interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    return fig


# --------------------------------------------------------------------------- gamma sweeps

_META_COLUMNS = ("method", "gamma", "gamma_map", "n_images")
# Fixed looks for the methods of ifcsr.evaluation.baselines, so every figure reads the same way.
_STYLES = {
    "IFCSR": dict(color="black", marker="o", lw=2.2, ms=3.5, zorder=5),
    "bicubic": dict(color="tab:gray", marker="s"),
    "fidelity only": dict(color="tab:blue", marker="<"),
    "realism only": dict(color="tab:red", marker=">"),
    "single-stage (naive blend)": dict(color="tab:orange", marker="^", ls="--"),
    "k=1 (MSE+LPIPS)": dict(color="tab:green", marker="v", ls="-."),
    "DNI (LoRA weight interpolation)": dict(color="tab:purple", marker="D", ls=":"),
    "Real-ESRGAN x4plus": dict(color="tab:brown", marker="P"),
}
_MAP_MARKERS = ("*", "X", "p", "h", "8")  # one per gamma map of a method
_EXTRA_COLORS = ("tab:pink", "tab:olive", "tab:cyan", "navy", "maroon", "teal")


def _style(method: str, i: int) -> dict:
    st = dict(_STYLES.get(method, {}))
    st.setdefault("color", _EXTRA_COLORS[i % len(_EXTRA_COLORS)])
    st.setdefault("marker", "o")
    return st


def _metric_label(name: str, *, arrow: str | None = None) -> str:
    from ifcsr.evaluation.metrics import REGISTRY

    spec = REGISTRY.get(name)
    if spec is None:
        return name
    label = spec.label or name
    if len(label) > 40:  # lpips-hed's long label: keep the axis readable, the note says the rest
        label = f"{name} (not LPIPS)"
    better = "lower" if spec.lower_better else "higher"
    return f"{label}\n({better} is better{', ' + arrow if arrow else ''})"


def _metric_columns(summary, metrics=None) -> list[str]:
    cols = [c for c in summary.columns if c not in _META_COLUMNS and summary[c].notna().any()]
    if metrics is None:
        return cols
    missing = [m for m in metrics if m not in cols]
    if missing:
        raise InputError(f"no values for {missing} in the summary (present: {cols})")
    return list(metrics)


def _split(summary, method):
    rows = summary[summary["method"] == method]
    gm = rows["gamma_map"].fillna("") if "gamma_map" in rows else rows["gamma"] * 0
    scalar = rows[gm == ""].sort_values("gamma")
    return scalar, rows[gm != ""]


def gamma_curves_figure(summary, metrics=None, *, curve: str = "IFCSR", title: str | None = None,
                        note: str | None = None, ncols: int = 3):
    """One panel per metric against gamma, from `ifcsr.evaluation.sweep.summarize` output.

    The `curve` method is the thick black line; other methods with several gammas are lines
    (naive blends, DNI), methods with one gamma are markers, methods without gamma (bicubic,
    Real-ESRGAN) are horizontal dashed lines, and gamma maps are stars at their mean gamma.
    """
    import matplotlib

    matplotlib.use(matplotlib.get_backend())
    import matplotlib.pyplot as plt

    cols = _metric_columns(summary, metrics)
    if not cols:
        raise InputError("the summary holds no metric values")
    n = len(cols)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows + 0.9), squeeze=False)
    methods = list(dict.fromkeys(summary["method"]))
    handles = {}
    for k, m in enumerate(cols):
        ax = axes[k // ncols, k % ncols]
        for i, method in enumerate(methods):
            st = _style(method, i)
            scalar, maps = _split(summary, method)
            scalar = scalar[scalar[m].notna()]
            g = scalar["gamma"].to_numpy(float)
            if len(g) and np.isnan(g).all():
                h = ax.axhline(float(scalar[m].mean()), color=st["color"], ls="--", lw=1.2, label=method)
            elif len(g) > 1:
                kw = {k_: v for k_, v in st.items() if k_ in ("color", "marker", "lw", "ls", "zorder")}
                h, = ax.plot(g, scalar[m], ms=st.get("ms", 3), label=method, **kw)
            elif len(g) == 1:
                h = ax.scatter(g, scalar[m], color=st["color"], marker=st["marker"], s=55, zorder=6,
                               edgecolor="white", label=method)
            else:
                h = None
            if h is not None:
                handles.setdefault(method, h)
            for j, r in enumerate(maps.to_dict("records")):
                if pd_notna(r[m]):
                    lab = f"{method}, gamma map '{r['gamma_map']}'"
                    hm = ax.scatter([r["gamma"]], [r[m]], marker=_MAP_MARKERS[j % len(_MAP_MARKERS)], s=120, color=st["color"],
                                    edgecolor="black", lw=0.5, zorder=7, label=lab)
                    handles.setdefault(lab, hm)
        ax.set_xlabel("gamma (0 = fidelity, 1 = realism)", fontsize=8)
        ax.set_ylabel(_metric_label(m), fontsize=8)
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for k in range(n, nrows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    _legend_below(fig, list(handles.values()), list(handles.keys()), title=title, note=note)
    return fig


def _legend_below(fig, handles, labels, *, title=None, note=None, ncol=3):
    """Legend in rows under the panels, the note under it, the title on top; no overlaps."""
    h_in = fig.get_size_inches()[1]
    rows = -(-len(labels) // ncol) if labels else 0
    note_h = 0.42 if note else 0.0
    legend_h = 0.19 * rows + (0.1 if rows else 0)
    bottom = (note_h + legend_h) / h_in
    top = 1 - (0.4 / h_in if title else 0.02)
    if labels:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, note_h / h_in), ncol=ncol,
                   fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / h_in, va="top")
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=6.5, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, bottom, 1, top))


def pd_notna(v) -> bool:
    try:
        return v is not None and np.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def perception_distortion_figure(summary, x: str, y: str, *, curve: str = "IFCSR",
                                 annotate=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), title: str | None = None,
                                 note: str | None = None, zoom: bool | None = None):
    """The perception-distortion plane (Blau & Michaeli, CVPR 2018): x is a distortion metric
    (PSNR, LPIPS), y a perception metric (NIQE, MUSIQ). Axes are oriented so that better is
    towards the bottom left on both. The `curve` method is drawn with gamma marked along it;
    other gamma-swept methods are thin curves with their ends marked; single methods are
    labelled markers; gamma maps are stars.

    zoom: add a second panel framing the gamma-swept curves only (default: when a single
    point lies far outside them, which squeezes the curves into a corner of the full view).
    """
    import matplotlib

    matplotlib.use(matplotlib.get_backend())
    import matplotlib.pyplot as plt

    from ifcsr.evaluation.metrics import REGISTRY

    for m in (x, y):
        if m not in summary.columns or not summary[m].notna().any():
            raise InputError(f"no values for {m!r} in the summary")
    methods = list(dict.fromkeys(summary["method"]))
    ann = [float(a) for a in annotate]
    swept = summary[summary["gamma"].notna() & summary[x].notna() & summary[y].notna()]
    allp = summary[summary[x].notna() & summary[y].notna()]

    def span(df, col):
        lo, hi = float(df[col].min()), float(df[col].max())
        return lo, hi, (hi - lo) or abs(hi) * 0.01 or 1.0

    if zoom is None and len(swept):
        (_, _, sx), (_, _, sy) = span(swept, x), span(swept, y)
        (_, _, ax_), (_, _, ay) = span(allp, x), span(allp, y)
        zoom = ax_ > 3 * sx or ay > 3 * sy
    ncol = 2 if zoom else 1
    fig, axes = plt.subplots(1, ncol, figsize=(7.4 * ncol - (1.6 if zoom else 0), 6.6), squeeze=False)
    axes = axes[0]

    def draw(ax, small: bool):
        for i, method in enumerate(methods):
            st = _style(method, i)
            scalar, maps = _split(summary, method)
            scalar = scalar[scalar[x].notna() & scalar[y].notna()]
            g = scalar["gamma"].to_numpy(float)
            if len(g) > 1 and not np.isnan(g).all():
                main = method == curve
                ax.plot(scalar[x], scalar[y], color=st["color"], ls=st.get("ls", "-"), lw=2.2 if main else 1.2,
                        marker=st["marker"], ms=3.5 if main else 3, label=method, zorder=5 if main else 3,
                        alpha=1 if main else 0.85)
                for r in scalar.to_dict("records"):
                    show = (main and any(abs(r["gamma"] - a) < 1e-6 for a in ann)) or (
                        not main and (abs(r["gamma"]) < 1e-6 or abs(r["gamma"] - 1) < 1e-6))
                    if show and not (small and not main):
                        ax.annotate(f"γ={r['gamma']:g}", (r[x], r[y]), textcoords="offset points",
                                    xytext=(5, 4) if main else (4, -9), fontsize=7.5 if main else 6.5,
                                    color=st["color"], zorder=8)
            elif len(g):
                ax.scatter(scalar[x], scalar[y], color=st["color"], marker=st["marker"], s=80, zorder=6,
                           edgecolor="black", lw=0.6, label=method)
            for j, r in enumerate(maps.to_dict("records")):
                if pd_notna(r[x]) and pd_notna(r[y]):
                    ax.scatter([r[x]], [r[y]], marker=_MAP_MARKERS[j % len(_MAP_MARKERS)], s=150, color=st["color"],
                               edgecolor="black", lw=0.5, zorder=7,
                               label=f"{method}, gamma map '{r['gamma_map']}' (mean γ={r['gamma']:.2f})")

    for k, ax in enumerate(axes):
        zoomed = k == 1
        draw(ax, small=not zoomed and bool(zoom))
        if zoomed:
            (x0, x1, sx), (y0, y1, sy) = span(swept, x), span(swept, y)
            ax.set_xlim(x0 - 0.12 * sx, x1 + 0.12 * sx)
            ax.set_ylim(y0 - 0.12 * sy, y1 + 0.12 * sy)
            ax.set_title("zoom on the gamma-swept curves", fontsize=8.5)
        elif zoom:
            ax.set_title("all methods", fontsize=8.5)
        if not REGISTRY[x].lower_better:
            ax.invert_xaxis()
        if not REGISTRY[y].lower_better:
            ax.invert_yaxis()
        ax.set_xlabel(_metric_label(x, arrow="better to the left"), fontsize=8.5)
        ax.set_ylabel(_metric_label(y, arrow="better downwards"), fontsize=8.5)
        if REGISTRY[y].kind == "FR":
            ax.text(0.99, 0.99, f"y = {y} is a full-reference distance,\nnot a no-reference perception index",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7, color="tab:red")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels, title=title, note=note, ncol=3 if zoom else 2)
    return fig


def best_gamma_figure(best, *, bins=None, title: str | None = None, note: str | None = None):
    """Histogram of the best gamma per image, one panel per metric, from
    `ifcsr.evaluation.benchmark.best_gamma_per_image` (columns image, metric, best_gamma)."""
    import matplotlib

    matplotlib.use(matplotlib.get_backend())
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(best["metric"]))
    if not metrics:
        raise ValueError("no rows to plot")
    bins = np.linspace(-0.025, 1.025, 22) if bins is None else bins  # one bin per 0.05 step
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        g = best[best["metric"] == m]["best_gamma"].to_numpy(float)
        ax.hist(g, bins=bins, color="tab:blue", edgecolor="black", lw=0.5)
        ax.set_xlabel(f"best γ per image for {_metric_label(m).splitlines()[0]}", fontsize=8.5)
        ax.set_ylabel("images")
        ax.set_title(f"{m}: {len(g)} images, median γ {np.median(g):.2f}", fontsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="dimgray", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    return fig


def dp_toy_figure(problem, *, gammas=None, real=None, real_label: str = "", note: str | None = None):
    """Notebook 07: the Gaussian toy's distortion-perception plane (ifcsr.evaluation.theory), and, with
    `real` (a frame with columns gamma, distortion, perception), a real model's curve beside it
    on the same axes style: distortion on x, perception on y, both lower-better.

    Left: the closed-form optimal curve D(P) (Freirich et al. 2021), the image-space blend
    (1 - gamma) x* + gamma x_0 on it, and two naive alternatives above it."""
    import matplotlib.pyplot as plt

    gammas = np.linspace(0, 1, 11) if gammas is None else np.asarray(gammas, float)
    K = problem.mmse()
    d_star, w = problem.point(K)
    p_grid = np.linspace(0, w * 1.05, 200)
    ncols = 1 if real is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(problem.optimal_curve(p_grid), p_grid, color="0.2", lw=2, label="optimal D(P), closed form")
    g, d, p = problem.blend_curve(gammas).T
    ax.plot(d, p, "o", color="tab:red", ms=6, label="blend (1-γ) x* + γ x₀")
    for gi, di, pi in zip(g, d, p):
        if gi in (0.0, 0.5, 1.0):
            ax.annotate(f"γ={gi:g}", (di, pi), textcoords="offset points", xytext=(6, 4), fontsize=8)
    _, d2, p2 = problem.posterior_sample_blend_curve(gammas).T
    ax.plot(d2, p2, "s--", color="tab:blue", ms=4, label="blend towards a posterior sample")
    lams = np.geomspace(problem.noise**2, problem.noise**2 * 0.05, 25)
    _, d3, p3 = problem.tikhonov_curve(lams).T
    ax.plot(d3, p3, "^:", color="tab:green", ms=4, label="Tikhonov λ (a parameter, like DNI)")
    ax.set_xlabel("distortion: MSE (lower better)")
    ax.set_ylabel("perception: W2 to the signal law (lower better)")
    ax.set_title("Gaussian toy (exact)")
    ax.set_xlim(d_star - 0.02, max(d2.max(), problem.distortion(problem.perfect_perception())) + 0.02)
    ax.set_ylim(-0.02, w * 1.15)
    ax.legend(fontsize=8, loc="upper right")
    if real is not None:
        ax = axes[0, 1]
        ax.plot(real["distortion"], real["perception"], "o-", color="tab:red", ms=4)
        for _, row in real.iterrows():
            if row["gamma"] in (0.0, 0.5, 1.0):
                ax.annotate(f"γ={row['gamma']:g}", (row["distortion"], row["perception"]),
                            textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_xlabel("distortion: MSE to HR (lower better)")
        ax.set_ylabel("perception: NIQE (lower better)")
        ax.set_title(real_label or "real model")
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    return fig


def risk_figure(endpoints, *, mean_gamma: float = 0.5, title: str | None = None):
    """Where realism is risky, for one image: the scalar blend at `mean_gamma`, the ghosting-risk
    map of the endpoints (``ifcsr.risk.ghosting_risk``), the risk-aware gamma map of the same
    mean, and the risk-aware blend. endpoints: an ``Endpoints`` of one image."""
    import matplotlib.pyplot as plt

    from ifcsr.risk import risk_aware_gamma

    risk = endpoints.ghosting_risk()
    gmap = risk_aware_gamma(risk, mean_gamma)
    panels = [(f"scalar gamma {mean_gamma:g}", _img(endpoints.blend(mean_gamma)), None),
              (f"ghosting risk (mean {float(risk.mean()):.3f})", risk[0, 0].numpy(), "magma"),
              (f"risk-aware gamma map, mean {float(gmap.double().mean()):.3f}", gmap[0, 0].numpy(), "viridis"),
              ("risk-aware blend", _img(endpoints.blend(gmap)), None)]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, (label, im, cmap) in zip(axes, panels):
        shown = ax.imshow(im, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
        if cmap:
            fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figures(summary, out, *, prefix: str = "", note: str = "", x=None, y=None,
                 metrics=None, curve: str = "IFCSR", title_suffix: str = "") -> dict:
    """gamma_curves.png (each metric against gamma) and perception_distortion.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ifcsr.evaluation.sweep import pick_axes

    out = Path(out)
    files = {}
    fig = gamma_curves_figure(summary, metrics, curve=curve, note=note,
                              title="Metrics against gamma" + title_suffix)
    files["gamma_curves"] = out / f"{prefix}gamma_curves.png"
    fig.savefig(files["gamma_curves"], dpi=120)
    plt.close(fig)
    x, y = pick_axes(summary, x, y)
    fig = perception_distortion_figure(summary, x, y, curve=curve, note=note,
                                       title="Perception-distortion plane" + title_suffix)
    files["perception_distortion"] = out / f"{prefix}perception_distortion.png"
    fig.savefig(files["perception_distortion"], dpi=120)
    plt.close(fig)
    return files
