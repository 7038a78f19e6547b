# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Theory: why a blend of two endpoints can be optimal
#
# **What you will learn**
#
# - the perception-distortion trade-off (Blau & Michaeli, CVPR 2018): no estimator can be
#   both as accurate as possible (least MSE) and as *realistic* as possible (outputs
#   distributed like real images); there is a curve of best compromises;
# - the theorem behind IFCSR's slider (Freirich, Michaeli & Meir, NeurIPS 2021): for MSE
#   distortion and Wasserstein-2 perception, every point of that curve is reached by a
#   **pixel blend** $(1-\gamma)\,x^* + \gamma\,x_0$ of two estimators: the MMSE estimator
#   $x^*$ and the best perfect-perception estimator $x_0$;
# - how to check it exactly on a Gaussian toy where everything has a closed form;
# - what it does and does not promise for IFCSR's networks, whose curve we measure beside it.
#
# Cells marked **Predict** ask you to write a guess into a variable *before* you run the
# next cell, which reveals the answer. Leaving the guess as `None` is allowed.

# %%
import os

import numpy as np

from ifcsr.evaluation.theory import example_problem
from ifcsr.widgets.figures import dp_toy_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # None: the bundled tiny checkpoint

# %% [markdown]
# ## 1. A toy you can compute exactly
#
# A two-pixel "image" $x \sim N(0, \Sigma_x)$ is blurred and made noisy:
# $y = A x + n$, $n \sim N(0, \sigma^2 I)$. All estimators below are linear, $\hat x = M y$,
# so their outputs are Gaussian and both axes have closed forms:
#
# - distortion $D = E\|x - \hat x\|^2$;
# - perception $P = W_2(p_{\hat x}, p_x)$, the Wasserstein-2 distance between the law of the
#   outputs and the law of real signals (0 means "indistinguishable from real, as a
#   population").

# %%
problem = example_problem()
K = problem.mmse()                 # x* = E[x | y] = K y
P0 = problem.perfect_perception()  # x0 = T(x*), T the optimal transport map N(0, S*) -> N(0, S_x)
d_star, w2 = problem.point(K)
print("Sigma_x =\n", problem.cov_x, "\nA =\n", problem.A, "\nnoise sigma =", problem.noise)
print(f"MMSE estimator x*:            D* = {d_star:.4f},  P = W2(p_x*, p_x) = {w2:.4f}")
print(f"perfect-perception x0 = T(x*): D  = {problem.distortion(P0):.4f},  P = {problem.perception(P0):.1e}")

# %% [markdown]
# The MMSE estimator is *too smooth*: its outputs have a smaller covariance than real
# signals (it averages over every signal consistent with $y$), so its perception index is
# not zero. Here are the two covariances:

# %%
print("Cov(x*) =\n", problem.output_cov(K).round(4), "\nCov(x) =\n", problem.cov_x)

# %% [markdown]
# ## 2. Predict: where does the half-way blend land?
#
# The theorem says the blend $x_\gamma = (1-\gamma)x^* + \gamma x_0$ has perception
# $P = (1-\gamma)\,W_2(p_{x^*}, p_x)$ and distortion $D = D^* + \gamma^2\,W_2^2$.
#
# **Predict** the distortion of the $\gamma = 0.5$ blend from the two numbers printed above,
# before running the next cell.

# %%
my_guess_distortion_at_half = None  # e.g. 0.29: write your number here

# %%
g, d_half, p_half = problem.blend_curve([0.5])[0]
formula = d_star + 0.25 * w2**2
print(f"exact: D = {d_half:.4f}, P = {p_half:.4f};  D* + W2^2/4 = {formula:.4f};  (1 - 0.5) W2 = {0.5 * w2:.4f}")
if my_guess_distortion_at_half is not None:
    print(f"your guess {my_guess_distortion_at_half:.4f} is off by {abs(my_guess_distortion_at_half - d_half):.4f}")

# %% [markdown]
# Why it holds, in two lines:
#
# 1. The MMSE error $x - x^*$ is orthogonal to every function of $y$, and $x_0 - x^*$ is one,
#    so $E\|x - x_\gamma\|^2 = D^* + \gamma^2 E\|x_0 - x^*\|^2 = D^* + \gamma^2 W_2^2$
#    ($x_0$ is the *optimal* transport of $x^*$, so $E\|x_0 - x^*\|^2 = W_2^2$).
# 2. The law of $x_\gamma$ is McCann's displacement interpolation between $p_{x^*}$ and $p_x$,
#    which lies at distance $(1-\gamma) W_2$ from $p_x$.
#
# Eliminating $\gamma$: $D(P) = D^* + \left[(W_2(p_{x^*}, p_x) - P)_+\right]^2$, and
# Freirich et al. prove that **no** estimator does better at perception $P$.

# %% [markdown]
# ## 3. Predict: do other ways of trading smoothness for realism do as well?
#
# Two natural alternatives:
#
# - blend $x^*$ towards a **posterior sample** $x_s \sim p(x \mid y)$ instead of $x_0$:
#   also perfectly realistic at $\gamma = 1$ (its MSE is $2D^*$);
# - move a **parameter** instead of blending images: the regularisation $\lambda$ of the
#   Tikhonov family $(A^\top A + \lambda \Sigma_x^{-1})^{-1} A^\top y$ ($\lambda = \sigma^2$
#   is the MMSE estimator; a smaller $\lambda$ smooths less). This is the toy's analogue of
#   ESRGAN's network interpolation (DNI), which moves weights, not pixels.
#
# **Predict**: will each alternative lie on the optimal curve, above it, or below it?

# %%
my_guess_posterior_sample = None  # "on", "above" or "below"
my_guess_parameter = None         # "on", "above" or "below"

# %%
fig = dp_toy_figure(problem, gammas=np.linspace(0, 1, 11),
                    note="Exact closed forms (ifcsr.evaluation.theory); the optimal curve is Freirich et al. (2021), Thm. 4.")
_, d_ps, p_ps = problem.posterior_sample_blend_curve([0.5])[0]
lam, d_t, p_t = problem.tikhonov_curve([problem.noise**2 * 0.3])[0]
print(f"posterior-sample blend, gamma 0.5: D = {d_ps:.4f}; the optimum at its P = {p_ps:.4f} is "
      f"{problem.optimal_curve(p_ps):.4f}: above by {d_ps - problem.optimal_curve(p_ps):.4f}")
print(f"Tikhonov lambda = {lam:.3f}: D = {d_t:.4f}; the optimum at its P = {p_t:.4f} is "
      f"{problem.optimal_curve(p_t):.4f}: above by {d_t - problem.optimal_curve(p_t):.4f}")
print("your guesses:", my_guess_posterior_sample, my_guess_parameter, "-> the answer: above, above")

# %% [markdown]
# Both lie **above** the curve: they pay more distortion for the same realism. Note one
# subtlety: for *linear* estimators, blending the matrices $M$ is the same as blending the
# images, so the naive parameter has to be a nonlinear one ($\lambda$). Networks are
# nonlinear in their weights, which is why interpolating weights (DNI) and interpolating
# images (IFCSR) are different things.

# %% [markdown]
# ## 4. Back to real images: the bundled model's curve beside the toy
#
# The same axes style, now measured: distortion is the MSE of the Y channel against HR
# (from PSNR-Y), perception is NIQE (lower is more natural-looking by NIQE's statistics),
# on the held-out scikit-image photos (x4 bicubic LR; centre crops in small mode), with the
# bundled **tiny** backbone (not SD 2.1, not the paper's numbers).

# %%
from ifcsr.evaluation.sweep import sweep  # noqa: E402
from ifcsr.models import IFCSR  # noqa: E402

model = IFCSR.load(CHECKPOINT)
gammas = np.linspace(0, 1, 6 if SMALL else 11)
result = sweep(model, "samples", gammas=gammas, metrics=["psnr", "niqe"], crop=128 if SMALL else None,
               progress=False)
per_gamma = result.tidy.pivot_table(index=["image", "gamma"], columns="metric", values="value").reset_index()
per_gamma["distortion"] = 10 ** (-per_gamma["psnr"] / 10)  # PSNR-Y = -10 log10(MSE-Y)
real = per_gamma.groupby("gamma")[["distortion", "niqe"]].mean().reset_index().rename(columns={"niqe": "perception"})
real

# %% [markdown]
# **Predict**: on this model, does NIQE fall all the way from $\gamma = 0$ to $\gamma = 1$
# (as the toy's W2 does), or does it turn back up somewhere?

# %%
my_guess_niqe_monotone = None  # True or False

# %%
niqe_monotone = bool(np.all(np.diff(real["perception"]) <= 0))
print(f"NIQE monotone along gamma: {niqe_monotone} (your guess: {my_guess_niqe_monotone})")
label = f"bundled tiny model, {', '.join(result.meta['images'])}" + (" (128 px crops)" if SMALL else "")
fig = dp_toy_figure(problem, real=real, real_label=label,
                    note=f"Right: measured with {result.meta['model']}; MSE of Y vs HR, NIQE (pyiqa, offline).")

# %% [markdown]
# ## 5. What the toy does and does not guarantee
#
# - **It does:** *if* the fidelity endpoint were the MMSE estimator and the realism endpoint
#   were the optimal transport of it onto the law of real images, the slider would move
#   exactly along the best possible trade-off, and no other estimator at any $\gamma$ would
#   beat it on both axes. That is a strong reason to control in *image space*.
# - **It does not:** IFCSR's networks are neither. Stage 1 approximates the MMSE estimator
#   only as far as a LoRA on a (here tiny) backbone, trained on a few photos, can. Stage 2
#   trains the realism network *on the blend* with $\gamma \sim U(0,1)$, which is the right
#   objective for the blend, but it optimises a depth-weighted feature loss (plus, in the
#   tiny preset, a texture term and an overshoot penalty on the realism endpoint), not a
#   $W_2$ transport.
# - **The axes differ:** the theorem is about distributions (W2 between populations) and
#   expected MSE; NIQE scores single images with hand-made natural-scene statistics, and we
#   average it over two photos. A curve that bends the right way is evidence, not proof.
# - **Ghosting:** the theorem's $x_0$ is a deterministic function of $x^*$ that moves every
#   point the least possible distance. Two independently behaving networks can disagree in
#   *structure* (an edge here, an edge there); their blend then shows both edges. The paper
#   names this failure mode; `ifcsr.risk` (issue 18) maps where it happens.

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/07_theory.py`.
#
# 1. Make the observation noisier and cleaner (`GaussianProblem(problem.cov_x, problem.A,
#    noise=...)` with 0.2 and 1.2). How do $D^*$ and $W_2(p_{x^*}, p_x)$ change, and what
#    does that say about how much a slider is worth on easy and on hard inputs?
# 2. Check the theorem by Monte Carlo: draw 100 000 pairs with `problem.sample`, apply the
#    $\gamma = 0.5$ blend's matrix, and compare the empirical MSE with `blend_curve`. How
#    far apart may they be, given the sample size?
# 3. Build a 3-pixel toy of your own (any positive definite $\Sigma_x$, any $A$) and show
#    that its blend still lies on its own optimal curve, while the Tikhonov path does not.

# %% [markdown]
# ## Questionnaire
#
# The answers are all in this notebook.
#
# 1. Why is the MMSE estimator's perception index not zero? What does its output covariance
#    look like compared with the signal's?
# 2. Which estimator is at the other end of IFCSR's slider in the theorem, and how is it
#    built from the MMSE estimator?
# 3. Write the optimal distortion-perception curve $D(P)$ and say what each term means.
# 4. At $\gamma = 0.5$, what fraction of the extra distortion $W_2^2$ does the blend pay?
# 5. Why does blending towards a posterior sample cost more distortion than blending towards
#    $x_0$, although both end perfectly realistic?
# 6. For linear estimators, is blending images the same as blending parameters? Why does
#    that matter for DNI versus IFCSR?
# 7. Name two reasons why the theorem does not guarantee that the bundled model's curve is
#    optimal.
