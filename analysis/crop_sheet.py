"""Crop sheet: the same crop of HR, fidelity, realism, bicubic (and Real-ESRGAN), 3x zoom (nearest).

Used by analysis/realism_check.py --crops. Each image's crop is the `size` x `size` HR window
with the most luminance detail (largest HR gradient energy), so the sheet shows texture and edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

COLUMNS = ("hr", "fidelity", "realism", "bicubic", "realesrgan")
TITLES = {"hr": "HR", "fidelity": "fidelity (gamma 0)", "realism": "realism (gamma 1)", "bicubic": "bicubic",
          "realesrgan": "Real-ESRGAN x4plus"}


def detail_window(hr: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window of hr (1, 3, H, W) with the most gradient energy."""
    y = hr[0].mean(0)
    gy, gx = torch.gradient(y)
    e = (gx**2 + gy**2)[None, None]
    pooled = torch.nn.functional.avg_pool2d(e, size, stride=max(size // 4, 1))
    i = int(pooled.flatten().argmax())
    w = pooled.shape[-1]
    stride = max(size // 4, 1)
    return (i // w) * stride, (i % w) * stride


def write_crop_sheet(images: dict, path, *, size: int = 64, zoom: int = 3, title: str = "", columns=COLUMNS,
                     titles=None) -> Path:
    """images: name -> {"hr", "fidelity", "realism", "bicubic"[, "realesrgan"]} tensors (1, 3, H, W);
    columns / titles: other keys and their headings (a column missing from any image is left out)."""
    titles = {**TITLES, **(titles or {})}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in columns if all(c in v for v in images.values())]
    fig, axes = plt.subplots(len(images), len(cols), figsize=(2.2 * len(cols), 2.35 * len(images)), squeeze=False)
    for r, (name, outs) in enumerate(images.items()):
        top, left = detail_window(outs["hr"], size)
        for c, col in enumerate(cols):
            crop = outs[col][0, :, top: top + size, left: left + size].clamp(0, 1)
            a = (crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            a = a.repeat(zoom, 0).repeat(zoom, 1)  # nearest-neighbour zoom: pixels stay pixels
            ax = axes[r, c]
            ax.imshow(a, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[col], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{name}\n({left},{top}) {size}px", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
