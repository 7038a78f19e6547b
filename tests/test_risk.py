"""ifcsr.risk: the ghosting-risk map, risk-aware gamma maps, the ghost-edge measure."""

import numpy as np
import pytest
import torch

from ifcsr.blend import blend
from ifcsr.models import Endpoints
from ifcsr.risk import RiskAwareGamma, RiskInputError, ghost_edge_energy, ghosting_risk, risk_aware_gamma

H = W = 64


def edge(pos, contrast=0.5, low=0.25, blur=0.5):
    """A vertical step edge at column `pos` (a logistic of scale `blur` px), (1, 3, H, W) float64."""
    x = torch.arange(W, dtype=torch.float64)
    prof = low + contrast * torch.sigmoid((x - pos) / blur)
    return prof.view(1, 1, 1, W).expand(1, 3, H, W).clone()


def noisy(x, std, seed=0, smooth=False):
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(1, 1, H + 2, W + 2, generator=g, dtype=torch.float64)
    n = torch.nn.functional.avg_pool2d(n, 3, 1) * 3 if smooth else n[..., 1:-1, 1:-1]  # x3: keeps the std
    return (x + std * n).clamp(0, 1)


# Thresholds (measured with the defaults sigma=1, rho=3, tau=0.01 on these 64x64 images):
# a 4 px shift of a sharp edge peaks at 0.81, a 3 px one at 0.62, and the doubled edge
# (half the edge moved by 8 px) at 0.67; noise of std 0.03 peaks at 0.08 and fine texture
# (std 0.035, 3x3 correlated) at 0.26. FIRES = 0.5 and QUIET = 0.35 sit between with a margin
# for other BLAS builds (the maps are float64 inside: differences are ~1e-12).
FIRES, QUIET = 0.5, 0.35


@pytest.mark.parametrize("shift", [3, 4, 8])
def test_risk_fires_on_shifted_edges(shift):
    f = edge(32)
    r = ghosting_risk(f, edge(32 + shift))
    assert r.shape == (1, 1, H, W) and r.dtype == torch.float32
    assert r.max() > FIRES
    cols = r[0, 0].amax(dim=0)  # it fires at the edges, not far from them
    assert cols[32 : 33 + shift].max() > FIRES and cols[: 32 - 12].max() < 1e-3 and cols[33 + shift + 12 :].max() < 1e-3


def test_risk_fires_on_a_doubled_edge():
    f = edge(32)
    assert ghosting_risk(f, 0.5 * f + 0.5 * edge(40)).max() > FIRES


def test_risk_grows_with_the_shift():
    f = edge(32)
    peaks = [float(ghosting_risk(f, edge(32 + d)).max()) for d in (0, 1, 2, 3, 4)]
    assert peaks[0] == 0.0 and all(a < b for a, b in zip(peaks, peaks[1:]))


@pytest.mark.parametrize("contrast,low", [(0.15, 0.4), (0.8, 0.1), (0.5, 0.25)])
def test_risk_is_quiet_on_contrast_changes_and_identical_inputs(contrast, low):
    # realism = a + b * fidelity with b > 0: the gradients are parallel, r = 1 exactly
    r = ghosting_risk(edge(32), edge(32, contrast=contrast, low=low))
    assert r.max() < 1e-4  # float rounding of r = 1 only


@pytest.mark.parametrize("std,smooth", [(0.03, False), (0.05, False), (0.035, True)])
def test_risk_is_quiet_on_added_noise_and_fine_texture(std, smooth):
    f = edge(32)
    r = ghosting_risk(f, noisy(f, std, smooth=smooth))
    assert r.max() < QUIET and r.mean() < 0.05


def test_risk_is_quiet_on_texture_added_to_a_flat_image():
    flat = torch.full((1, 3, H, W), 0.5, dtype=torch.float64)
    assert ghosting_risk(flat, noisy(flat, 0.1, smooth=True)).max() < 1e-3  # the fidelity side has no structure


def test_risk_input_forms_and_shapes():
    f, r = edge(32).float(), edge(36).float()
    t = ghosting_risk(f, r)
    assert ghosting_risk(f[0], r[0]).shape == (1, H, W)
    batch = ghosting_risk(torch.cat([f, f]), torch.cat([r, f]))
    assert batch.shape == (2, 1, H, W) and batch[1].max() == 0 and torch.allclose(batch[0], t[0])
    fn = (f[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rn = (r[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    a = ghosting_risk(fn, rn)
    assert a.shape == (H, W) and a.dtype == np.float32
    assert np.abs(a - t[0, 0].numpy()).max() < 0.02  # uint8 rounding of the inputs only
    assert ghosting_risk(np.stack([fn, fn]), np.stack([rn, fn])).shape == (2, H, W)
    assert torch.equal(Endpoints(f, r).ghosting_risk(), t)


@pytest.mark.parametrize("args,match", [
    ((torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9)), "differ in shape"),
    ((torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8)), r"\(B, 3, H, W\)"),
    ((torch.rand(1, 3, 8, 8), np.zeros((8, 8, 3), np.uint8)), "both be torch"),
    ((torch.rand(1, 3, 8, 8) * 2, torch.rand(1, 3, 8, 8)), r"in \[0, 1\]"),
    ((torch.full((1, 3, 8, 8), float("nan")), torch.rand(1, 3, 8, 8)), "NaN"),
    ((torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), "float"),
    ((np.zeros((8, 8, 3), np.int32), np.zeros((8, 8, 3), np.int32)), "uint8 or float"),
    (([0.5], [0.5]), "torch tensor or numpy"),
])
def test_risk_rejects_bad_inputs(args, match):
    with pytest.raises(RiskInputError, match=match):
        ghosting_risk(*args)


def test_risk_rejects_bad_parameters():
    f = torch.rand(1, 3, 8, 8)
    for kw in (dict(sigma=0), dict(rho=-1.0), dict(tau=float("nan")), dict(tau=True)):
        with pytest.raises(RiskInputError, match="positive number"):
            ghosting_risk(f, f, **kw)


# ----------------------------------------------------------------------------- risk-aware gamma


def risk_map(seed=0, shape=(40, 50)):
    g = np.random.default_rng(seed)
    r = np.zeros(shape, np.float32)
    r[10:20, 5:45] = g.uniform(0.3, 1.0, (10, 40))  # a risky band
    return r


@pytest.mark.parametrize("target", [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0, 3.0])
def test_risk_aware_gamma_has_the_target_mean_in_range(target, strength):
    risk = risk_map()
    g = risk_aware_gamma(risk, target, strength=strength)
    assert g.shape == risk.shape and g.dtype == np.float32
    assert g.min() >= 0 and g.max() <= 1
    # tol 1e-7 on the float64 mean, then the map is stored in float32 (relative 6e-8): 1e-6 is ample
    assert abs(float(g.astype(np.float64).mean()) - target) < 1e-6
    if target in (0.0, 1.0):
        assert (g == target).all()


def test_risk_aware_gamma_is_monotone_in_risk_and_lower_where_risky():
    risk = risk_map()
    g = risk_aware_gamma(risk, 0.5)
    order = np.argsort(risk.ravel(), kind="stable")
    assert (np.diff(g.ravel()[order]) <= 1e-7).all()  # non-increasing in risk (float32 rounding)
    assert g[risk > 0.3].mean() < 0.5 < g[risk == 0].mean()


def test_risk_aware_gamma_without_risk_is_the_scalar_gamma():
    assert np.allclose(risk_aware_gamma(np.zeros((8, 8)), 0.3), 0.3, atol=1e-6)
    assert np.allclose(risk_aware_gamma(risk_map(), 0.3, strength=0.0), 0.3, atol=1e-6)


def test_risk_aware_gamma_per_image_of_a_batch_and_blend():
    f, r = edge(32).float(), edge(36).float()
    ends = Endpoints(torch.cat([f, f]), torch.cat([r, f]))
    risk = ends.ghosting_risk()
    g = risk_aware_gamma(risk, 0.4)
    assert isinstance(g, torch.Tensor) and g.shape == (2, 1, H, W)
    assert torch.allclose(g.double().mean(dim=(1, 2, 3)), torch.tensor([0.4, 0.4], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(g[1], torch.full_like(g[1], 0.4), atol=1e-6)  # no risk in image 2
    out = ends.blend(g)
    assert torch.allclose(out, blend(ends.fidelity, ends.realism, g))
    assert torch.allclose(ends.risk_aware_blend(0.4, risk=risk), out)
    solver = RiskAwareGamma(risk)
    assert torch.equal(solver(0.4), g) and len(solver.offsets(0.4)) == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(risk=np.full((4, 4), 1.5), mean_gamma=0.5), r"in \[0, 1\]"),
    (dict(risk=np.zeros((4,)), mean_gamma=0.5), "shape"),
    (dict(risk=torch.zeros(1, 2, 4, 4), mean_gamma=0.5), "shape"),
    (dict(risk=np.zeros((4, 4)), mean_gamma=1.2), "mean_gamma"),
    (dict(risk=np.zeros((4, 4)), mean_gamma=0.5, strength=-1), "strength"),
    (dict(risk=[0.1, 0.2], mean_gamma=0.5), "torch tensor or numpy"),
])
def test_risk_aware_gamma_rejects_bad_inputs(kwargs, match):
    with pytest.raises(RiskInputError, match=match):
        risk_aware_gamma(**kwargs)


# ----------------------------------------------------------------------------- ghost-edge energy


def test_ghost_edge_energy_counts_the_second_copy_of_a_doubled_edge():
    hr = edge(32)
    single = ghost_edge_energy(hr, hr)[0]
    softer = ghost_edge_energy(edge(32, blur=1.5), hr)[0]
    doubled = ghost_edge_energy(0.5 * hr + 0.5 * edge(42), hr)[0]
    shifted = ghost_edge_energy(edge(42), hr)[0]
    # the same edge, sharper or softer, is not a ghost: only the smoothing's tails beyond the
    # 3 px dilation count (1e-4 of HR's edge energy)
    assert single < 1e-3 and softer < 0.01
    # half the edge's energy moves 10 px away: (1/2)^2 of HR's edge energy there, up to the
    # mask's dilation and the smoothing tails
    assert 0.15 < doubled < 0.35 and shifted > 0.8
    assert ghost_edge_energy(noisy(hr, 0.03), hr)[0] < 0.2 * doubled  # noise of std 0.03 adds little: 0.026 here


def test_ghost_edge_energy_shapes_and_errors():
    hr = edge(32).float()
    v = ghost_edge_energy(torch.cat([hr, edge(42).float()]), torch.cat([hr, hr]))
    assert v.shape == (2,) and v.dtype == np.float64 and v[0] < v[1]
    with pytest.raises(RiskInputError, match="differ in shape"):
        ghost_edge_energy(hr, hr[..., :32])
    with pytest.raises(RiskInputError, match="radius"):
        ghost_edge_energy(hr, hr, radius=-1)
