# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Solutions · 02 The method
#
# Worked solutions to the exercises of `notebooks/02_method`. Teachers: hand out the
# notebook without this folder (`python notebooks/strip_solutions.py OUT`).

# %%
import os
from dataclasses import replace

import pandas as pd
import torch
from scipy.optimize import brentq

from ifcsr.blend import GammaError
from ifcsr.data import pairs_from_samples
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.losses import build_feature_net, build_loss, depth_weights
from ifcsr.models import IFCSR
from ifcsr.widgets import depth_weights_figure
from ifcsr.widgets.figures import endpoints_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
PHOTO = "chelsea"
CROP = 128 if SMALL else 256

# %% [markdown]
# ## 1. The weights at k = 3 and k = 20, and the k where layer 0 holds 99% of w_dec

# %%
fig = depth_weights_figure(ks=(3, 20))


def layer0_share(k: float, L: int = 5) -> float:
    w = depth_weights("dec", k, L)
    return w[0] / sum(w)


for k in (1, 3, 7, 20):
    print(f"k = {k:>2}: layer 0 holds {100 * layer0_share(k):.1f}% of w_dec")
k99 = brentq(lambda k: layer0_share(k) - 0.99, 1.0001, 1e4)
print(f"layer 0 holds 99% of w_dec from k = {k99:.2f} on")

# %% [markdown]
# The share of layer 0 is $k^L / \sum_{l=0}^{L} k^{L-l} = k^L (k-1)/(k^{L+1}-1)$, which is
# about $1 - 1/k$ for large $k$: it reaches 99% at $k \approx 100$. At the paper's $k = 7$
# layer 0 already holds 86% of $w^{dec}$ (the pixel MSE dominates stage 1) and layer 5
# holds 86% of $w^{inc}$; at $k = 20$ each stage is almost a single-layer loss. Larger $k$
# pushes the two endpoints further apart (a wider range for $\gamma$), at the cost of
# ignoring the middle layers.

# %% [markdown]
# ## 2. Only layers 0, 3 and 5
#
# The per-layer distances $D(x, x_H, l)$ do not depend on the weights; only the weighted
# sums $L_s$ change. We rebuild the endpoints and the two losses with
# `LossConfig(layers=(0, 3, 5))` (via `replace` on the checkpoint's loss config).

# %%
model = IFCSR.load(CHECKPOINT)
pair = pairs_from_samples([PHOTO], crop=CROP)[0]
lr, hr = pair["lr"][None], pair["hr"][None]
ends = model.infer(lr)
outputs = {"bicubic": model.prepare(lr), "fidelity (gamma 0)": ends.fidelity, "blend (gamma 0.5)": ends.blend(0.5),
           "realism (gamma 1)": ends.realism}
features = build_feature_net(model.config.loss.feature_net, seed=model.config.loss.random_seed)
rows = {}
for name, cfg in (("all layers", model.config.loss), ("layers 0, 3, 5", replace(model.config.loss, layers=(0, 3, 5)))):
    ld, li = build_loss("dec", cfg, features), build_loss("inc", cfg, features)
    with torch.no_grad():
        for out, x in outputs.items():
            d = ld.per_layer(x, hr)[0]
            rows[(name, out)] = {"MSE": d[0].item(), "layer 3": d[3].item(), "layer 5": d[5].item(),
                                 "L_s with w_dec": ld(x, hr).item(), "L_s with w_inc": li(x, hr).item()}
table = pd.DataFrame(rows).T
print(table.to_string(float_format=lambda v: f"{v:.4g}"))
for name in ("all layers", "layers 0, 3, 5"):
    t = table.loc[name]
    print(f"{name}: w_dec prefers {t['L_s with w_dec'].idxmin()}, w_inc prefers {t['L_s with w_inc'].idxmin()}")

# %% [markdown]
# With layers 0, 3 and 5 the normalised weights become, for $w^{dec}$,
# $[16807, 49, 1]/16857$: layer 0 (MSE) is 99.7% of the loss, so stage 1 still prefers the
# output with the lowest pixel error (the fidelity endpoint). For $w^{inc}$ they become
# $[1/7, 49, 2401]/2450.1$: layer 5 is 98% of it, so the stage 2 loss ranks the outputs by
# their deepest-layer distance alone. Dropping layers 1, 2 and 4 leaves both rankings as
# they were: with $k = 7$ each schedule was already dominated by its extreme layer. What it
# changes is the *scale* of $L_s$ (the normalisation uses the remaining weights), so losses
# of runs with different layer sets are not comparable.
#
# Read the printed preferences honestly: with the bundled tiny checkpoint (on the 128-pixel
# crop of small mode) $w^{inc}$ prefers the *bicubic input* to the realism endpoint. Its
# realism branch, trained for minutes on four photos, sharpens without getting closer to HR
# in the deepest HED-VGG features: the paper's claim that each stage's loss prefers its own
# branch is a property of a well-trained model, not of the formula.

# %% [markdown]
# ## 3. gamma = 1.5: past the realism endpoint

# %%
try:
    ends.blend(1.5)
except GammaError as err:
    print(f"refused by default: {err}")
x15 = ends.blend(1.5, extrapolate=True)  # clipped to [0, 1]
raw = ends.fidelity + 1.5 * (ends.realism - ends.fidelity)  # the formula before the clip
clipped = ((raw < 0) | (raw > 1)).float().mean().item()
for g, x in ((0.0, ends.fidelity), (1.0, ends.realism), (1.5, x15)):
    print(f"gamma {g:3.1f}: PSNR-Y {psnr_y(x, hr).item():.2f} dB")
print(f"gamma 1.5: {100 * clipped:.2f}% of the values fall outside [0, 1] and are clipped")
fig = endpoints_figure({"gamma 0": ends.fidelity, "gamma 1": ends.realism, "gamma 1.5 (extrapolated)": x15,
                        "HR": hr}, title="going past the realism endpoint")

# %% [markdown]
# $\gamma = 1.5$ is $f_\phi + 0.5\,(f_\phi - f_\theta)$: the realism branch's change is
# amplified, like unsharp masking. Edges get halos, the sharpening turns into ringing and
# noise, PSNR drops further, and some values leave $[0, 1]$ and must be clipped. The
# library refuses it by default for two reasons: stage 2 trained $\phi$ only on blends with
# $\gamma \in [0, 1]$, so nothing in training constrains what lies beyond; and clipping
# silently changes the image (DESIGN: never silently "fix" input). `extrapolate=True` says
# you know you leave the trained range.
