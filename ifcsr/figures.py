"""Static matplotlib figures (imported lazily: `import ifcsr` does not import matplotlib)."""

from __future__ import annotations

import numpy as np
import torch

from .images import to_uint8


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
        raise ValueError(f"panels must all have the same size, got {sorted(shapes)}")
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
