# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Trade-off curves: every metric against gamma, and the perception-distortion plane
#
# **What you will learn**
#
# - how to sweep $\gamma$ over a grid and score every blend with PSNR, SSIM, LPIPS, MUSIQ,
#   NIQE and every other metric that can run on this machine (the others are listed as
#   unavailable, with the reason, never given a number);
# - how much each control method costs: IFCSR runs the network once per image, network
#   interpolation (DNI) once per point of its curve;
# - how to read the perception-distortion plane (Blau & Michaeli, CVPR 2018) with the
#   baselines on it: bicubic, each endpoint alone, a naive blend of independently trained
#   networks, $k = 1$, DNI and Real-ESRGAN;
# - how to move along the curve with a slider and see the image at that gamma;
# - where IFCSR, Real-ESRGAN and OSEDiff sit on real camera photos (RealSR), and which gamma
#   each image prefers.

# %%
import os

import pandas as pd

from ifcsr.evaluation.ablations import ablation_or_train
from ifcsr.evaluation.baselines import run_baselines
from ifcsr.evaluation.endpoint_cache import EndpointCache
from ifcsr.evaluation.sweep import (
    figure_note,
    gamma_grid,
    load_pairs,
    make_suite,
    pick_axes,
    position_vs_curve,
    summarize,
    sweep,
)
from ifcsr.models import IFCSR
from ifcsr.widgets import BlendExplorer
from ifcsr.widgets.figures import gamma_curves_figure, perception_distortion_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint
PAIRS = "samples"  # the held-out photos (chelsea, coffee), bicubic x4; or a folder with test_LR/ and test_HR/
CROP = 128 if SMALL else 256  # centred crops of the sample photos; None = whole photos (slow: DNI re-infers)
STEP = 0.25 if SMALL else 0.05  # gamma grid
# None = every per-image metric in ifcsr.evaluation.metrics.REGISTRY; unavailable ones are reported.
METRICS = ["psnr", "ssim", "lpips", "musiq", "niqe", "lpips-hed"] if SMALL else None

# %% [markdown]
# ## The sweep: infer once per image, then score every gamma

# %%
model = IFCSR.load(CHECKPOINT)
cache = EndpointCache(model)  # the endpoints, shared by the sweep, the baselines and the explorer
res = sweep(model, PAIRS, gammas=gamma_grid(STEP), metrics=METRICS, cache=cache, crop=CROP)
print(f"{res.timings['network_calls']} network calls for {res.timings['images']} images x "
      f"{res.timings['gammas']} gammas; blending took {res.timings['blend_ms_per_image']:.2f} ms per image and gamma")
pd.DataFrame(sorted(res.unavailable.items()), columns=["unavailable metric", "reason"])

# %%
res.summary.round(4)

# %% [markdown]
# ## The baselines, on the same metrics
#
# `single-stage (naive blend)` and `k=1 (MSE+LPIPS)` are the paper's ablations: checkpoints
# trained by `analysis/train_ablations.py` on the bundled checkpoint's backbone (notebook 05
# shows them side by side). Where they do not fit this checkpoint, small mode trains them for
# a couple of steps, enough to run the code, not to compare; full mode leaves them out.

# %%
# analysis/checkpoints (or $IFCSR_ABLATIONS); where one does not fit, small mode trains it for 2 steps
ablations = {kind: ablation_or_train(kind, base=CHECKPOINT, steps=2, train=SMALL, progress=False)
             for kind in ("single_stage", "k1")}
base = run_baselines(model, PAIRS, suite=make_suite(METRICS), gammas=gamma_grid(STEP), cache=cache,
                     single_stage=ablations.get("single_stage"), k1=ablations.get("k1"),
                     dni_gammas=gamma_grid(0.5 if SMALL else 0.25), crop=CROP)
tidy = pd.concat([res.tidy, base.tidy], ignore_index=True)
summary = summarize(tidy)
costs = pd.DataFrame([{"method": "IFCSR", "network_calls": res.timings["network_calls"],
                       "infer_s": res.timings["infer_s"], "points": res.timings["gammas"]}] + base.timings)
print(costs[["method", "network_calls", "infer_s", "points"]].to_string(index=False))
if base.unavailable:
    print("not run:", base.unavailable)

# %% [markdown]
# ## Every metric against gamma

# %%
note = figure_note(res.meta, res.unavailable)
fig = gamma_curves_figure(summary, note=note, title="metrics against gamma (held-out photos)")

# %% [markdown]
# ## The perception-distortion plane
#
# x is a distortion (how far from HR), y a perception index (how natural, no reference).
# Both axes are oriented so that *better* is down and to the left; no method can reach the
# corner (Blau & Michaeli). IFCSR's curve is the set of trade-offs one inference buys.

# %%
x, y = pick_axes(summary)
fig = perception_distortion_figure(summary, x, y, note=note, title=f"perception-distortion: {x} vs {y}")
position_vs_curve(summary, x, y)

# %% [markdown]
# ## Slide along the curve
#
# The marker follows gamma along the curve of this one image (the squares and thin lines
# are the baselines on the same image); the image, the crop and the PSNR/SSIM readout
# follow too. No network call happens while you slide.

# %%
pair = load_pairs(PAIRS, scale=model.scale, crop=CROP)[0]
ends = cache.endpoints(pair["name"], pair["lr"])
one_image = summarize(tidy[tidy["image"] == pair["name"]])
BlendExplorer(ends.fidelity, ends.realism, hr=pair["hr"], curve=one_image, curve_axes=(x, y), name=pair["name"])

# %% [markdown]
# ## Where is PSNR best? The peak in closed form
#
# The blend's error is $e_F + \gamma d$, with $e_F$ the fidelity endpoint's error and
# $d$ = realism - fidelity. Its MSE is a parabola in $\gamma$ with its lowest point at
#
# $$\gamma^* = -\frac{\langle e_F, d\rangle}{\lVert d\rVert^2}.$$
#
# PSNR falls all the way from fidelity to realism iff $\gamma^* \le 0$ (on a grid of
# step $h$: iff $\gamma^* \le h/2$). A positive $\gamma^*$ means the realism endpoint
# partly *corrects* the fidelity one, so a little realism raises PSNR: the two endpoints act
# as an ensemble. In the paper the realism endpoint is ~6 dB below the fidelity one in PSNR
# and the curve falls; the tiny checkpoint's realism sits only 1-2 dB below, and on some
# photos $\gamma^*$ lands above 0 (`analysis/stage2_seeds.py` measures how much that
# depends on the stage-2 seed).

# %%
from ifcsr.blend import mse_optimal_gamma

psnr = res.tidy[(res.tidy["metric"] == "psnr") & res.tidy["gamma_map"].fillna("").eq("")]
peaks = []
for p in load_pairs(PAIRS, scale=model.scale, crop=CROP):
    e = cache.endpoints(p["name"], p["lr"])
    curve = psnr[psnr["image"] == p["name"]].sort_values("gamma")
    peaks.append({"image": p["name"],
                  "gamma* (closed form)": round(mse_optimal_gamma(e.fidelity, e.realism, p["hr"]), 4),
                  "best PSNR on the grid at gamma": float(curve["gamma"].iloc[curve["value"].argmax()]),
                  "realism - fidelity MAD": round(float((e.realism - e.fidelity).abs().mean()), 4)})
pd.DataFrame(peaks)

# %% [markdown]
# ## On real photos: the RealSR test set
#
# Everything above used two photos with a synthetic (bicubic) degradation. The field reports
# on RealSR: 100 crops of real camera pairs, LR 128 px taken with a short focal length and HR
# 512 px with a long one (the StableSR/OSEDiff test crops). `python analysis/paper_table.py`
# scores bicubic, Real-ESRGAN, OSEDiff's published outputs and IFCSR's curve on it with one
# protocol (PSNR/SSIM on the Y channel of studio-range YCbCr, whole image, no border crop:
# the peers' pyiqa settings, checked against OSEDiff's own log by
# `tests/test_realsr_calibration.py`). Here we load what it saved; the table says on which
# images each row was measured and which checkpoint made the IFCSR rows.

# %%
from ifcsr.evaluation.benchmark import best_gamma_per_image, load_results
from ifcsr.widgets.figures import best_gamma_figure

realsr = load_results()  # analysis/results/paper_table.csv, realsr_summary.csv, realsr_per_image.csv
realsr["table"]

# %% [markdown]
# The perception-distortion plane on RealSR: IFCSR's curve (one inference per image, every
# gamma a blend), OSEDiff's point (its own published outputs, scored here) and Real-ESRGAN's.
# Where the tiny backbone's curve sits relative to the diffusion peer says what a generative
# prior buys; the *shape* (PSNR falling as gamma grows) is the method's.

# %%
rs = realsr["summary"]
fig = perception_distortion_figure(rs, "psnr", "niqe", note="RealSR x4; " + str(rs["n_images"].max())
                                   + " images; IFCSR: the bundled tiny checkpoint (not SD 2.1)",
                                   title="RealSR: PSNR-Y vs NIQE")

# %% [markdown]
# One gamma for the whole set hides how much images differ. For each image, which gamma gives
# the best PSNR and which the best NIQE? If the two histograms sit at opposite ends, the
# trade-off is real on that image; a per-image (or per-pixel, notebook 05) gamma is the answer.

# %%
best = best_gamma_per_image(realsr["per_image"], ["psnr", "niqe"])
fig = best_gamma_figure(best, title="RealSR: best gamma per image")
best.pivot(index="image", columns="metric", values="best_gamma")

# %% [markdown]
# ## Exercises
#
# 1. Find the gamma with the best PSNR and the gamma with the best perception score. Where
#    do the paper's numbers put them on RealSR (`ifcsr.evaluation.tables.paper_reference_table()`)?
# 2. Is LPIPS (or lpips-hed) monotone in gamma here? The paper reports it is not; explain
#    why a blend of two images can be closer to HR in deep features than both endpoints.
# 3. Count the network calls in the cost table and estimate how long DNI would take for a
#    101-point slider on a 2-megapixel photo, compared with IFCSR.
#
# Worked solutions: `notebooks/solutions/04_tradeoff_curves.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. How many network calls does IFCSR need to score N gammas on M images? How many does network interpolation (DNI) need for its curve?
# 2. What does the library do with a metric that cannot run on this machine?
# 3. In the perception-distortion plane, which direction is better, and why can no method reach the corner?
# 4. Which baselines are placed on the plane, and what does each one stand for?
# 5. Give the closed form of $\gamma^*$, the gamma with the best PSNR. What does $\gamma^* > 0$ mean?
# 6. When does PSNR fall all the way from the fidelity to the realism endpoint (on a grid of step $h$)?
# 7. How far below the fidelity endpoint does the realism endpoint sit in PSNR, in the paper and for the tiny checkpoint?
