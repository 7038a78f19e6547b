# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Where realism is risky, and a gamma that picks itself
#
# **What you will learn**
#
# - why a mid-gamma blend can show *ghosts* (doubled edges) where the two endpoints place an
#   edge differently, and how to find those places from the two endpoints alone, with no HR
#   (`ifcsr.risk.ghosting_risk`);
# - how to turn that risk map into a per-pixel gamma map of a chosen mean that keeps gamma low
#   where the risk is high (`ifcsr.risk.risk_aware_gamma`), and how to check whether it beats
#   the scalar gamma of the same mean (PSNR-Y, NIQE and a ghost-edge energy against HR);
# - how `auto_gamma(fidelity, realism, objective)` picks gamma for each image from its cached endpoints: the
#   PSNR optimum in closed form (with HR), a no-reference index by a 1-D search, or the knee
#   of the perception-distortion curve -- and how far each is from the per-image oracle.
#
# Nothing here calls the network more than once per image: every gamma, map and search is a
# pixel blend of the two endpoints.

# %%
import os

import pandas as pd

from ifcsr.evaluation.autogamma import auto_gamma, nr_scorer
from ifcsr.evaluation.endpoint_cache import EndpointCache
from ifcsr.evaluation.sweep import load_pairs
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import IFCSR
from ifcsr.risk import RiskAwareGamma, ghost_edge_energy
from ifcsr.widgets import BlendExplorer
from ifcsr.widgets.figures import risk_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
PAIRS = "samples"  # the held-out photos, bicubic x4; or a folder with test_LR/ and test_HR/ (RealSR)
CROP = 128 if SMALL else 256  # centred crops of the sample photos (NIQE needs at least 96 px)
MEANS = [0.25, 0.5, 0.75]  # mean gammas to compare
SEARCH = dict(grid=3, tol=0.25) if SMALL else dict(grid=11, tol=0.01)  # the NR search of auto_gamma

# %%
model = IFCSR.load(CHECKPOINT)
cache = EndpointCache(model)
pairs = load_pairs(PAIRS, scale=model.scale, crop=CROP)[: 1 if SMALL else None]
ends = {p["name"]: cache.endpoints(p["name"], p["lr"]) for p in pairs}
hrs = {p["name"]: p["hr"].unsqueeze(0) for p in pairs}
print(f"{len(pairs)} images, {cache.calls} network calls")

# %% [markdown]
# ## The ghosting-risk map
#
# For each endpoint, take the gradient $g$ of its (slightly smoothed) luma. In a small window,
# the correlation $r = \langle g_F, g_R\rangle / (\|g_F\| \|g_R\|)$ is 1 when both endpoints
# have the same edge -- whatever its contrast -- and falls when the edges are in different
# places. Weighted by how much structure the *weaker* endpoint has there (so texture added on a
# flat area does not count), $\text{risk} = \text{clip}(1 - r, 0, 1)\, w$.

# %%
name = pairs[0]["name"]
fig = risk_figure(ends[name], mean_gamma=0.5, title=f"{name}: where the endpoints disagree in structure")

# %% [markdown]
# ## Risk-aware vs scalar gamma at the same mean
#
# $\gamma(p) = \text{clip}(c - \text{risk}(p), 0, 1)$, with the offset $c$ solved so that
# the mean of the map is exactly the target. Lower is better for NIQE and the ghost-edge
# energy (edge energy where HR has no edge within 3 px, relative to HR's own), higher for PSNR-Y.

# %%
niqe, _, _ = nr_scorer("niqe")
rows = []
for n, e in ends.items():
    solver = RiskAwareGamma(e.ghosting_risk())  # once per image
    for m in MEANS:
        for method, x in (("scalar", e.blend(m)), ("risk-aware", e.blend(solver(m)))):
            rows.append(dict(image=n, mean_gamma=m, method=method, psnr=float(psnr_y(x, hrs[n])[0]),
                             niqe=niqe(x), ghost=float(ghost_edge_energy(x, hrs[n])[0])))
pd.DataFrame(rows).pivot_table(index=["image", "mean_gamma"], columns="method").round(4)

# %% [markdown]
# ## A gamma that picks itself
#
# `"psnr"` needs HR (it is the per-image PSNR oracle, in closed form); `"niqe"` and `"knee"`
# use the endpoints alone. The knee is the point of the perception-distortion curve farthest
# below the chord between its ends, after normalising both axes (distortion: RMSE of Y to
# the fidelity endpoint when there is no HR).

# %%
choices = []
for n, e in ends.items():
    for objective in ("psnr", "niqe", "knee"):
        res = auto_gamma(e.fidelity, e.realism, objective, hr=hrs[n] if objective == "psnr" else None,
                           **(SEARCH if objective == "niqe" else {}))
        x = e.blend(res.gamma)
        choices.append(dict(image=n, objective=objective, gamma=round(res.gamma, 3), how=res.method,
                            evaluations=len(res.evaluations), psnr=float(psnr_y(x, hrs[n])[0]), niqe=niqe(x)))
pd.DataFrame(choices).round(4)

# %% [markdown]
# On RealSR, `analysis/risk_realsr.py` makes the same comparisons on the images whose
# endpoints are cached and writes `analysis/results/risk_realsr*.csv`,
# `autogamma_realsr*.csv` and `risk_realsr.png`. On 50 RealSR pairs with the bundled
# checkpoint, the risk-aware map does not dominate the scalar gamma. `"niqe"` finds the
# per-image NIQE optimum, which is true by construction: it is scored on the index it
# minimises. Only indices it never sees (PSNR-Y, PIQE, lpips-hed against HR) can tell whether
# its choices are better; the numbers are in `docs/risk-and-auto-gamma.md`.
#
# ## In the explorer
#
# The "risk-aware" mode fills the gamma map from the risk at the slider's mean gamma; the
# "risk overlay" toggle tints the risky pixels red. The risk map is computed once per image.

# %%
ex = BlendExplorer(ends[name].fidelity, ends[name].realism, hr=hrs[name])
ex.mode_buttons.value = "risk"
ex.risk_toggle.value = True
ex

# %% [markdown]
# ## Exercises
#
# 1. Shift the realism endpoint by a few pixels (`torch.roll`) and recompute the risk map:
#    how many pixels of shift does it take before the risk fires, and why does that depend on
#    how blurred the edges are?
# 2. Try `strength=3` in `RiskAwareGamma`: does the PSNR-Y / NIQE pair at mean 0.5 move
#    towards or away from the scalar curve? Explain with the ghost-edge energy.
# 3. NIQE is not unimodal in gamma in general. Build an objective with two minima (a callable
#    passed to `auto_gamma`) whose deeper minimum a coarse grid (`grid=5`) misses.
#
# Worked solutions: `notebooks/solutions/08_risk_and_auto_gamma.py`.

# %% [markdown]
# ## Questionnaire
#
# The answers are all in this notebook.
#
# 1. What is a ghost in a mid-gamma blend, and why can it not appear at gamma 0 or 1?
# 2. Which two images does `ghosting_risk` need, and why does it not need HR?
# 3. Why is the risk weighted by the structure of the *weaker* endpoint?
# 4. How is the offset $c$ of the risk-aware gamma map chosen, and what does it guarantee?
# 5. Which three numbers compare the risk-aware map with the scalar gamma, and which way is
#    better for each?
# 6. Which auto-gamma objective needs HR, and how is it solved without a search?
# 7. How is the knee of the perception-distortion curve defined when there is no HR?
# 8. How many network calls do the risk map, the risk-aware map and every auto-gamma search
#    cost once the endpoints are cached?
