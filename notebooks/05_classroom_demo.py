# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Classroom demo: gamma maps and the paper's ablations
#
# **What you will learn**
#
# - that $\gamma$ need not be one number: a **per-pixel gamma map** keeps fidelity where
#   faithfulness matters (faces, text) and realism where texture matters, still with no
#   network call;
# - how to make such maps: detected (a face detector that ships with scikit-image), computed
#   (a texture measure), or painted with the explorer's brush;
# - the paper's two ablations side by side: **single-stage** (the realism network trained
#   alone, then blended) against **two-stage** (trained on the blend), and $k = 1$ against
#   $k = 7$;
# - what a **texture term** adds to the realism endpoint (not in the paper: its realism
#   comes from Stable Diffusion's prior, which the tiny backbone lacks).

# %%
import os

import pandas as pd

from ifcsr.data import BicubicDegradation, load_sample, pairs_from_samples
from ifcsr.data.images import to_tensor
from ifcsr.evaluation.ablations import ablation_or_train
from ifcsr.evaluation.baselines import bicubic_upscale, realism_ablation, stage2_label
from ifcsr.evaluation.gamma_maps import GammaMap
from ifcsr.evaluation.sweep import sweep
from ifcsr.models import IFCSR
from ifcsr.widgets import (
    BlendExplorer,
    ablation_figure,
    colorize_map,
    face_mask,
    gamma_from_mask,
    metric_vs_gamma_figure,
    realism_ablation_figure,
    texture_mask,
)
from ifcsr.widgets.figures import endpoints_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
# The ablation checkpoints come from analysis/checkpoints (or $IFCSR_ABLATIONS); a missing one is trained:
ABLATION_STEPS = 2 if SMALL else None  # when one must be trained; None: the recipe's (~10 min per stage on a CPU)
GAMMA_FACE, GAMMA_ELSEWHERE = 0.0, 0.8

# %% [markdown]
# ## 1. Fidelity on the face, realism elsewhere
#
# The astronaut's face is found by scikit-image's LBP face cascade. (The astronaut is one
# of the four photos the tiny model trained on; try your own portrait in the exercises.)

# %%
model = IFCSR.load(CHECKPOINT)
hr = to_tensor(load_sample("astronaut"))
if SMALL:
    hr = BicubicDegradation(4)(hr)  # 512 -> 128 pixels, to keep CI fast
lr = BicubicDegradation(4)(hr)
ends = model.infer(lr)
mask = face_mask(bicubic_upscale(lr))  # found on the input, before any network ran
gamma_map = gamma_from_mask(mask, GAMMA_FACE, GAMMA_ELSEWHERE)  # (H, W) in [0, 1]
fig = endpoints_figure({"gamma map (yellow = 1)": colorize_map(gamma_map),
                        f"one gamma = {GAMMA_ELSEWHERE}": ends.blend(GAMMA_ELSEWHERE),
                        "gamma map": ends.blend(gamma_map), "HR": hr},
                       crop=None, title=f"face: gamma {GAMMA_FACE}, elsewhere {GAMMA_ELSEWHERE}")

# %% [markdown]
# The explorer in **gamma map** mode starts from the detected face: *gamma in mask* is the
# face's gamma, the main slider the rest. Move the zoomed crop and press *paint mask at
# crop* to add regions with the brush, or *erase at crop* to remove them.

# %%
explorer = BlendExplorer(ends.fidelity, ends.realism, hr=hr, mask=mask, gamma=GAMMA_ELSEWHERE,
                         gamma_in_mask=GAMMA_FACE, name="astronaut")
explorer.mode_buttons.value = "map"
explorer

# %% [markdown]
# ## 2. Realism on texture, fidelity on flat regions
#
# A held-out photo this time. The map is the local energy of the Laplacian of the fidelity
# image: high on fur and whiskers, low on the smooth background, where realism only adds
# noise.

# %%
pair = pairs_from_samples(["chelsea"], crop=128 if SMALL else None)[0]
cat = model.infer(pair["lr"][None])
texture = texture_mask(cat.fidelity)
fig = endpoints_figure({"texture map": colorize_map(texture), "gamma 0": cat.fidelity,
                        "gamma = texture map": cat.blend(texture), "gamma 1": cat.realism, "HR": pair["hr"]},
                       title="gamma follows texture")
scores = sweep(model, [pair], gammas=[0.0, round(float(texture.mean()), 2), 1.0],
               gamma_maps=[GammaMap("texture", texture)], metrics=["psnr", "niqe"], progress=False).summary
print(scores.round(3).to_string(index=False))

# %% [markdown]
# The map row sits at its mean gamma: compare it with the single gamma of the same mean.
# A texture-driven map can buy perception (lower NIQE) at a smaller PSNR cost than
# spreading the same amount of realism everywhere.

# %% [markdown]
# ## 3. The ablations: single-stage vs two-stage, k = 1 vs k = 7
#
# - **two-stage, k = 7**: the checkpoint above (the paper's recipe).
# - **single-stage**: same fidelity adapter, but the realism adapter is trained *alone* on
#   its own output with $w^{inc}$, never on the blend; the two are blended afterwards.
# - **k = 1**: the two-stage recipe with $w^{dec} = w^{inc}$ (plain MSE + LPIPS-style loss).
#
# The checkpoints come from `analysis/train_ablations.py`. Where they are missing or were
# trained on another backbone, they are trained here into `runs/ablations/` (in small mode
# for two steps: enough to run the code, not to see the effect; in full mode with the
# checkpoint's recipe, minutes each).

# %%
variants = {"two-stage, k=7": model}
for kind, label in (("single_stage", "single-stage, k=7"), ("k1", "two-stage, k=1")):
    variants[label] = ablation_or_train(kind, base=CHECKPOINT, steps=ABLATION_STEPS, progress=not SMALL)
pair = pairs_from_samples(["coffee"], crop=128 if SMALL else 256)[0]
endpoints = {label: m.infer(pair["lr"][None]) for label, m in variants.items()}
fig = ablation_figure(endpoints, gammas=(0.0, 0.5, 1.0))

# %% [markdown]
# The last column is $|f_\phi - f_\theta|$, the range that $\gamma$ controls. With $k = 1$
# both stages minimise the same loss and the two endpoints nearly coincide. The
# single-stage model's endpoints differ, but its middle blends are mixtures of two networks
# that never saw each other: look for ghosted edges at $\gamma = 0.5$.

# %%
curves = {label: sweep(m, [pair], gammas=[i / 10 for i in range(0, 11, 5 if SMALL else 1)],
                       metrics=["psnr", "lpips-hed"], progress=False, method=label).summary
          for label, m in variants.items()}
spread = pd.Series({label: 255 * (e.realism - e.fidelity).abs().mean().item() for label, e in endpoints.items()},
                   name="mean |realism - fidelity| (grey levels)")
print(spread.round(2).to_string())
fig = metric_vs_gamma_figure(curves, ["psnr", "lpips-hed"],
                             note="lpips-hed: HED-VGG16 features with equal channel weights, NOT LPIPS")

# %% [markdown]
# ## 4. Realism with and without a texture term
#
# The paper's realism comes from Stable Diffusion's generative prior, unlocked by weighting
# deep feature layers ($w^{inc}$). The tiny backbone was trained on four photos: it has no
# such prior, and deep-feature weighting alone only sharpens and streaks (NIQE rises with
# gamma). Two classic ways to get perceptual realism without a pretrained prior:
#
# - an **adversarial term** (SRGAN, ESRGAN: `LossConfig.adv_weight`). ESRGAN's interpolation
#   between a PSNR-oriented and a GAN-trained network is the ancestor of IFCSR's blend. With
#   four training photos its discriminator stayed near chance and the realism endpoint grew
#   halos and stripes (docs/bundled-checkpoint.md);
# - a **texture term** (EnhanceNet, Sajjadi et al. 2017: `LossConfig.texture_weight`): the
#   Gram matrices of VGG features over 32-px patches of the realism endpoint must match HR's.
#   It asks for HR's local texture *statistics*, not its exact pixels, so the network may
#   invent grain where it cannot know the positions. An **overshoot penalty**
#   (`LossConfig.overshoot_weight`) keeps that texture inside HR's local range: no halos.
#
# The tiny preset uses the second (stage 2 only; stage 1 never sees it), and clamps what halos
# remain at inference (`ModelConfig.antiring`: near edges, the realism endpoint stays inside
# the fidelity endpoint's local range). Two checkpoints with
# the same backbone and fidelity adapter: the bundled one, and `analysis/checkpoints/paper_l2`,
# whose stage 2 was rerun with the paper's $L_{2nd}$ alone. The labels say how each was
# trained. Left: the same crop, zoomed; right: where each blend curve lies on the
# perception-distortion plane. A realism endpoint that buys perception moves **down** (lower
# NIQE) as it moves right (lower PSNR); one that only sharpens moves up.

# %%
paper_l2 = ablation_or_train("paper_l2", base=CHECKPOINT, steps=ABLATION_STEPS, progress=not SMALL)
pair = pairs_from_samples(["chelsea"], crop=128 if SMALL else None)[0]
result = realism_ablation({f"paper_l2 ({stage2_label(paper_l2)})": paper_l2,
                           f"bundled ({stage2_label(model)})": model}, pair)
fig = realism_ablation_figure(result, title="chelsea (held out), x4 bicubic: realism endpoint without and with")
result["points"].round(3)

# %% [markdown]
# Read the crops before the numbers: NIQE rewards sharpness, and also ringing and stripes.
# A realism endpoint with a lower NIQE *and* texture that looks like the HR crop is a
# trade-off; one with halos or regular strokes is an artefact that the index likes.

# %% [markdown]
# ## Exercises
#
# 1. Paint a gamma map by hand in the explorer (mode *gamma map*, brush at the crop),
#    press *save image*, and compare its PSNR with the best single gamma.
# 2. Make a text image (`skimage.data.text()` is greyscale: stack it to RGB), build a mask
#    of the letters and keep them at gamma 0 while the background gets gamma 1.
# 3. In full mode, which ablation loses more PSNR at gamma 0.5 compared with its own
#    endpoints, and why does training on the blend prevent it?
#
# Worked solutions: `notebooks/solutions/05_classroom_demo.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. What is a per-pixel gamma map, and how many network calls does blending with one cost?
# 2. Name the three ways of making a gamma map that this notebook shows.
# 3. On which image is the face detector run, and why on that one?
# 4. What does the texture map measure, and why is realism on flat regions of little use?
# 5. A gamma-map row of the sweep sits at the map's mean gamma: which single gamma should you compare it with, and why?
# 6. What is the single-stage ablation, and what artefact should you look for at gamma 0.5?
# 7. What does the last column of the ablation figure show, and why is it small for $k = 1$?
