"""The optional stage-2 texture and overshoot terms (ifcsr.losses, LossConfig.texture_* / overshoot_*)."""

from dataclasses import replace

import pytest
import torch

from ifcsr.config import LossConfig, TrainConfig
from ifcsr.errors import InputError
from ifcsr.losses import build_feature_net, feature_maps, overshoot_loss, patch_gram, texture_loss
from ifcsr.models import lora_parameters
from ifcsr.train import Trainer, quick_config
from tests.test_artefacts import _blur, _photo
from tests.test_core import FixedData, make_model
from tests.test_hed import hed_weights, perceptual  # noqa: F401  (fixtures)


def test_off_by_default_validated_and_optional_in_saved_configs():
    c = LossConfig()
    assert c.texture_weight == 0.0 and c.overshoot_weight == 0.0  # the paper has neither
    for bad in (dict(texture_weight=-1), dict(overshoot_weight=float("inf")), dict(texture_taps=("relu9",)),
                dict(texture_taps=()), dict(texture_patch=4),  # relu3_3 sees 1x1 of a 4-px patch
                dict(overshoot_window=4)):
        with pytest.raises(ValueError):
            LossConfig(**bad)
    cfg = TrainConfig(loss=LossConfig(texture_weight=2.0, texture_taps=["relu1_2"], overshoot_weight=5.0))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()  # a checkpoint from before these terms: trained without them
    for key in [k for k in old["loss"] if k.startswith(("texture_", "overshoot_"))]:
        del old["loss"][key]
    assert TrainConfig.from_dict(old).loss.texture_weight == 0.0


def test_patch_gram_values_and_shape():
    f = torch.zeros(2, 3, 8, 12)
    f[:, 0] = 2.0
    f[:, 1, :, :6] = 1.0  # channel 1 lives only in the left windows
    g = patch_gram(f, 4)
    assert g.shape == (2, 6, 3, 3)  # 2 x 3 windows of 4 x 4 per image
    assert torch.allclose(g[0, 0], torch.tensor([[4.0, 2, 0], [2, 1, 0], [0, 0, 0]]))
    assert torch.allclose(g[0, 1, 1, 1], torch.tensor(0.5))  # window (0, 1): columns 4-7, half in channel 1
    assert torch.allclose(g[0, 2, 1, 1], torch.tensor(0.0))  # window (0, 2): columns 8-11, none
    assert patch_gram(f, 32).shape == (2, 1, 3, 3)  # a map smaller than the patch is one window


@pytest.mark.parametrize("name", ["gravel", "grass"])
def test_texture_loss_wants_statistics_not_positions(perceptual, name):  # noqa: F811
    """On a stationary texture (scikit-image's gravel and grass photos), the statistics survive a
    shift of a few pixels but not a blur: the texture loss of a shifted copy stays well below that
    of a blurred one, while pixel MSE says the opposite. That is what lets the term ask for
    grain without asking for its exact position."""
    import skimage.data

    grey = torch.from_numpy(getattr(skimage.data, name)()[:128, :128].copy()).float() / 255
    hr = grey.expand(1, 3, 128, 128).contiguous()
    shifted, blurred = torch.roll(hr, shifts=(3, 3), dims=(2, 3)), _blur(hr, 1.5)
    fy = feature_maps(perceptual, hr)

    def tex(x):
        return float(texture_loss(feature_maps(perceptual, x), fy, [0, 1, 2], 32))

    assert tex(hr) == 0.0
    assert ((shifted - hr) ** 2).mean() > 3 * ((blurred - hr) ** 2).mean()
    # measured (HED VGG16): shift 0.058 / 0.046, blur 0.60 / 0.68 (gravel / grass). The 3x margin
    # leaves room for any float32 build of the same network.
    assert 3 * tex(shifted) < tex(blurred)


def test_feature_maps_of_the_lpips_network_and_errors():
    net = build_feature_net("vgg-random", seed=0)
    maps = feature_maps(net, torch.rand(1, 3, 32, 32))
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512, 512] and maps[1].shape[-1] == 16
    with pytest.raises(Exception, match="no feature maps"):
        feature_maps(torch.nn.Identity(), torch.rand(1, 3, 32, 32))


def test_overshoot_loss_is_zero_inside_the_local_range_and_catches_halos():
    hr = _photo("coffee", 96)
    assert overshoot_loss(hr, hr) == 0
    # a one-pixel shift stays inside the 5x5 envelope; a strong unsharp mask rings past it
    moved = torch.cat([hr[..., :1], hr[..., :-1]], dim=3)  # x[j] = hr[j - 1] (x[0] = hr[0])
    assert overshoot_loss(moved, hr) == 0
    sharp = (hr + 2.0 * (hr - _blur(hr, 2.0))).clamp(0, 1)
    assert overshoot_loss(sharp, hr) > 20 * overshoot_loss(_blur(hr, 1.0), hr)


def test_edge_only_overshoot_ignores_grain_in_flat_regions_and_matches_halo_scores_mask():
    from ifcsr.evaluation.artefacts import halo_score
    from ifcsr.losses import edge_mask

    hr = _photo("coffee", 96)
    mask = edge_mask(hr, 0.9)
    assert mask.shape == (1, 1, 96, 96) and mask.dtype == torch.bool
    # at least the top 10 % of gradients are in it, dilated by 7 px; the flat rest is not
    assert 0.1 <= mask.float().mean() < 0.9
    # grain added only away from edges: the whole-image penalty sees it, the edge-only one does not
    grain = (hr + 0.2 * (torch.rand_like(hr) - 0.5) * (~mask)).clamp(0, 1)
    assert overshoot_loss(grain, hr) > 0 and overshoot_loss(grain, hr, edges=0.9) == 0
    # and halos at edges weigh more in the edge-only mean (same excursions, fewer pixels)
    sharp = (hr + 2.0 * (hr - _blur(hr, 2.0))).clamp(0, 1)
    assert overshoot_loss(sharp, hr, edges=0.9) > overshoot_loss(sharp, hr)
    # halo_score measures the same pixels: it too ignores the off-edge grain
    assert halo_score(grain[0], hr[0]) == 0
    with pytest.raises(ValueError, match="overshoot_edges"):
        replace(quick_config().loss, overshoot_edges=1.5)


def test_rms_overshoot_weighs_a_few_large_excursions_above_many_small_ones():
    y = torch.full((1, 3, 32, 32), 0.5)
    small = y.clone(); small[..., :, :16] += 0.01    # half the pixels 0.01 over the (flat) range
    large = y.clone(); large[..., :1, :] += 0.16     # 1/32 of them 0.16 over: the same mean
    assert torch.isclose(overshoot_loss(small, y), overshoot_loss(large, y))
    # rms: sqrt(0.16^2 / 32) = 0.028 vs sqrt(0.01^2 / 2) = 0.0071, a ratio of 4
    assert overshoot_loss(large, y, reduce="rms") > 3 * overshoot_loss(small, y, reduce="rms")
    assert torch.isclose(overshoot_loss(y, y, reduce="rms"), torch.tensor(1e-6))  # sqrt(0 + eps), finite
    inside = y.clone().requires_grad_()
    overshoot_loss(inside, y, reduce="rms").backward()
    assert torch.isfinite(inside.grad).all()
    with pytest.raises(ValueError, match="reduce"):
        overshoot_loss(y, y, reduce="max")
    with pytest.raises(ValueError, match="overshoot_reduce"):
        replace(quick_config().loss, overshoot_reduce="max")


def _cfg(model, **loss_kw):
    base = quick_config(steps=2, crop_size=32, batch_size=2, feature_net="vgg-random")
    return replace(base, model=model.mcfg, loss=replace(base.loss, **loss_kw))


def test_stage2_terms_reach_the_realism_adapter_and_stage1_ignores_them(tiny_backbone_dir):
    net = build_feature_net("vgg-random", seed=0)
    states = {}
    for kw in (dict(), dict(texture_weight=5.0, texture_patch=16, overshoot_weight=100.0)):
        model = make_model(tiny_backbone_dir)
        tr = Trainer(model, FixedData(), config=_cfg(model, **kw), feature_net=net, progress=False)
        tr.train_stage(1)
        fid = {k: v.clone() for k, v in lora_parameters(model.unet, "fidelity").items()}
        tr.train_stage(2)
        rows = [r for r in tr.history if r["stage"] == 2]
        assert all(("texture" in r) == bool(kw) and ("overshoot" in r) == bool(kw) for r in rows)
        assert not any("texture" in r for r in tr.history if r["stage"] == 1)
        real = {k: v.clone() for k, v in lora_parameters(model.unet, "realism").items()}
        states[bool(kw)] = fid, real
    (fid0, real0), (fid1, real1) = states[False], states[True]
    assert all(torch.equal(fid0[k], fid1[k]) for k in fid0)  # stage 1 trains exactly as without the terms
    assert any(not torch.equal(real0[k], real1[k]) for k in real0)  # the terms reach f_phi


def test_stage_degradation_overrides_the_runs_for_that_stage_only():
    from ifcsr.config import StageConfig
    from ifcsr.data.degradations import RealESRGANDegradation
    from ifcsr.recipes import make_dataset, stage_degradation, tiny_preset

    cfg = tiny_preset()
    assert cfg.stage2.degradation == "mixed:0.4" and cfg.stage1.degradation is None  # issue 13's stage 2
    mix = stage_degradation(cfg, cfg.stage2)
    assert mix is not None and mix.p_bicubic == pytest.approx(0.4)  # a float parsed from "0.4"
    cfg = replace(cfg, stage2=replace(cfg.stage2, degradation=None))
    assert stage_degradation(cfg, cfg.stage2) is None  # the run's own
    # unset, it is not written: saved configs and endpoint-cache fingerprints stay as they were
    assert "degradation" not in cfg.to_dict()["stage2"] and TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg = replace(cfg, stage2=replace(cfg.stage2, degradation="realesrgan"))
    assert isinstance(stage_degradation(cfg, cfg.stage2), RealESRGANDegradation)
    assert stage_degradation(cfg, cfg.stage1) is None
    data = make_dataset(cfg, 64, seed=0, degradation=stage_degradation(cfg, cfg.stage2))
    assert isinstance(data.degradation, RealESRGANDegradation)
    with pytest.raises(ValueError):
        StageConfig(degradation="")
    assert TrainConfig.from_dict(cfg.to_dict()).stage2.degradation == "realesrgan"
    old = cfg.to_dict()  # a checkpoint from before the field: its stages used the run's degradation
    del old["stage2"]["degradation"]
    assert TrainConfig.from_dict(old).stage2.degradation is None


def test_bicubic_consistent_tells_plain_bicubic_lr_from_real_esrgan_lr():
    from ifcsr.data.degradations import BicubicDegradation, RealESRGANDegradation
    from ifcsr.losses import bicubic_consistent

    hr = _photo(size=64)
    bic = BicubicDegradation(4)(hr)
    # The same resize recomputed in the loss matches to the grey level (0 here; the tolerance is
    # half a level so a different build's resampling rounding cannot flip a bicubic sample).
    real = torch.cat([RealESRGANDegradation(4)(hr, seed=s) for s in range(6)])
    lr = torch.cat([bic, real])
    flags = bicubic_consistent(lr, hr.expand(len(lr), -1, -1, -1))
    assert flags.tolist() == [True] + [False] * 6
    # one grey level of noise on the bicubic LR is no longer bicubic
    noisy = (bic + torch.where(torch.rand_like(bic) < 0.5, 1.0, -1.0) / 255).clamp(0, 1)
    assert not bicubic_consistent(noisy, hr)[0]
    with pytest.raises(InputError, match="bicubic_consistent"):
        bicubic_consistent(bic[0], hr)


def test_overshoot_on_bicubic_samples_only():
    y = torch.full((2, 3, 32, 32), 0.5)
    x = y.clone(); x[:, :, :4, :] += 0.2           # both samples overshoot by the same amount
    both = overshoot_loss(x, y)
    first = overshoot_loss(x, y, samples=torch.tensor([True, False]))
    # the second sample's excursions count as zero; the mean still runs over the whole batch
    assert torch.isclose(first, both / 2)
    assert overshoot_loss(x, y, samples=torch.tensor([False, False])) == 0
    assert torch.isclose(overshoot_loss(x, y, samples=torch.tensor([True, True])), both)
    with pytest.raises(InputError, match="samples"):
        overshoot_loss(x, y, samples=torch.tensor([True]))
    with pytest.raises(ValueError, match="overshoot_on"):
        replace(quick_config().loss, overshoot_on="degraded")
    cfg = replace(quick_config(), loss=replace(quick_config().loss, overshoot_on="bicubic"))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # at its default the key is not written: checkpoint hashes and cache fingerprints stay
    assert "overshoot_on" not in quick_config().to_dict()["loss"]


def test_stage2_overshoot_on_bicubic_logs_the_bicubic_fraction(tiny_backbone_dir):
    model = make_model(tiny_backbone_dir)
    cfg = _cfg(model, overshoot_weight=100.0, overshoot_on="bicubic")
    tr = Trainer(model, FixedData(), config=cfg, feature_net=build_feature_net("vgg-random", seed=0),
                 progress=False)
    tr.train_stage(2)
    rows = [r for r in tr.history if r["stage"] == 2]
    # FixedData's LR is bicubic of its HR: every sample pays
    assert rows and all(r["bicubic_frac"] == 1.0 and r["overshoot"] >= 0 for r in rows)
