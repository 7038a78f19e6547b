# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The method: one formula, two stages, a depth-weighted loss
#
# **What you will learn**
#
# - the control formula $\hat x = (1-\gamma)\, f_\theta(x_L) + \gamma\, f_\phi(x_L)$ and why
#   it costs no inference once both endpoints exist;
# - the two training stages: stage 1 trains the fidelity adapter $\theta$ alone; stage 2
#   freezes it and trains the realism adapter $\phi$ **on the blend**, with a random
#   $\gamma \sim U(0, 1)$ per sample;
# - the depth-weighted feature loss
#   $L_s(x, y; w) = \sum_l w_l\, D(x, y, l) / \sum_j w_j$, with
#   $w^{dec}_l = k^{L-l}$ for stage 1 and $w^{inc}_l = k^{l-1}$ for stage 2;
# - what the per-layer distances of the fidelity and realism outputs look like, and why
#   $k = 1$ collapses the range that $\gamma$ can span.
#
# Layer 0 is the pixel MSE; layers 1..5 are feature distances of a VGG16 (per-layer LPIPS in
# the paper). The layer-0-is-MSE reading and the exponents come from secondary notes on the
# paper, so `k`, `L` and the layer list are configurable (`ifcsr.config.LossConfig`).

# %%
import inspect
import os
import time
from dataclasses import replace

import pandas as pd
import torch

from ifcsr.data import pairs_from_samples
from ifcsr.losses import build_feature_net, build_loss, depth_weights
from ifcsr.models import IFCSR
from ifcsr.train import Trainer
from ifcsr.widgets import depth_weights_figure, per_layer_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
PHOTO = "chelsea"
CROP = 128 if SMALL else 256

# %% [markdown]
# ## 1. The formula
#
# Infer both endpoints once, then check that a blend is exactly the formula, and time both.

# %%
model = IFCSR.load(CHECKPOINT)
pair = pairs_from_samples([PHOTO], crop=CROP)[0]
lr, hr = pair["lr"][None], pair["hr"][None]
t0 = time.perf_counter()
ends = model.infer(lr)  # f_theta(x_L) and f_phi(x_L): one encode, one UNet pass, one decode
t_infer = time.perf_counter() - t0
gamma = 0.3
t0 = time.perf_counter()
x_hat = ends.blend(gamma)
t_blend = time.perf_counter() - t0
by_hand = (1 - gamma) * ends.fidelity + gamma * ends.realism
print(f"max |blend - formula| = {(x_hat - by_hand).abs().max().item():.2e}")
print(f"inference {1000 * t_infer:.0f} ms, blend {1000 * t_blend:.2f} ms: "
      f"one inference pays for ~{t_infer / max(t_blend, 1e-6):.0f} slider moves")

# %% [markdown]
# ## 2. The two stages, in the library's own code
#
# Stage 1 minimises $L_s(f_\theta(x_L), x_H; w^{dec})$. Stage 2 keeps $\theta$ frozen and
# minimises $E_\gamma\, L_s((1-\gamma) f_\theta(x_L) + \gamma f_\phi(x_L), x_H; w^{inc})$.
# Training $\phi$ on the *blend* is what makes the intermediate gammas good images rather
# than ghosted mixtures of two unrelated networks (notebook 05 shows the ablation).

# %%
print(inspect.getsource(Trainer._stage_loss))

# %% [markdown]
# ## 3. The depth weights
#
# With $L = 5$ and $k = 7$: $w^{dec} = [16807, 2401, 343, 49, 7, 1]$ puts the weight on the
# shallow layers (pixels, edges: fidelity), $w^{inc} = [1/7, 1, 7, 49, 343, 2401]$ on the
# deep ones (textures, parts: realism). The right panel follows the *centre of mass* of
# each weight vector as $k$ grows: at $k = 1$ both sit at the middle.

# %%
table = pd.DataFrame({f"{s} k={k:g}": depth_weights(s, k, 5) for k in (1, 7) for s in ("dec", "inc")},
                     index=["0 (MSE)"] + [f"{l} (VGG)" for l in range(1, 6)])
print(table.to_string(float_format=lambda v: f"{v:.4g}"))
fig = depth_weights_figure(ks=(1, 2, 7))

# %% [markdown]
# ## 4. Per-layer distances of the two endpoints
#
# $D(x, x_H, l)$ for the bicubic input, the fidelity output, the middle blend and the
# realism output, measured with the feature network the checkpoint was trained with.
# A fidelity branch should win on the shallow layers, a realism branch on the deep ones;
# each stage's own loss $L_s$ should prefer its own branch.

# %%
cfg = model.config.loss
features = build_feature_net(cfg.feature_net, seed=cfg.random_seed)
loss_dec, loss_inc = build_loss("dec", cfg, features), build_loss("inc", cfg, features)
bicubic = model.prepare(lr)
outputs = {"bicubic": bicubic, "fidelity (gamma 0)": ends.fidelity, "blend (gamma 0.5)": ends.blend(0.5),
           "realism (gamma 1)": ends.realism}
with torch.no_grad():
    per_layer = pd.DataFrame({name: loss_dec.per_layer(x, hr)[0].tolist() for name, x in outputs.items()},
                             index=["MSE"] + [f"layer {l}" for l in range(1, cfg.num_layers + 1)]).T
    per_layer["L_s with w_dec"] = [loss_dec(x, hr).item() for x in outputs.values()]
    per_layer["L_s with w_inc"] = [loss_inc(x, hr).item() for x in outputs.values()]
print(per_layer.to_string(float_format=lambda v: f"{v:.4g}"))
fig = per_layer_figure(per_layer.iloc[:, : cfg.num_layers + 1],
                       title=f"D(x, HR, l) on {PHOTO} ({cfg.feature_net} features)",
                       note="vgg-hed: the VGG16 inside the HED edge detector, equal channel weights; "
                            "not the paper's LPIPS-VGG heads" if cfg.feature_net == "vgg-hed" else None)

# %% [markdown]
# ## 5. Why k = 1 collapses the range
#
# At $k = 1$, $w^{dec} = w^{inc}$: both stages minimise the *same* objective (plain
# MSE + LPIPS). Stage 2 then trains $\phi$ so that every blend with the already optimal
# $f_\theta$ minimises what $f_\theta$ already minimises, and the best it can do is
# $f_\phi \approx f_\theta$: the two endpoints meet and $\gamma$ has nothing left to
# control. The table shows the two objectives on the same outputs: at $k = 7$ they rank the
# outputs differently, at $k = 1$ they are one and the same number.

# %%
rows = {}
for k in (1.0, 7.0):
    kc = replace(cfg, k=k)
    ld, li = build_loss("dec", kc, features), build_loss("inc", kc, features)
    with torch.no_grad():
        for name, x in outputs.items():
            rows[(f"k={k:g}", name)] = {"L_1st (w_dec)": ld(x, hr).item(), "L_2nd (w_inc)": li(x, hr).item()}
print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.4g}"))
spread = (ends.realism - ends.fidelity).abs().mean().item()
print(f"range of control of this checkpoint (k={cfg.k:g}): mean |realism - fidelity| = {255 * spread:.2f} grey levels")

# %% [markdown]
# Notebook 05 trains a $k = 1$ model next to the $k = 7$ one and shows the collapse in
# pixels: its mean |realism - fidelity| is much smaller.

# %% [markdown]
# ## Exercises
#
# 1. Plot $w^{dec}$ and $w^{inc}$ for $k = 3$ and $k = 20$ (`depth_weights_figure(ks=(3, 20))`).
#    At which $k$ does layer 0 hold 99% of $w^{dec}$?
# 2. Restrict the loss to layers 0, 3 and 5 (`LossConfig(layers=(0, 3, 5))`) and recompute
#    the per-layer table. Which output does each stage loss now prefer?
# 3. Blend with $\gamma = 1.5$ (`ends.blend(1.5, extrapolate=True)`): what does going past
#    the realism endpoint look like, and why does the library refuse it by default?
#
# Worked solutions: `notebooks/solutions/02_method.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. What does stage 1 train, and with which depth weights? What does stage 2 train, and on which output?
# 2. Why is the realism adapter trained on the blend with a random gamma per sample, instead of on its own output?
# 3. Give $w^{dec}$ and $w^{inc}$ for $L = 5$, $k = 7$. Which layers does each emphasise, and what is layer 0?
# 4. Why does $k = 1$ collapse the range that gamma can span?
# 5. On which layers should a fidelity branch beat a realism branch in the per-layer table, and on which the reverse?
# 6. Which parts of the loss come from secondary notes on the paper, and how does the library let you change them?
# 7. How does section 1 check that `ends.blend(gamma)` is exactly the control formula?
