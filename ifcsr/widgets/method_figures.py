"""Static figures of the method and of training (matplotlib): depth weights, per-layer distances,
loss curves, metric vs gamma, ablations. Imports numpy, pandas, matplotlib (lazily), ifcsr core and widgets.figures."""

from __future__ import annotations

import numpy as np

from ifcsr.errors import InputError
from ifcsr.widgets.curves import _lower_better, _metric_label


def _plt():
    import matplotlib.pyplot as plt

    return plt


def depth_weights_figure(ks=(1, 2, 7), num_layers: int = 5):
    """Normalised w_dec and w_inc (log scale) for each k, and the depth centre of mass of both
    against k: at k = 1 the two objectives coincide, so the blend range collapses."""
    from ifcsr.losses import depth_weights

    plt = _plt()
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(3.1 * (len(ks) + 1), 2.9))
    layers = np.arange(num_layers + 1)
    for ax, k in zip(axes, ks):
        wd = np.array(depth_weights("dec", k, num_layers))
        wi = np.array(depth_weights("inc", k, num_layers))
        ax.bar(layers - 0.2, wd / wd.sum(), 0.4, label="w_dec (stage 1, fidelity)", color="tab:blue")
        ax.bar(layers + 0.2, wi / wi.sum(), 0.4, label="w_inc (stage 2, realism)", color="tab:red")
        ax.set_yscale("log")
        ax.set_ylim(1e-6, 1.5)
        ax.set_xticks(layers, ["MSE"] + [f"l{i}" for i in layers[1:]], fontsize=7)
        ax.set_title(f"k = {k:g}", fontsize=9)
        ax.set_ylabel("w_l / sum w (log)", fontsize=8)
    axes[0].legend(fontsize=6, loc="lower center")
    ax = axes[-1]
    kk = np.linspace(1, 10, 91)
    for sched, color in (("dec", "tab:blue"), ("inc", "tab:red")):
        com = [np.dot(layers, w) / np.sum(w) for w in (np.array(depth_weights(sched, k, num_layers)) for k in kk)]
        ax.plot(kk, com, color=color, label=f"w_{sched}")
    ax.axvline(1, color="0.5", ls=":")
    ax.set_xlabel("k", fontsize=8)
    ax.set_ylabel("depth centre of mass  sum l w_l / sum w", fontsize=7)
    ax.set_title("the two objectives part as k grows", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_layer_figure(table, *, title: str = "per-layer distance to HR", note: str | None = None):
    """Grouped bars: rows of `table` (a DataFrame indexed by output name, one column per layer)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    n = len(table.index)
    width = 0.8 / n
    cols = list(table.columns)
    x = np.arange(len(cols))
    colors = {"fidelity": "tab:blue", "realism": "tab:red", "bicubic": "0.6"}
    for i, name in enumerate(table.index):
        ax.bar(x + (i - (n - 1) / 2) * width, table.loc[name].to_numpy(float), width, label=str(name),
               color=colors.get(str(name).split(" ")[0]))
    ax.set_xticks(x, cols, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("distance (log)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6.5, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    return fig


def loss_curves_figure(history, *, smooth: int = 5, title: str = "training loss"):
    """Loss against step for every stage (and stage 0's parts) in a Trainer.history."""
    import pandas as pd

    plt = _plt()
    df = pd.DataFrame(history)
    if df.empty or "loss" not in df.columns:
        raise InputError("history holds no loss values")
    if "part" not in df.columns:
        df["part"] = ""
    df["part"] = df["part"].fillna("")
    groups = list(df.groupby(["stage", "part"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.7), squeeze=False)
    names = {1: "stage 1: fidelity (w_dec)", 2: "stage 2: realism on the blend (w_inc)"}
    for ax, ((stage, part), g) in zip(axes[0], groups):
        if len(g) >= smooth > 1:
            ax.plot(g["step"], g["loss"], color="0.75", lw=0.8, label="per step")
            ax.plot(g["step"], g["loss"].rolling(smooth, min_periods=1).mean(), color="tab:blue", lw=1.4,
                    label=f"mean of {smooth}")
            ax.legend(fontsize=6)
        else:
            ax.plot(g["step"], g["loss"], color="tab:blue", lw=1.2, marker="." if len(g) < 30 else None)
        ax.set_title(names.get(stage, f"stage {stage}: {part}"), fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        if (g["loss"] > 0).all() and g["loss"].max() / max(g["loss"].min(), 1e-12) > 20:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def metric_vs_gamma_figure(frames: dict, metrics, *, note: str | None = None):
    """One panel per metric, one line per variant. frames: {label: sweep summary (gamma, metrics)}."""
    plt = _plt()
    metrics = list(metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 2.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for label, df in frames.items():
            d = df[df["gamma_map"].fillna("") == ""] if "gamma_map" in df.columns else df
            d = d.dropna(subset=["gamma"]).sort_values("gamma")
            if m in d.columns:
                ax.plot(d["gamma"], d[m], marker=".", label=label)
        ax.set_xlabel("gamma", fontsize=8)
        ax.set_title(_metric_label(m), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6.5, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.07 if note else 0, 1, 1))
    return fig


def ablation_figure(endpoints: dict, gammas=(0.0, 0.5, 1.0), *, crop=None, title: str | None = None):
    """The ablations side by side. endpoints: {variant: Endpoints}, all of the same image.

    One row per variant: the blend at gamma 0.5 with the crop outlined, the zoomed crop at
    each gamma, and |realism - fidelity| (the range gamma controls) on one colour scale for
    all rows, so a collapsed range reads as dark."""
    from matplotlib.patches import Rectangle

    from ifcsr.data.images import to_uint8
    from ifcsr.widgets.figures import default_crop

    plt = _plt()
    names = list(endpoints)
    first = endpoints[names[0]].fidelity
    H, W = first.shape[-2:]
    top, left, size = crop or default_crop(H, W)
    diffs = {n: (e.realism - e.fidelity).abs().mean(dim=1)[0].cpu().numpy() for n, e in endpoints.items()}
    vmax = max(float(np.quantile(d, 0.99)) for d in diffs.values()) or 1e-6
    ncols = len(gammas) + 2
    fig, axes = plt.subplots(len(names), ncols, figsize=(2.2 * ncols, 2.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        e = endpoints[name]
        if e.fidelity.shape != first.shape:
            raise InputError(f"{name}: endpoints of another size than {names[0]}'s")
        mid = to_uint8(e.blend(0.5))
        axes[r, 0].imshow(mid)
        axes[r, 0].add_patch(Rectangle((left, top), size, size, fill=False, ec="yellow", lw=1))
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c, g in enumerate(gammas, start=1):
            x = to_uint8(e.blend(float(g)))
            axes[r, c].imshow(x[top : top + size, left : left + size], interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(f"gamma {g:g} (crop)", fontsize=8)
        im = axes[r, -1].imshow(diffs[name], cmap="magma", vmin=0, vmax=vmax)
        axes[r, -1].set_xlabel(f"mean {255 * float(diffs[name].mean()):.1f} grey levels", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("gamma 0.5", fontsize=8)
    axes[0, -1].set_title("|realism - fidelity|", fontsize=8)
    fig.colorbar(im, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def realism_ablation_figure(result: dict, *, crop=None, x: str = "psnr", y: str = "niqe", title: str | None = None):
    """The realism endpoint with and without the adversarial term (`ifcsr.evaluation.baselines.realism_ablation`).

    Left: the same zoomed crop of bicubic, the fidelity endpoint, each variant's realism
    endpoint and HR (nearest-neighbour zoom: every pixel visible). Right: the
    perception-distortion plane (x: a distortion, y: a no-reference index), each variant's
    blend curve from gamma 0 (small marker) to 1 (large marker), bicubic, and HR's own score
    on y as a dashed line: the value a natural photo gets."""
    from ifcsr.data.images import to_uint8
    from ifcsr.widgets.figures import default_crop

    plt = _plt()
    ends, pts = result["endpoints"], result["points"]
    labels = list(ends)
    first = ends[labels[0]]
    H, W = first.fidelity.shape[-2:]
    top, left, size = crop or default_crop(H, W, max(24, min(H, W) // 5))
    panels = {"bicubic": result["bicubic"], f"fidelity ({labels[0]})": first.fidelity}
    panels.update({f"realism: {label}": e.realism for label, e in ends.items()})
    panels["HR"] = result["hr"]
    n = len(panels)
    fig = plt.figure(figsize=(2.3 * n + 4.6, 3.2))
    grid = fig.add_gridspec(1, n + 2, width_ratios=[1] * n + [0.15, 2.0])
    for i, (label, img) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(to_uint8(img)[top:top + size, left:left + size], interpolation="nearest")
        ax.set_title(label.replace(": ", ":\n"), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[0, n + 1])
    colors = iter(("tab:red", "black", "tab:purple", "tab:cyan", "tab:olive"))
    for label in labels:
        c = pts[pts["method"] == label].sort_values("gamma")
        color = next(colors)
        ax.plot(c[x], c[y], "-", color=color, lw=1.5, label=label)
        ax.scatter(c[x], c[y], s=8 + 40 * c["gamma"].to_numpy(float), color=color, zorder=3)
        ax.annotate("gamma 1", (c[x].iloc[-1], c[y].iloc[-1]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    bic = pts[pts["method"] == "bicubic"]
    ax.scatter(bic[x], bic[y], marker="s", color="tab:gray", label="bicubic", zorder=3)
    hr = pts[pts["method"] == "HR"]
    if len(hr) and y in hr and hr[y].notna().all():
        ax.axhline(float(hr[y].iloc[0]), color="tab:green", ls="--", lw=1, label=f"HR's {y}")
    ax.set_xlabel(_metric_label(x), fontsize=8)
    ax.set_ylabel(_metric_label(y), fontsize=8)
    if not _lower_better(x):  # better to the left, as in Blau & Michaeli's plane
        ax.invert_xaxis()
    if not _lower_better(y):
        ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title("perception-distortion plane (better: down, left)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
