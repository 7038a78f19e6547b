# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Solutions · 08 Where realism is risky, and a gamma that picks itself
#
# Worked solutions to the exercises of `notebooks/08_risk_and_auto_gamma`. Teachers: hand out
# the notebook without this folder (`python notebooks/strip_solutions.py OUT`).
#
# Small mode (`IFCSR_SMALL=1`, what CI runs): one 128x128 crop of a held-out photo.

# %%
import os

import pandas as pd
import torch

from ifcsr.evaluation.autogamma import auto_gamma, nr_scorer, search_gamma
from ifcsr.evaluation.endpoint_cache import EndpointCache
from ifcsr.evaluation.sweep import load_pairs
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import IFCSR, Endpoints
from ifcsr.risk import RiskAwareGamma, ghost_edge_energy, ghosting_risk

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")
CROP = 128 if SMALL else 256

model = IFCSR.load(CHECKPOINT)
cache = EndpointCache(model)
pair = load_pairs("samples", scale=model.scale, crop=CROP)[0]
ends = cache.endpoints(pair["name"], pair["lr"])
hr = pair["hr"].unsqueeze(0)

# %% [markdown]
# ## 1. How many pixels of shift before the risk fires?
#
# Compare the fidelity endpoint with itself shifted by k pixels, sharp and blurred. The
# correlation of two edge profiles of width s shifted by d is about exp(-d^2 / 4s^2): a
# blurred image needs a larger shift before the risk fires, because a small shift of a soft
# edge only widens it in the blend -- it does not double it.

# %%
fid = ends.fidelity
soft = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(fid, (2, 2, 2, 2), mode="replicate"), 5, 1)
rows = []
for k in (0, 1, 2, 3, 4, 6):
    rows.append(dict(shift_px=k,
                     sharp_peak=float(ghosting_risk(fid, torch.roll(fid, k, dims=-1)).amax()),
                     blurred_peak=float(ghosting_risk(soft, torch.roll(soft, k, dims=-1)).amax())))
pd.DataFrame(rows).round(3)

# %% [markdown]
# ## 2. A stronger risk-aware map
#
# With `strength=3` the map leaves risky pixels at gamma 0 sooner and pushes the rest higher
# to keep the mean. Whether that moves the (PSNR-Y, NIQE) pair towards the scalar curve's
# better side depends on how much of the image is risky; the ghost-edge energy says whether
# the doubled edges went away.

# %%
niqe, _, _ = nr_scorer("niqe")
risk = ends.ghosting_risk()
rows = []
for label, gamma in (("scalar", 0.5), ("risk-aware, strength 1", RiskAwareGamma(risk)(0.5)),
                     ("risk-aware, strength 3", RiskAwareGamma(risk, strength=3.0)(0.5))):
    x = ends.blend(gamma)
    rows.append(dict(blend=label, psnr=float(psnr_y(x, hr)[0]), niqe=niqe(x),
                     ghost=float(ghost_edge_energy(x, hr)[0])))
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## 3. A coarse grid can miss the deeper minimum
#
# A broad shallow basin at 0.3 and a narrow deeper one at 0.8: with a 5-point grid the best
# grid point is 0.25, the golden section refines inside [0, 0.5], and the search returns 0.3.
# A 21-point grid lands in the narrow basin. That is why `auto_gamma` searches a grid first
# and why the grid's size matters for indices that are not unimodal in gamma.

# %%
def bimodal(g):
    return min((g - 0.3) ** 2, 100 * (g - 0.8) ** 2 - 0.2)


for grid in (5, 21):
    g, v, evals = search_gamma(bimodal, grid=grid, tol=1e-3)
    print(f"grid {grid:2d}: gamma {g:.3f}, objective {v:+.3f}, {len(evals)} evaluations")
# the same search through Endpoints, with the objective as a callable of the blended image
two = Endpoints(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8))  # blend(g) is g everywhere
print(auto_gamma(two.fidelity, two.realism, lambda x: bimodal(float(x.mean())), grid=5, tol=1e-3).gamma)
