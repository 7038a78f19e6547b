# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Quickstart: super-resolve a photo, then slide gamma
#
# **What you will learn**
#
# - how to super-resolve a photo x4 with the checkpoint that ships inside `ifcsr`;
# - that IFCSR infers **two** images once, a *fidelity* one ($f_\theta$, close to the
#   original) and a *realism* one ($f_\phi$, sharper, more "natural");
# - that every other result is the pixel blend
#   $\hat x = (1-\gamma)\, f_\theta(x_L) + \gamma\, f_\phi(x_L)$, which costs no network call:
#   the live explorer below re-blends on every slider move in a few milliseconds.
#
# The bundled checkpoint is a *tiny* backbone (about 1.4M parameters) trained for minutes on
# four photos on a CPU (its realism adapter on seven). It shows the **mechanics** of IFCSR, not the paper's quality (which
# needs Stable Diffusion 2.1 and a day on an H100 per stage): its realism branch adds a fine,
# grain-like texture and crisper edges (a texture term the paper does not have stands in for
# Stable Diffusion's prior); it does not invent fur.

# %%
import os
import time

import torch

from ifcsr.data import pairs_from_samples
from ifcsr.evaluation.endpoint_cache import EndpointCache
from ifcsr.evaluation.sweep import describe_model, sweep
from ifcsr.models import IFCSR
from ifcsr.widgets import BlendExplorer
from ifcsr.widgets.figures import endpoints_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"  # CI: small images, few gammas
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
PHOTO = "chelsea"  # a held-out photo (chelsea or coffee): the model never saw it
CROP = 128 if SMALL else None  # None: the whole photo

# %% [markdown]
# ## Load the model and a low-resolution photo
#
# `pairs_from_samples` takes a photo that ships inside scikit-image and makes its x4 bicubic
# low-resolution (LR) version, so we also have the high-resolution (HR) original to compare
# with. To use your own LR image instead: `lr = ifcsr.data.images.load_image("my.png")` and
# `hr = None`.

# %%
model = IFCSR.load(CHECKPOINT)
print(describe_model(model))
pair = pairs_from_samples([PHOTO], crop=CROP)[0]
lr, hr = pair["lr"][None], pair["hr"][None]
print(f"LR {tuple(lr.shape[-2:])} -> HR {tuple(hr.shape[-2:])}")

# %% [markdown]
# ## Infer both endpoints, once
#
# One VAE encode, one UNet pass for both adapters (batched), one decode. This is the only
# time the network runs in this notebook.

# %%
cache = EndpointCache(model)  # remembers the endpoints: the sweep below reuses them
t0 = time.perf_counter()
ends = cache.endpoints(PHOTO, lr)
t_infer = time.perf_counter() - t0
t0 = time.perf_counter()
x_half = ends.blend(0.5)
t_blend = time.perf_counter() - t0
print(f"inference (both endpoints): {t_infer:.2f} s; one blend: {1000 * t_blend:.2f} ms")

# %%
lr_big = torch.nn.functional.interpolate(lr, size=hr.shape[-2:], mode="nearest")
fig = endpoints_figure(
    {"LR (nearest)": lr_big, "gamma = 0 (fidelity)": ends.fidelity, "gamma = 0.5": x_half,
     "gamma = 1 (realism)": ends.realism, "HR": hr},
    title="(1 - gamma) * fidelity + gamma * realism",
    note="tiny backbone: the mechanics of IFCSR, not the paper's quality")

# %% [markdown]
# ## The live explorer
#
# Move **gamma**: the image, the zoomed crop, the PSNR/SSIM readout (against HR) and the
# marker on the perception-distortion curve follow. The curve comes from a small sweep
# over gamma (metrics of the same blends, computed once below). Switch the mode to
# **gamma map** to give a painted region its own gamma (the brush paints at the centre of
# the zoomed crop). **save image** writes the current image as a lossless PNG.
#
# The readout says how long each update took: blending and re-encoding only, no network.

# %%
res = sweep(model, [pair], gammas=[i / 10 for i in range(0, 11, 2 if SMALL else 1)],
            metrics=["psnr", "ssim", "lpips-hed", "niqe"], cache=cache, progress=False)
print(f"network calls during the sweep: {res.timings['network_calls']} (the endpoints were cached)")
explorer = BlendExplorer(ends.fidelity, ends.realism, hr=hr, curve=res.summary, gamma=0.5, name=PHOTO)
explorer

# %% [markdown]
# What to look for: at gamma = 0 the image is smooth and closest to HR (highest PSNR); as
# gamma grows edges sharpen and PSNR falls. The curve's marker shows where you are on the
# trade-off; `lpips-hed` is a deep-feature distance computed with an offline VGG16 (the one
# inside the HED edge detector), *not* LPIPS itself, and NIQE is a no-reference naturalness
# score (lower is better).

# %% [markdown]
# ## Exercises
#
# 1. Load `PHOTO = "coffee"` and find, with the slider, the gamma you prefer. Is it the one
#    with the best PSNR? With the best NIQE?
# 2. Time 1000 blends (`ends.blend(g)` for random `g`) and compare with one
#    `model.infer(lr)`. How many slider moves does one inference pay for?
# 3. Use your own photo: `lr = ifcsr.data.images.load_image("photo.png")`, `ends = model.infer(lr)`,
#    then `BlendExplorer(ends.fidelity, ends.realism)` (no HR, so no PSNR readout).
#
# Worked solutions: `notebooks/solutions/01_quickstart.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. Which two images does IFCSR infer once, and which network ($f_\theta$ or $f_\phi$) produces each?
# 2. Write the formula for the image at a given gamma. Why does moving the slider cost no network call?
# 3. What does `EndpointCache` remember, and how many network calls does the sweep make once it holds the endpoints?
# 4. At which end of the slider is PSNR highest, and how does the image change as gamma grows?
# 5. What is `lpips-hed`, and how does it differ from LPIPS?
# 6. Is a lower or a higher NIQE better, and does NIQE need the HR image?
# 7. What does the bundled tiny checkpoint show about IFCSR, and what does it not show?
