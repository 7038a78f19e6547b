"""The Gaussian distortion-perception toy of notebook 07 (ifcsr.evaluation.theory): exact numbers."""

import numpy as np
import pytest

from ifcsr.evaluation.theory import GaussianProblem, example_problem, ot_map_gaussian, w2_gaussian

# Everything below is closed-form float64 linear algebra on 2x2 matrices (eigh of well-conditioned
# matrices): agreement to 1e-9 is ~1e6 ulp of headroom; a wrong formula is off by >1e-3.
EXACT = 1e-9


def test_w2_gaussian_known_values():
    a = np.diag([1.0, 4.0])
    assert w2_gaussian(a, a) == pytest.approx(0, abs=1e-7)
    # commuting covariances: W2^2 = sum (sqrt(a_i) - sqrt(b_i))^2
    assert w2_gaussian(a, np.diag([4.0, 1.0])) ** 2 == pytest.approx((1 - 2) ** 2 + (2 - 1) ** 2, abs=EXACT)
    with pytest.raises(ValueError, match="positive semi-definite"):
        w2_gaussian(np.diag([1.0, -1.0]), a)


def test_ot_map_pushes_the_covariance_forward():
    p = example_problem()
    s_star = p.output_cov(p.mmse())
    T = ot_map_gaussian(s_star, p.cov_x)
    assert np.allclose(T @ s_star @ T.T, p.cov_x, atol=EXACT)
    assert np.allclose(T, T.T, atol=EXACT) and np.linalg.eigvalsh(T).min() > 0  # a gradient of a convex map


def test_mmse_is_smooth_and_perfect_perception_costs_w2_squared():
    p = example_problem()
    K, P0 = p.mmse(), p.perfect_perception()
    d_star, w = p.point(K)
    assert w > 0.1  # the MMSE estimator is visibly over-smooth in this toy
    assert p.perception(P0) == pytest.approx(0, abs=1e-7)
    assert p.distortion(P0) == pytest.approx(d_star + w**2, abs=EXACT)
    # MMSE is the least distortion of all linear estimators: perturbations only add
    rng = np.random.default_rng(0)
    assert all(p.distortion(K + 0.05 * rng.standard_normal(K.shape)) > d_star for _ in range(20))


def test_blend_traces_the_closed_form_optimal_curve():
    p = example_problem()
    gammas = np.linspace(0, 1, 21)
    g, d, per = p.blend_curve(gammas).T
    w = p.perception(p.mmse())
    assert np.allclose(per, (1 - g) * w, atol=1e-7)            # P = (1 - gamma) W2(p_x*, p_x)
    assert np.allclose(d, p.optimal_curve(per), atol=EXACT)     # on D(P) = D* + (W2 - P)^2
    assert np.all(np.diff(d) > 0) and np.all(np.diff(per) < 0)  # a true trade-off


def test_naive_alternatives_lie_above_the_curve():
    p = example_problem()
    # blending towards a posterior sample: perfect perception at gamma = 1, but not optimal inside
    g, d, per = p.posterior_sample_blend_curve(np.linspace(0.05, 1, 20)).T
    assert np.all(d > p.optimal_curve(per) + 1e-4)
    # the regularisation parameter (the toy's DNI): between the MMSE point and less shrinkage
    lam, d, per = p.tikhonov_curve(np.geomspace(p.noise**2 * 0.9, p.noise**2 * 0.05, 15)).T
    assert np.all(d > p.optimal_curve(per) + 1e-6)


def test_linear_estimators_blend_like_their_parameters():
    """For linear estimators, blending outputs IS blending matrices: why the toy's naive
    alternative must be a nonlinear parameter (lam), as network weights are."""
    p = example_problem()
    K, P0 = p.mmse(), p.perfect_perception()
    _, y = p.sample(5, seed=1)
    for g in (0.25, 0.7):
        assert np.allclose(((1 - g) * K + g * P0) @ y.T, (1 - g) * (K @ y.T) + g * (P0 @ y.T), atol=EXACT)


def test_monte_carlo_agrees_with_the_formulas():
    p = example_problem()
    x, y = p.sample(200_000, seed=0)
    for M in (p.mmse(), p.perfect_perception(), 0.5 * (p.mmse() + p.perfect_perception())):
        err = ((x - y @ M.T) ** 2).sum(1)
        # the empirical MSE is a mean of 2e5 draws: 4 standard errors is a 6e-5 false-alarm rate
        assert err.mean() == pytest.approx(p.distortion(M), abs=4 * err.std() / np.sqrt(len(err)))


def test_bad_problems_are_rejected():
    with pytest.raises(ValueError, match="positive definite"):
        GaussianProblem(np.diag([1.0, 0.0]), np.eye(2), 0.1)
    with pytest.raises(ValueError, match="A must be"):
        GaussianProblem(np.eye(2), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="noise"):
        GaussianProblem(np.eye(2), np.eye(2), float("nan"))
