"""ifcsr.evaluation.autogamma: a gamma that picks itself, from the cached endpoints, no network call."""

import numpy as np
import pytest
import torch

from ifcsr.evaluation.autogamma import AutoGamma, auto_gamma, knee_point, search_gamma
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import Endpoints


def images(h=48, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(1, 3, h, w, generator=g)
    fid = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)                        # smooth "fidelity"
    real = (hr + 0.15 * torch.randn(hr.shape, generator=g)).clamp(0, 1)     # noisy "realism"
    return fid, real, hr


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_closed_form_equals_the_dense_grid_argmax(seed):
    fid, real, hr = images(seed=seed)
    res = auto_gamma(fid, real, "psnr", hr=hr)
    assert isinstance(res, AutoGamma) and res.method == "closed form" and 0 < res.gamma < 1
    grid = np.linspace(0, 1, 1001)
    n = len(grid)  # one batch: gamma per sample
    ps = psnr_y(Endpoints(fid.expand(n, -1, -1, -1), real.expand(n, -1, -1, -1)).blend(torch.tensor(grid)),
                hr.expand(n, -1, -1, -1)).numpy()
    # the grid step is 1e-3: its argmax lies within half a step of the exact optimum
    assert abs(res.gamma - grid[ps.argmax()]) <= 5e-4 + 1e-9
    assert res.value == pytest.approx(ps.max(), abs=1e-3)  # PSNR is flat at its maximum
    assert float(res) == res.gamma


def test_psnr_gamma_is_clipped_to_the_unit_interval():
    fid, real, hr = images()
    assert auto_gamma(hr.clone(), real, "psnr", hr=hr).gamma == 0.0     # fidelity is HR
    assert auto_gamma(fid, hr.clone(), "psnr", hr=hr).gamma == 1.0      # realism is HR
    assert auto_gamma(fid, 2 * fid - hr, "psnr", hr=hr).gamma == 0.0    # realism moves away
    assert auto_gamma(fid, fid.clone(), "psnr", hr=hr).gamma == 0.0     # endpoints agree


@pytest.mark.parametrize("g0", [0.0, 0.137, 0.5, 0.82, 1.0])
def test_search_finds_the_minimum_of_a_unimodal_objective(g0):
    g, v, evals = search_gamma(lambda x: (x - g0) ** 2 + abs(x - g0), grid=11, tol=1e-3)
    assert abs(g - g0) <= 1e-3  # the golden section's final bracket
    assert len(evals) < 11 + 25  # grid + refinement, no exhaustive search


def test_nr_search_through_endpoints_with_a_callable_objective():
    fid, real, _ = images()
    target = Endpoints(fid, real).blend(0.3)
    res = auto_gamma(fid, real, lambda x: float(((x - target) ** 2).mean()), tol=1e-3)
    assert res.method == "grid + golden section" and abs(res.gamma - 0.3) <= 1e-3


def test_search_keeps_the_best_grid_point_of_a_multimodal_objective():
    # two minima; the deeper one is in the grid cell around 0.8: the grid finds the right basin
    f = lambda x: min((x - 0.2) ** 2 + 0.05, (x - 0.8) ** 2)  # noqa: E731
    g, v, _ = search_gamma(f, grid=11, tol=1e-3)
    assert abs(g - 0.8) <= 1e-3 and v <= f(0.8) + 1e-6


def test_nr_metric_objective_runs_on_the_blends():
    pytest.importorskip("pyiqa")
    fid, real, _ = images(h=64, w=64)
    res = auto_gamma(fid, real, "piqe", grid=3, tol=0.2)
    assert res.objective == "piqe" and 0 <= res.gamma <= 1 and np.isfinite(res.value)
    assert res.value == min(e["piqe"] for e in res.evaluations)  # the best evaluated point


def test_knee_point_on_synthetic_curves():
    g = np.linspace(0, 1, 21)
    # a convex L-shaped front: perception falls fast, then slowly; distortion rises linearly
    D, P = g, np.exp(-8 * g)
    k = knee_point(D, P)
    # the max-distance-to-chord point of x + y = 1 on the normalised curve: where the slope is -1
    y = (P - P.min()) / (P.max() - P.min())
    assert k == int(np.argmax(1 - g - y)) and 0.1 <= g[k] <= 0.4
    # no trade-off: gamma 0 is better in both -> that single Pareto point
    assert knee_point(g, 1 + g) == 0
    # a straight front: no point below the chord -> the one nearest the utopia point (the middle)
    assert knee_point(g, 1 - g) == 10
    # dominated points are ignored: a PSNR-like bump does not move the knee off the front
    P2 = P.copy()
    P2[3] += 5
    assert knee_point(D, P2) != 3
    with pytest.raises(ValueError, match="one length"):
        knee_point([0, 1], [1])


def test_knee_gamma_uses_the_grid_and_the_fidelity_endpoint_without_hr():
    fid, real, hr = images()
    ends = Endpoints(fid, real)
    # a perception index that falls with gamma like exp(-8 gamma): the knee of D = gamma
    res = auto_gamma(ends.fidelity, ends.realism, "knee", perception=lambda x: float(np.exp(-8 * _gamma_of(x, fid, real))),
                          gammas=np.linspace(0, 1, 21))
    assert res.method.startswith("knee") and "fidelity endpoint" in res.method
    rmse = [e["rmse_y"] for e in res.evaluations]
    assert rmse[0] == 0 and np.allclose(np.diff(rmse), rmse[1], rtol=1e-4)  # linear in gamma without HR
    assert 0.1 <= res.gamma <= 0.4
    with_hr = auto_gamma(ends.fidelity, ends.realism, "knee", hr=hr, perception=lambda x: 1.0 - _gamma_of(x, fid, real))
    assert "hr" in with_hr.method and 0 <= with_hr.gamma <= 1


def _gamma_of(x, fid, real):
    """Recover gamma of a blend (for synthetic perception indices)."""
    d = (real - fid).ravel().double()
    return float(((x - fid).ravel().double() @ d) / (d @ d))


class TinySR(torch.nn.Module):
    """A stand-in SR model: `infer` runs its convolution once per branch and returns Endpoints."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.Upsample(scale_factor=4, mode="bilinear")
        self.fidelity = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.realism = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, lr):
        x = self.up(lr)
        return self.fidelity(x).clamp(0, 1), self.realism(x).clamp(0, 1)

    @torch.no_grad()
    def infer(self, lr):
        return Endpoints(*self(lr))


def test_auto_gamma_never_touches_a_model(monkeypatch):
    """Every objective chooses gamma from the two endpoint tensors alone. The endpoints come from a
    model that is then poisoned (its forward, every submodule's forward and its infer raise), every
    IFCSR / GeneratorIFCSR method that infers or loads raises, and calling any torch module raises
    except pyiqa's own metric networks (NIQE, PIQE: the measuring instruments). So auto_gamma fails
    here if it reaches the model, loads one, or runs any network but a metric.
    Checked that it can fail: with `blend` inside ifcsr.evaluation.autogamma replaced by one that
    also runs the model (`model.infer(lr)`), a torch conv, or `IFCSR.load()`, this test fails with
    NetworkCalled each time."""
    pytest.importorskip("pyiqa")
    from tests.no_network import forbid_networks, poison, poison_model_classes

    torch.manual_seed(0)
    model = TinySR()
    lr = images(h=24, w=24)[2]
    ends = model.infer(lr)  # the one network call, before the guards
    hr = (ends.fidelity + 0.05 * torch.randn(ends.fidelity.shape)).clamp(0, 1)
    fid, real = ends.fidelity.clone(), ends.realism.clone()
    poison(model)
    poison_model_classes(monkeypatch)
    metric_calls = forbid_networks(monkeypatch, allow=("pyiqa",))
    with pytest.raises(AssertionError, match="was called"):
        model.infer(lr)  # the poison works
    with pytest.raises(AssertionError, match="a network ran"):
        torch.nn.Identity()(lr)  # and so does the guard

    chosen = {obj: auto_gamma(ends.fidelity, ends.realism, obj, hr=hr if obj == "psnr" else None,
                              **({"gammas": [0, 0.5, 1]} if obj == "knee" else {"grid": 3, "tol": 0.3}))
              for obj in ("psnr", "knee", "niqe", "piqe")}
    chosen["callable"] = auto_gamma(ends.fidelity, ends.realism, lambda x: float(x.mean()), grid=3, tol=0.3)
    assert all(0 <= c.gamma <= 1 for c in chosen.values())
    assert metric_calls and all(c.startswith("pyiqa.") for c in metric_calls)  # NIQE and PIQE did run
    assert torch.equal(ends.fidelity, fid) and torch.equal(ends.realism, real)  # endpoints untouched


def test_infer_auto_gamma_infers_once_then_never_touches_the_model(tmp_path, monkeypatch, capsys):
    """`ifcsr infer --gamma auto:...` with the bundled model: the model is loaded once and infers
    once per image; then its forward (and every submodule's), infer and infer_branch raise, and
    every objective still writes its blend.
    Checked that it can fail: with a copy of ifcsr/cli/infer.py that calls `model.infer(lr)` again
    inside the auto branch, main returns 1 ("internal error ... model.infer was called")."""
    from PIL import Image

    from ifcsr.cli import main
    from ifcsr.models import IFCSR
    from tests.no_network import poison

    real_load = IFCSR.load
    calls = {"load": 0, "infer": 0}

    def load_once(*args, **kwargs):
        calls["load"] += 1
        assert calls["load"] == 1, "the model was loaded twice"
        model = real_load(*args, **kwargs)
        real_infer = model.infer

        def infer_once(*a, **k):
            calls["infer"] += 1
            ends = real_infer(*a, **k)
            poison(model)  # from here on, any use of the model raises
            return ends

        model.infer = infer_once
        return model

    monkeypatch.setattr(IFCSR, "load", load_once)
    rng = np.random.default_rng(0)  # a smooth field plus grain, 128 px (NIQE needs 96)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((128, 128), Image.BICUBIC))
    hr = Image.fromarray((smooth + rng.normal(0, 20, smooth.shape)).clip(0, 255).astype(np.uint8))
    hr.save(tmp_path / "hr.png")
    hr.resize((32, 32), Image.BICUBIC).save(tmp_path / "lr.png")
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "lr.png"), "--gamma", "auto:knee", "auto:niqe", "auto:piqe", "auto:psnr",
                 "0.5", "--hr", str(tmp_path / "hr.png"), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert calls == {"load": 1, "infer": 1}
    for objective in ("knee", "niqe", "piqe", "psnr"):
        assert len(list(out.glob(f"lr_auto-{objective}_gamma*.png"))) == 1, objective
    assert (out / "lr_gamma0.50.png").is_file()


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(objective="psnr"), ValueError, "needs the HR"),
    (dict(objective="psnr-nope"), ValueError, "not a no-reference metric"),
    (dict(objective="ssim"), ValueError, "not a no-reference metric"),
    (dict(objective=3), TypeError, "name or a callable"),
])
def test_auto_gamma_errors(kwargs, err, match):
    fid, real, _ = images()
    with pytest.raises(err, match=match):
        auto_gamma(fid, real, **kwargs)


def test_auto_gamma_wants_one_image():
    fid, real, hr = images()
    with pytest.raises(ValueError, match="batch of 2"):
        auto_gamma(torch.cat([fid, fid]), torch.cat([real, real]), "psnr", hr=torch.cat([hr, hr]))


# ----------------------------------------------------------------------------- ifcsr infer --gamma auto


def test_gamma_argument_parsing():
    import argparse

    from ifcsr.cli.infer import gamma_arg

    assert gamma_arg("0.25") == 0.25 and gamma_arg("auto") == "auto:knee" and gamma_arg("auto:niqe") == "auto:niqe"
    assert gamma_arg("1.5") == 1.5  # the range is check_gammas' (an InputError), as for any number
    for bad, match in (("auto:lpips", "unknown auto objective"), ("half", "number")):
        with pytest.raises(argparse.ArgumentTypeError, match=match):
            gamma_arg(bad)


def test_infer_cli_auto_psnr_writes_the_chosen_blend(tmp_path, capsys):
    from PIL import Image

    from ifcsr.cli.app import main
    from ifcsr.data.images import load_image, to_tensor
    from ifcsr.models import IFCSR

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a_hr.png")
    out = tmp_path / "o"
    assert main(["infer", str(tmp_path / "a.png"), "--out", str(out), "--quiet",
                 "--gamma", "auto:psnr", "--hr", str(tmp_path / "a_hr.png")]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "auto:psnr chose gamma" in x][0]
    files = sorted(p.name for p in out.glob("a_auto-psnr_gamma*.png"))
    from ifcsr.cli.infer import gamma_label

    assert len(files) == 1
    # the choice is the library's closed form on the saved endpoints' model outputs
    ends = IFCSR.load().infer(to_tensor(load_image(tmp_path / "a.png")))
    g = auto_gamma(ends.fidelity, ends.realism, "psnr", hr=to_tensor(load_image(tmp_path / "a_hr.png"))).gamma
    assert f"gamma {g:.3f}" in line and files[0] == f"a_auto-psnr_gamma{gamma_label(g)}.png"
    assert main(["infer", str(tmp_path / "a.png"), "--out", str(out), "--quiet", "--gamma", "auto:psnr"]) == 2
    assert "needs --hr" in capsys.readouterr().err


def test_compare_with_oracles_marks_what_holds_by_construction():
    """The study's table (analysis/risk_realsr.py): per metric, one gamma for all, the per-image
    oracle (best of the grid and every choice) and each objective's share of the oracle's gain;
    `optimised` is True only where an objective is scored on itself."""
    import pandas as pd

    from ifcsr.evaluation.autogamma import compare_with_oracles

    # image a: NIQE falls with gamma; image b: NIQE rises (an aliased pattern). PSNR falls for both.
    scalar = pd.DataFrame(dict(image=["a"] * 3 + ["b"] * 3, gamma=[0, 0.5, 1] * 2,
                               psnr=[30, 29, 28, 31, 30, 29], niqe=[8, 7, 6, 9, 10, 12.0],
                               piqe=[80, 70, 60, 85, 80, 88.0]))
    auto = pd.DataFrame(dict(image=["a", "a", "b", "b"], objective=["niqe", "psnr"] * 2, gamma=[1, 0, 0.1, 0],
                             at_psnr=[28, 30, 30.9, 31], at_niqe=[6, 8, 8.5, 9], at_piqe=[60, 80, 84, 85.0]))
    t = compare_with_oracles(scalar, auto, {"psnr": False, "niqe": True, "piqe": True, "lpips-hed": True})
    assert set(t["metric"]) == {"psnr", "niqe", "piqe"}  # no lpips-hed column: left out
    row = t.set_index(["metric", "choice"])
    # NIQE: one gamma for all: mean over images at 0 = 8.5, 0.5 = 8.5, 1 = 9 -> gamma 0 (first best)
    assert row.loc[("niqe", "best single gamma"), "value"] == 8.5
    # oracle: a -> 6 (grid), b -> 8.5 (auto:niqe's off-grid choice beats the grid's 9)
    assert row.loc[("niqe", "per-image oracle"), "value"] == pytest.approx((6 + 8.5) / 2)
    assert row.loc[("niqe", "auto:niqe"), "recovered"] == pytest.approx(1.0)
    assert row.loc[("niqe", "auto:niqe"), "optimised"] and not row.loc[("piqe", "auto:niqe"), "optimised"]
    assert row.loc[("psnr", "auto:psnr"), "optimised"] and not row.loc[("psnr", "auto:niqe"), "optimised"]
    # PIQE, which neither objective saw: best single gamma 1 (mean 74); oracle (60 + 80) / 2 = 70;
    # auto:niqe's mean 72 recovers half the gain, auto:psnr's 82.5 is worse than gamma 1 for all
    assert row.loc[("piqe", "best single gamma"), "gamma"] == 1.0
    assert row.loc[("piqe", "per-image oracle"), "value"] == pytest.approx(70)
    assert row.loc[("piqe", "auto:niqe"), "recovered"] == pytest.approx(0.5)
    assert row.loc[("piqe", "auto:psnr"), "recovered"] == pytest.approx((74 - 82.5) / 4)
    assert (t["n_images"] == 2).all()
