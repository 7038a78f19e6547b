# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Solutions · 07 Theory
#
# Worked solutions to the exercises of `notebooks/07_theory`. Teachers: hand out the
# notebook without this folder.

# %%
import numpy as np

from ifcsr.evaluation.theory import GaussianProblem, example_problem

problem = example_problem()

# %% [markdown]
# ## 1. Noisier and cleaner observations

# %%
for noise in (0.2, problem.noise, 1.2):
    p = GaussianProblem(problem.cov_x, problem.A, noise=noise)
    d_star, w2 = p.point(p.mmse())
    print(f"noise {noise:.1f}: D* = {d_star:.4f}, W2(p_x*, p_x) = {w2:.4f}, "
          f"perfect-perception MSE = {d_star + w2**2:.4f}")

# %% [markdown]
# With little noise the MMSE estimator is almost the signal itself: both $D^*$ and $W_2$ are
# small and the two ends of the slider nearly coincide. With more noise the posterior is
# wider, the MMSE estimate shrinks more (larger $W_2$) and realism costs more MSE
# ($W_2^2$ grows): the slider spans a wider, more consequential range exactly on hard inputs.

# %% [markdown]
# ## 2. Monte Carlo check

# %%
n = 100_000
x, y = problem.sample(n, seed=1)
M = 0.5 * problem.mmse() + 0.5 * problem.perfect_perception()
err = ((x - y @ M.T) ** 2).sum(1)
exact = problem.blend_curve([0.5])[0][1]
se = err.std() / np.sqrt(n)
print(f"empirical {err.mean():.5f} vs exact {exact:.5f}: difference {abs(err.mean() - exact):.5f}, "
      f"standard error {se:.5f}")
assert abs(err.mean() - exact) < 4 * se  # 4 standard errors: a false alarm 6 times in 100 000

# %% [markdown]
# The difference is a few thousandths at most: the standard error of a mean of $10^5$
# squared errors. Anything beyond 3-4 standard errors would mean a wrong formula.

# %% [markdown]
# ## 3. A 3-pixel toy

# %%
rng = np.random.default_rng(0)
B = rng.standard_normal((3, 3))
cov3 = B @ B.T + 0.3 * np.eye(3)
A3 = np.eye(3) + 0.5 * rng.standard_normal((3, 3))
p3 = GaussianProblem(cov3, A3, noise=0.7)
g, d, per = p3.blend_curve(np.linspace(0, 1, 11)).T
print("blend on its curve:", np.allclose(d, p3.optimal_curve(per), atol=1e-9))
_, dt, pt = p3.tikhonov_curve(np.geomspace(0.49 * 0.9, 0.49 * 0.05, 10)).T
print("Tikhonov above its curve everywhere:", bool(np.all(dt > p3.optimal_curve(pt))))
