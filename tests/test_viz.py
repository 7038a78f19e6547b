"""ifcsr.widgets: the live explorer without a kernel, its live metrics, gamma maps and figures."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ifcsr.blend import GammaError, blend
from ifcsr.evaluation.ymetrics import psnr_y, ssim_y
from ifcsr.models import Endpoints

widgets = pytest.importorskip("ipywidgets")
viz = pytest.importorskip("ifcsr.widgets")


def images(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(1, 3, h, w, generator=g)
    fid = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)  # smooth: the "fidelity" end
    real = (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1)  # noisy: the "realism" end
    return fid, real, hr


def curve(n=6):
    g = np.linspace(0, 1, n)
    return pd.DataFrame({"method": "IFCSR", "gamma": g, "gamma_map": "", "n_images": 1,
                         "psnr": 30 - 5 * g, "niqe": 8 - 3 * g})


def decode(png_or_jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png_or_jpeg)).convert("RGB"))


# ----------------------------------------------------------------------------- imports


def test_import_ifcsr_pulls_in_neither_matplotlib_nor_ipywidgets():
    code = ("import sys, ifcsr, ifcsr.models, ifcsr.blend, ifcsr.evaluation.metrics, ifcsr.widgets; "
            "bad = [m for m in ('matplotlib', 'ipywidgets') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- live metrics


@pytest.mark.parametrize("gamma", [0.0, 0.37, 1.0])
def test_live_metrics_equal_the_library_metrics_of_the_blend(gamma):
    fid, real, hr = images()
    live = viz.LiveMetrics(viz.as_float(fid), viz.as_float(real), viz.as_float(hr))(gamma)
    x = blend(fid, real, gamma)
    assert live["psnr"] == pytest.approx(psnr_y(x, hr).item(), abs=1e-3)
    assert live["ssim"] == pytest.approx(ssim_y(x, hr).item(), abs=1e-4)


def test_live_metrics_with_a_gamma_map():
    fid, real, hr = images()
    gmap = np.linspace(0, 1, 64, dtype=np.float32)[None, :].repeat(48, 0)
    live = viz.LiveMetrics(viz.as_float(fid), viz.as_float(real), viz.as_float(hr))(gmap)
    x = blend(fid, real, torch.from_numpy(gmap))
    assert live["psnr"] == pytest.approx(psnr_y(x, hr).item(), abs=1e-3)
    assert live["ssim"] == pytest.approx(ssim_y(x, hr).item(), abs=1e-4)


# ----------------------------------------------------------------------------- the explorer


def test_slider_move_changes_image_and_readout_without_a_kernel():
    fid, real, hr = images()
    ex = viz.BlendExplorer(fid, real, hr=hr, gamma=0.2, image_format="png")
    before, readout = ex.image.value, ex.readout.value
    ex.gamma_slider.value = 0.9  # fires the observer, as a browser slider move does
    assert ex.image.value != before
    assert ex.readout.value != readout and "gamma = 0.90" in ex.readout.value
    assert ex.moves >= 2 and set(ex.last_timing) >= {"blend", "metrics", "encode", "total"}
    shown = decode(ex.image.value)
    expected = blend(viz.as_uint8(fid), viz.as_uint8(real), 0.9)
    differ = (shown != expected).any(axis=2)
    assert (shown[differ] == (255, 220, 0)).all()  # only the crop box outline is drawn over it
    assert 0 < differ.sum() <= 4 * ex.crop_side + 4
    jpeg = viz.BlendExplorer(fid, real)
    assert jpeg.image.value[:2] == b"\xff\xd8" and jpeg.image.format == "jpeg"  # default: ~20x cheaper than PNG


def test_moves_never_call_a_network(monkeypatch, tmp_path):
    """The explorer gets the endpoints of a model, which is then poisoned (its forward, every
    submodule's forward and its infer raise); every IFCSR / GeneratorIFCSR method that infers or
    loads raises, and so does calling any torch module at all. Building the explorer and every
    kind of move (slider, gamma map, brush, risk-aware mode, risk overlay, crop, zoom, save) must
    complete, and each move must change what is shown.
    Checked that it can fail: with BlendExplorer.blended patched to also run the model
    (`model.infer(lr)`), a torch conv, or `IFCSR.load()`, this test fails with NetworkCalled."""
    from tests.no_network import forbid_networks, poison, poison_model_classes

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Upsample(scale_factor=4, mode="bilinear"), torch.nn.Conv2d(3, 6, 3, padding=1))
    model.infer = lambda lr: Endpoints(*model(lr).sigmoid().detach().split(3, dim=1))
    lr = images(12, 16)[2]
    ends = model.infer(lr)  # the one network call, before the guards
    _, _, hr = images()
    poison(model)
    poison_model_classes(monkeypatch)
    forbid_networks(monkeypatch)  # no module of any kind, not even a metric's
    with pytest.raises(AssertionError, match="was called"):
        model.infer(lr)

    ex = viz.BlendExplorer(ends.fidelity, ends.realism, hr=hr, curve=curve(), save_dir=tmp_path, image_format="png")

    def view():
        return bytes(ex.image.value), bytes(ex.crop_image.value), ex.readout.value

    shown = [view()]

    def move(widget, value):
        widget.value = value
        assert view() != shown[-1], f"{widget.description} = {value} changed nothing"
        shown.append(view())

    for g in (0.0, 0.5, 1.0):
        move(ex.gamma_slider, g)
    ex.paint(+1)  # a mask, shown once the map mode is on
    move(ex.mode_buttons, "map")
    move(ex.mask_slider, 0.3)
    move(ex.mode_buttons, "risk")
    move(ex.gamma_slider, 0.4)
    move(ex.risk_toggle, True)
    move(ex.crop_left, 0)
    move(ex.zoom_dropdown, 8)
    assert ex.save().is_file()


def test_scalar_blend_is_the_library_blend_and_map_blend_agrees():
    fid, real, _ = images()
    ex = viz.BlendExplorer(fid, real)
    ex.gamma_slider.value = 0.43
    np.testing.assert_array_equal(ex.blended(), blend(ex.fid, ex.real, 0.43))
    # a constant map through the fixed-point map path gives exactly the scalar blend
    ex.mask = np.ones(ex.shape, np.float32)
    ex.mask_slider.value = 0.43
    ex.mode_buttons.value = "map"
    np.testing.assert_array_equal(ex.blended(), blend(ex.fid, ex.real, 0.43))
    # a varying map is within one grey level of the float blend
    ex.mask = np.linspace(0, 1, ex.shape[1], dtype=np.float32)[None].repeat(ex.shape[0], 0)
    ex.mask_slider.value, ex.gamma_slider.value = 1.0, 0.0
    ref = blend(ex.fid, ex.real, ex.mask)
    assert np.abs(ex.blended().astype(int) - ref.astype(int)).max() <= 1


def test_map_mode_paints_and_erases_with_the_brush():
    fid, real, hr = images(64, 64)
    ex = viz.BlendExplorer(fid, real, hr=hr, gamma=1.0, gamma_in_mask=0.0, zoom=4, crop_view=64)
    ex.mode_buttons.value = "map"
    before = ex.image.value
    ex.brush_radius.value = 8
    ex.paint(+1)
    s = ex.crop_side
    cy, cx = ex.crop_top.value + s // 2, ex.crop_left.value + s // 2
    assert ex.mask[cy, cx] == pytest.approx(1.0) and ex.mask[0, 0] == 0
    assert ex.image.value != before
    assert "gamma map" in ex.readout.value
    ex.paint(-1)
    assert ex.mask[cy, cx] == 0
    ex.set_mask(np.full((64, 64), 0.5, np.float32))
    assert np.all(ex.gamma_map() == pytest.approx(0.5))


def shifted_pair(h=80, w=64, shift=4):
    """Endpoints that disagree in structure on the left half only: a vertical edge shifted by
    `shift` px there, the same edge at another contrast on the right half."""
    x = torch.arange(w, dtype=torch.float32)
    fid = torch.zeros(1, 3, h, w)
    real = torch.zeros(1, 3, h, w)
    fid[..., : h // 2, :] = 0.25 + 0.5 * torch.sigmoid((x - 20) / 0.5)
    real[..., : h // 2, :] = 0.25 + 0.5 * torch.sigmoid((x - 20 - shift) / 0.5)
    fid[..., h // 2 :, :] = 0.25 + 0.5 * torch.sigmoid((x - 40) / 0.5)
    real[..., h // 2 :, :] = 0.1 + 0.8 * torch.sigmoid((x - 40) / 0.5)
    return fid, real


def test_risk_aware_mode_keeps_the_mean_and_lowers_gamma_where_risky(monkeypatch):
    import ifcsr.risk

    calls = []
    real_fn = ifcsr.risk.ghosting_risk
    monkeypatch.setattr(ifcsr.risk, "ghosting_risk", lambda *a, **k: calls.append(1) or real_fn(*a, **k))
    fid, real = shifted_pair()
    ex = viz.BlendExplorer(fid, real, hr=fid)
    ex.mode_buttons.value = "risk"
    risk = ex.ensure_risk()
    # fires on the shift only (the risk window, 3 rho = 9 px, blurs the border between the halves)
    assert risk[:30].max() > 0.5 and risk[52:].max() < 1e-3
    for g in (0.2, 0.5, 0.8):
        ex.gamma_slider.value = g
        gm = ex.gamma_map()
        assert abs(float(gm.astype(np.float64).mean()) - g) < 1e-5  # bisection tol 1e-7 + float32 map
        assert gm[risk > 0.5].max() < g < gm[risk == 0].min()
        ref = blend(ex.fid, ex.real, gm)
        assert np.abs(ex.blended().astype(int) - ref.astype(int)).max() <= 1  # 8-bit fixed point
        assert "risk-aware map" in ex.readout.value
    assert len(calls) == 1  # the risk map is computed once per image, not per move


def test_risk_overlay_tints_the_view_only():
    fid, real = shifted_pair()
    ex = viz.BlendExplorer(fid, real, gamma=0.5)
    plain = decode(ex.image.value).astype(int)
    ex.risk_toggle.value = True
    tinted = decode(ex.image.value).astype(int)
    risk = ex.ensure_risk()
    red_shift = (tinted[..., 0] - tinted[..., 1]) - (plain[..., 0] - plain[..., 1])
    assert red_shift[risk > 0.5].mean() > 50 and abs(red_shift[risk < 1e-3].mean()) < 3  # JPEG noise only
    np.testing.assert_array_equal(ex.blended(), blend(ex.fid, ex.real, 0.5))  # saving is untinted


def test_curve_marker_moves_with_gamma():
    fid, real, hr = images()
    ex = viz.BlendExplorer(fid, real, hr=hr, curve=curve())
    ex.gamma_slider.value = 0.0
    a = decode(ex.curve_image.value)
    ex.gamma_slider.value = 1.0
    b = decode(ex.curve_image.value)
    assert a.shape == b.shape and (a != b).any()
    assert ex.curve.point(0.5) == pytest.approx((27.5, 6.5))


def test_crop_and_zoom():
    fid, real, _ = images(64, 64)
    ex = viz.BlendExplorer(fid, real, zoom=4, crop_view=64)
    crop = decode(ex.crop_image.value)
    assert crop.shape == (64, 64, 3)  # a 16x16 crop shown 4x, nearest
    assert (crop[0:4, 0:4] == crop[0, 0]).all()
    ex.zoom_dropdown.value = 2
    assert decode(ex.crop_image.value).shape == (64, 64, 3) and ex.crop_side == 32


def test_save_writes_the_full_resolution_blend(tmp_path):
    fid, real, _ = images()
    ex = viz.BlendExplorer(fid, real, save_dir=tmp_path, name="cat")
    ex.gamma_slider.value = 0.25
    path = ex.save()
    assert path == tmp_path / "cat_gamma0.25.png"
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(path)), blend(ex.fid, ex.real, 0.25))
    ex.mode_buttons.value = "map"
    path = ex.save()
    assert path.name == "cat_gammamap.png" and (tmp_path / "cat_gammamap_map.png").is_file()


def test_explorer_rejects_bad_input():
    fid, real, hr = images()
    with pytest.raises(ValueError, match="differ in size"):
        viz.BlendExplorer(fid, real[..., :40])
    with pytest.raises(ValueError, match="hr"):
        viz.BlendExplorer(fid, real, hr=hr[..., :40])
    with pytest.raises(ValueError, match="mask"):
        viz.BlendExplorer(fid, real, mask=np.ones((3, 3)))
    with pytest.raises(GammaError):
        viz.BlendExplorer(fid, real, gamma=1.5)
    with pytest.raises(ValueError, match="no column"):
        viz.BlendExplorer(fid, real, curve=curve(), curve_axes=("psnr", "musiq"))


def test_big_images_skip_live_metrics_with_a_note():
    fid, real, hr = images()
    ex = viz.BlendExplorer(fid, real, hr=hr, live_metrics_max_pixels=100)
    assert ex.metrics is None and "no live metrics" in ex.readout.value


def test_time_updates_runs_the_real_handler():
    fid, real, hr = images()
    ex = viz.BlendExplorer(fid, real, hr=hr)
    df = viz.time_updates(ex, np.linspace(0, 1, 5))
    assert len(df) == 5 and (df["total"] > 0).all() and ex.moves >= 5


# ----------------------------------------------------------------------------- curves and maps


def test_curve_points_from_summary_tidy_and_dict():
    s = curve()
    g, x, _ = viz.curve_points(s, "psnr", "niqe")
    assert list(g) == list(s["gamma"]) and x[0] == 30
    tidy = s.melt(id_vars=["method", "gamma", "gamma_map"], value_vars=["psnr", "niqe"], var_name="metric")
    _, x2, _ = viz.curve_points(tidy, "psnr", "niqe")
    np.testing.assert_allclose(x2, x)
    g3, _, y3 = viz.curve_points({"gamma": [1, 0], "psnr": [1, 2], "niqe": [3, 4]}, "psnr", "niqe")
    assert list(g3) == [0, 1] and list(y3) == [4, 3]


def test_baseline_points_separate_methods_and_maps():
    s = pd.concat([curve(), pd.DataFrame([
        {"method": "bicubic", "gamma": np.nan, "gamma_map": "", "psnr": 29.0, "niqe": 9.0},
        {"method": "IFCSR", "gamma": 0.4, "gamma_map": "ramp", "psnr": 28.0, "niqe": 7.0},
        {"method": "DNI", "gamma": 0.0, "gamma_map": "", "psnr": 27.0, "niqe": 8.0},
        {"method": "DNI", "gamma": 1.0, "gamma_map": "", "psnr": 25.0, "niqe": 6.0}])])
    pts = viz.baseline_points(s, "psnr", "niqe")
    assert set(pts) == {"bicubic", "IFCSR [ramp]", "DNI"}
    assert list(pts["DNI"][0]) == [27.0, 25.0]


def test_disk_and_gamma_from_mask():
    d = viz.disk((21, 21), (10, 10), 6, feather=0.5)
    assert d[10, 10] == 1 and d[0, 0] == 0 and 0 < d[10, 15] < 1
    g = viz.gamma_from_mask(d, 0.0, 1.0)
    assert g[10, 10] == 0 and g[0, 0] == 1


def test_face_mask_finds_the_astronaut_and_texture_mask_is_bounded():
    from ifcsr.data import load_sample

    m = viz.face_mask(load_sample("astronaut"))
    ys, xs = np.nonzero(m > 0.5)
    # the face is around rows 70-160, columns 175-265 of the 512x512 photo
    assert 60 < ys.mean() < 180 and 170 < xs.mean() < 280
    t = viz.texture_mask(load_sample("chelsea"))
    assert t.shape == (300, 451) and 0 <= t.min() and t.max() <= 1 and t.std() > 0.05


# ----------------------------------------------------------------------------- figures


def test_figures_build():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = viz.depth_weights_figure(ks=(1, 7))
    assert len(fig.axes) == 3
    hist = [dict(stage=1, step=i, loss=1.0 / (i + 1)) for i in range(12)]
    hist += [dict(stage=2, step=i, loss=0.5, gamma_mean=0.5) for i in range(12)]
    assert len(viz.loss_curves_figure(hist).axes) >= 2
    with pytest.raises(ValueError, match="no loss"):
        viz.loss_curves_figure([])
    fid, real, _ = images(64, 64)
    ends = {"a": Endpoints(fid, real), "b": Endpoints(fid, fid)}
    fig = viz.ablation_figure(ends)
    assert "mean 0.0 grey levels" in [a.get_xlabel() for a in fig.axes]
    table = pd.DataFrame({"MSE": [0.1, 0.2], "layer 1": [0.3, 0.1]}, index=["fidelity", "realism"])
    viz.per_layer_figure(table)
    viz.metric_vs_gamma_figure({"x": curve()}, ["psnr", "niqe"])
    plt.close("all")
