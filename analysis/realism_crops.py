"""A sheet of crops: what the realism endpoint adds under "vgg-hed", k = 7 against k = 1.

Rows: the held-out photos (chelsea, coffee), x4 bicubic LR. Columns: bicubic, fidelity
(k = 7), realism (k = 7, the paper's w_inc), realism (k = 1: equal layer weights, the plain
MSE + feature-distance loss), HR. Each panel is the same zoomed crop. Also prints each
realism endpoint's mean absolute difference from its fidelity endpoint and its gradient
energy relative to HR (sharpening shows up there), and writes them to realism_crops.csv next
to the figure.

    python analysis/realism_crops.py [--k7 CKPT] [--k1 CKPT] [--out analysis/results/realism_crops.png]

--k7 defaults to the bundled checkpoint; --k1 to analysis/checkpoints/k1 (made by
analysis/train_ablations.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F

from ifcsr.data import HELD_OUT, pairs_from_samples
from ifcsr.data.images import to_uint8
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR
from ifcsr.provenance import record

HERE = Path(__file__).parent
CROPS = {"chelsea": (120, 200, 96), "coffee": (150, 250, 96)}  # (top, left, size) in HR pixels


def grad_energy(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k7", default=None)
    p.add_argument("--k1", default=str(HERE / "checkpoints" / "k1"))
    p.add_argument("--out", default=str(HERE / "results" / "realism_crops.png"))
    args = p.parse_args(argv)
    m7 = IFCSR.load(args.k7)
    m1 = IFCSR.load(args.k1)
    cols = ["bicubic", "fidelity (k=7)", "realism (k=7, w_inc)", "realism (k=1, equal)", "HR"]
    pairs = pairs_from_samples(HELD_OUT)
    rows = []
    fig, axes = plt.subplots(len(pairs), len(cols), figsize=(2.4 * len(cols), 2.6 * len(pairs)), squeeze=False)
    for r, pair in enumerate(pairs):
        lr, hr, name = pair["lr"][None], pair["hr"][None], pair["name"]
        e7, e1 = m7.infer(lr), m1.infer(lr)
        bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        panels = [bic, e7.fidelity, e7.realism, e1.realism, hr]
        ref = grad_energy(hr)
        for label, x, e in (("k=7", e7.realism, e7), ("k=1", e1.realism, e1)):
            rows.append(dict(image=name, realism=label, mad_vs_fidelity=float((x - e.fidelity).abs().mean()),
                             grad_energy_realism=grad_energy(x) / ref, grad_energy_fidelity=grad_energy(e.fidelity) / ref,
                             grad_energy_bicubic=grad_energy(bic) / ref))
            m = rows[-1]
            print(f"{name} realism {label}: MAD vs its fidelity {m['mad_vs_fidelity']:.4f}; gradient energy "
                  f"{m['grad_energy_realism']:.2f} x HR (fidelity {m['grad_energy_fidelity']:.2f}, "
                  f"bicubic {m['grad_energy_bicubic']:.2f})")
        top, left, size = CROPS.get(name, (0, 0, 96))
        for c, (label, x) in enumerate(zip(cols, panels)):
            axes[r, c].imshow(to_uint8(x)[top:top + size, left:left + size], interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(label, fontsize=9)
        axes[r, 0].set_ylabel(name)
    fig.suptitle("Realism endpoint under vgg-hed features: paper's w_inc (k = 7) vs equal weights (k = 1)\n"
                 "tiny backbone, held-out photos, x4 bicubic LR", fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    table = Path(args.out).with_suffix(".csv")
    pd.DataFrame(rows).to_csv(table, index=False)
    record([args.out, table], inputs=[args.k7 or BUNDLED_CHECKPOINT, args.k1])
    print(f"wrote {args.out} and {table}")


if __name__ == "__main__":
    main()
