"""The distortion-perception trade-off in closed form, on a Gaussian toy (notebook 07).
Imports numpy and scipy only.

Pure numpy/scipy: no torch, no plotting. Everything here is exact linear algebra.

The setting (Freirich, Michaeli & Meir, "A Theory of the Distortion-Perception Tradeoff in
Wasserstein Space", NeurIPS 2021): a signal x ~ N(0, S_x) in R^d is observed as
y = A x + n with n ~ N(0, s^2 I). Distortion is the MSE E||x - x_hat||^2; perception is the
Wasserstein-2 distance W2(p_x_hat, p_x) between the estimator's output distribution and the
signal's (Blau & Michaeli, CVPR 2018, call any such divergence a perception index).

- The MMSE estimator x* = E[x | y] = K y, K = S_x A^T (A S_x A^T + s^2 I)^-1, has the least
  distortion D* but is too "smooth": Cov(x*) = S* is smaller than S_x, so W2(p_x*, p_x) > 0.
- The perfect-perception estimator of least MSE is x_0 = T(x*), with T the optimal transport
  map from N(0, S*) to N(0, S_x): T = S*^-1/2 (S*^1/2 S_x S*^1/2)^1/2 S*^-1/2.
- Theorem (Freirich et al.): the optimal distortion at perception P is
  D(P) = D* + [(W2(p_x*, p_x) - P)_+]^2, and it is reached by the blend
  x_alpha = (1 - alpha) x* + alpha x_0 with P = (1 - alpha) W2(p_x*, p_x).
  That blend is IFCSR's image-space control with x* as the fidelity endpoint, x_0 as the
  realism endpoint and alpha = gamma.

Why the blend is on the curve, in two lines: x - x* is orthogonal to every function of y, so
MSE(x_alpha) = D* + alpha^2 E||x0 - x*||^2 = D* + alpha^2 W2^2; and the blend's law is the
displacement interpolation between p_x* and p_x, which sits at W2 distance (1 - alpha) W2 from
p_x. Substituting alpha = 1 - P / W2 gives D(P).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh, not sqrtm:
    real and symmetric by construction)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    if w.min() < -1e-10 * max(1.0, w.max()):
        raise ValueError(f"matrix is not positive semi-definite (smallest eigenvalue {w.min():.3g})")
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def w2_gaussian(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """W2 between N(0, cov_a) and N(0, cov_b): tr(A + B - 2 (A^1/2 B A^1/2)^1/2)^1/2."""
    ra = _psd_sqrt(cov_a)
    cross = _psd_sqrt(ra @ cov_b @ ra)
    return float(np.sqrt(max(np.trace(cov_a + cov_b - 2 * cross), 0.0)))


def ot_map_gaussian(cov_from: np.ndarray, cov_to: np.ndarray) -> np.ndarray:
    """The optimal transport map (a symmetric matrix T) from N(0, cov_from) to N(0, cov_to)."""
    r = _psd_sqrt(cov_from)
    r_inv = np.linalg.inv(r)
    return r_inv @ _psd_sqrt(r @ cov_to @ r) @ r_inv


@dataclass(frozen=True)
class GaussianProblem:
    """x ~ N(0, cov_x), y = A x + n, n ~ N(0, noise^2 I). All estimators here are linear, x_hat = M y."""

    cov_x: np.ndarray
    A: np.ndarray
    noise: float

    def __post_init__(self):
        cov_x, A = np.asarray(self.cov_x, float), np.asarray(self.A, float)
        if cov_x.ndim != 2 or cov_x.shape[0] != cov_x.shape[1] or not np.allclose(cov_x, cov_x.T):
            raise ValueError(f"cov_x must be a symmetric square matrix, got shape {cov_x.shape}")
        if np.linalg.eigvalsh(cov_x).min() <= 0:
            raise ValueError("cov_x must be positive definite")
        if A.ndim != 2 or A.shape[1] != cov_x.shape[0]:
            raise ValueError(f"A must be (m, {cov_x.shape[0]}), got {A.shape}")
        if not np.isfinite(self.noise) or self.noise <= 0:
            raise ValueError(f"noise must be a positive number, got {self.noise}")
        object.__setattr__(self, "cov_x", cov_x)
        object.__setattr__(self, "A", A)

    @property
    def cov_y(self) -> np.ndarray:
        return self.A @ self.cov_x @ self.A.T + self.noise**2 * np.eye(self.A.shape[0])

    # ------------------------------------------------------------------ estimators (matrices M)
    def mmse(self) -> np.ndarray:
        """K = S_x A^T S_y^-1: the posterior mean E[x | y] = K y (the Wiener filter)."""
        return linalg.solve(self.cov_y, self.A @ self.cov_x, assume_a="pos").T

    def perfect_perception(self) -> np.ndarray:
        """T K: the least-MSE estimator whose outputs are distributed exactly as x."""
        return ot_map_gaussian(self.output_cov(self.mmse()), self.cov_x) @ self.mmse()

    def tikhonov(self, lam: float) -> np.ndarray:
        """The regularised family (A^T A + lam S_x^-1)^-1 A^T: lam = noise^2 is the MMSE
        estimator; smaller lam shrinks less. Interpolating this *parameter* is the toy's
        analogue of interpolating network weights (DNI) rather than images."""
        if lam <= 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        return linalg.solve(self.A.T @ self.A + lam * np.linalg.inv(self.cov_x), self.A.T, assume_a="pos")

    # ------------------------------------------------------------------ what an estimator achieves
    def output_cov(self, M: np.ndarray) -> np.ndarray:
        return M @ self.cov_y @ M.T

    def distortion(self, M: np.ndarray) -> float:
        """E||x - M y||^2 = tr(S_x) - 2 tr(M A S_x) + tr(M S_y M^T)."""
        return float(np.trace(self.cov_x) - 2 * np.trace(M @ self.A @ self.cov_x) + np.trace(self.output_cov(M)))

    def perception(self, M: np.ndarray) -> float:
        """W2(p_{M y}, p_x)."""
        return w2_gaussian(self.output_cov(M), self.cov_x)

    def point(self, M: np.ndarray) -> tuple[float, float]:
        """(distortion, perception) of the linear estimator M y."""
        return self.distortion(M), self.perception(M)

    # ------------------------------------------------------------------ curves
    def optimal_curve(self, perception) -> np.ndarray:
        """Freirich et al.'s closed form: D(P) = D* + [(W2(p_x*, p_x) - P)_+]^2."""
        K = self.mmse()
        d_star, w = self.distortion(K), self.perception(K)
        p = np.asarray(perception, float)
        return d_star + np.clip(w - p, 0, None) ** 2

    def blend_curve(self, gammas) -> np.ndarray:
        """(gamma, distortion, perception) of the image-space blend (1 - gamma) x* + gamma x_0."""
        K, P0 = self.mmse(), self.perfect_perception()
        return np.array([(g, *self.point((1 - g) * K + g * P0)) for g in np.asarray(gammas, float)])

    def posterior_sample_blend_curve(self, gammas) -> np.ndarray:
        """(gamma, distortion, perception) of a naive blend: x* towards a posterior SAMPLE
        x_s = x* + e, e ~ N(0, S_x - S*) independent (also perfect perception, MSE 2 D*).
        Output covariance S* + gamma^2 (S_x - S*); MSE D* + gamma^2 D*."""
        K = self.mmse()
        s_star = self.output_cov(K)
        d_star = self.distortion(K)
        rows = []
        for g in np.asarray(gammas, float):
            cov = s_star + g**2 * (self.cov_x - s_star)
            rows.append((g, d_star + g**2 * d_star, w2_gaussian(cov, self.cov_x)))
        return np.array(rows)

    def tikhonov_curve(self, lams) -> np.ndarray:
        """(lam, distortion, perception) along the regularisation parameter."""
        return np.array([(lam, *self.point(self.tikhonov(lam))) for lam in np.asarray(lams, float)])

    # ------------------------------------------------------------------ Monte Carlo check
    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n draws of (x, y), rows."""
        rng = np.random.default_rng(seed)
        x = rng.multivariate_normal(np.zeros(len(self.cov_x)), self.cov_x, size=n)
        y = x @ self.A.T + self.noise * rng.standard_normal((n, self.A.shape[0]))
        return x, y


def example_problem() -> GaussianProblem:
    """The notebook's 2-D toy: two correlated pixels with unequal variances, a blur that mixes
    them, and noise. Chosen so that the MMSE estimator is visibly over-smooth (W2 ~ 0.5)."""
    cov_x = np.array([[1.0, 0.6], [0.6, 0.5]])
    A = np.array([[1.0, 0.7], [0.3, 0.6]])
    return GaussianProblem(cov_x, A, noise=0.6)
