"""Tiled inference (grid, Gaussian weights, tiled VAE and UNet) and the colour fixes."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from ifcsr import tiling
from ifcsr.data import load_sample
from ifcsr.models import IFCSR, load_backbone, lora_parameters
from ifcsr.tiling import (
    TileConfig,
    adain_color_fix,
    core_spans,
    gaussian_weights,
    tile_starts,
    wavelet_color_fix,
)


def psnr(a, b):
    return -10 * math.log10(torch.mean((a - b) ** 2).item())


def photo(h, w, name="chelsea"):
    """An h x w crop of a scikit-image photo as a (1, 3, h, w) tensor in [0, 1]."""
    x = torch.from_numpy(load_sample(name)[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
    assert x.shape[-2:] == (h, w)
    return x


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    """As conftest's tiny_backbone_dir (random tiny backbone, save_pretrained, from_pretrained),
    with the UNet's output conv at std 0.01 instead of 0.02: its one step then changes ~30% of
    the latent instead of ~70% (a random UNet's magnitude means nothing; the tiling error
    scales with it, so the agreement test uses a strong but not absurd residual)."""
    from ifcsr.models import build_tiny_backbone, save_backbone

    bb = build_tiny_backbone(seed=0)
    torch.manual_seed(1)
    torch.nn.init.normal_(bb.unet.conv_out.weight, std=0.01)
    return save_backbone(bb, tmp_path_factory.mktemp("tiny-tiling") / "backbone")


@pytest.fixture(scope="module")
def model(backbone_dir):
    torch.manual_seed(0)  # LoRA A is drawn from the global generator
    m = IFCSR(load_backbone(backbone_dir))
    g = torch.Generator().manual_seed(3)
    for n, p in lora_parameters(m.unet, "realism").items():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.02
    return m.eval()


# --------------------------------------------------------------------------- grid and weights


@pytest.mark.parametrize("length,tile,overlap", [(128, 128, 32), (129, 128, 32), (300, 128, 32), (37, 96, 32),
                                                 (1000, 96, 32), (212, 64, 16)])
def test_tile_starts_cover_any_length(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    t = min(tile, length)
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        assert 0 <= s and s + t <= length
        covered[s:s + t] = True
    assert covered.all()
    assert starts[-1] == length - t  # the last tile is flush with the end
    for a, b in zip(starts, starts[1:]):
        assert 0 < b - a <= tile - overlap  # neighbours share at least `overlap`


def test_core_spans_partition():
    for length, core in [(100, 32), (96, 32), (5, 32)]:
        spans = core_spans(length, core)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(0 < e - s <= core for s, e in spans)


def test_gaussian_weights_peak_in_the_middle_and_stay_positive():
    w = gaussian_weights(96, 64)
    assert w.shape == (1, 1, 96, 64)
    assert torch.allclose(w, w.flip(-1)) and torch.allclose(w, w.flip(-2))
    assert w[0, 0, 48, 32] > 1e4 * w[0, 0, 0, 32] > 0
    assert w.min() > 0


def test_tile_config_validates():
    with pytest.raises(ValueError, match="latent_overlap"):
        TileConfig(latent_tile=64, latent_overlap=64)
    with pytest.raises(ValueError, match="positive"):
        TileConfig(vae_tile=0)


def test_tile_config_for_the_tiny_backbone(model):
    cfg = TileConfig.for_model(model)
    assert (cfg.latent_tile, cfg.latent_overlap) == (192, 48)
    with pytest.raises(ValueError, match="multiple"):
        model.infer(photo(16, 16), tile=replace(cfg, latent_tile=30, latent_overlap=8))


# --------------------------------------------------------------------------- tiled VAE and UNet


def test_tiled_vae_matches_untiled_on_odd_sizes(model):
    x = photo(100, 76)  # not multiples of the 32-pixel VAE tiles
    cfg = replace(TileConfig.for_model(model), vae_tile=32)
    with torch.no_grad():
        z = model.encode(x)
        z_t = tiling.tiled_encode(model, x, cfg)
        assert (z_t - z).abs().max() < 1e-4
        assert (tiling.tiled_decode(model, z, cfg) - model.decode(z)).abs().max() < 1e-4


def test_tiled_vae_needs_its_margin(model):
    """Without enough margin the tile edges differ: the margin is what makes it exact."""
    x = photo(96, 96)
    cfg = replace(TileConfig.for_model(model), vae_tile=32, vae_margin=2)
    with torch.no_grad():
        assert (tiling.tiled_decode(model, model.encode(x), cfg) - model.decode(model.encode(x))).abs().max() > 1e-2


def test_groupnorm_statistics_are_shared_and_restored(model):
    x = photo(64, 64)
    vae = model.vae
    with torch.no_grad():
        gn = tiling.GroupNormStats(vae)
        with gn:
            model.encode(x)      # accumulate the whole image
            gn.freeze()
            z_half = model.encode(x[..., :32, :])  # a tile normalised with the whole image's statistics
        assert gn.stats and all("forward" not in m.__dict__ for m in vae.modules() if isinstance(m, nn.GroupNorm))
        z_plain = model.encode(x[..., :32, :])    # plain GroupNorm: the tile's own statistics
        z_full = model.encode(x)
    assert (z_half[..., :16, :] - z_full[..., :16, :]).abs().max() < 1e-4
    assert (z_plain[..., :16, :] - z_full[..., :16, :]).abs().max() > 1e-3


def test_tiled_and_untiled_inference_agree(model, monkeypatch):
    """LR 60x63 -> 240x252 output: sides not multiples of the 192 tile, a 2 x 2 grid of UNet tiles."""
    lr = photo(60, 63)
    calls = []
    denoise = model.denoise
    monkeypatch.setattr(model, "denoise", lambda z, a: calls.append(tuple(z.shape)) or denoise(z, a))
    ends_t = model.infer(lr, tile=True)
    assert sum(s[-2:] == (192, 192) for s in calls) == 4
    ends = model.infer(lr, tile=False)
    assert ends_t.fidelity.shape == ends.fidelity.shape == (1, 3, 240, 252)
    assert torch.isfinite(ends_t.fidelity).all() and torch.isfinite(ends_t.realism).all()
    # The UNet changes the image a lot and the adapters differ, so the check below means something.
    with torch.no_grad():
        z = model.encode(model.prepare(lr))
        assert (model.denoise(z, "fidelity") - z).norm() > 0.2 * z.norm()
    assert psnr(ends.fidelity, ends.realism) < 30
    assert psnr(ends_t.fidelity, ends.fidelity) >= 40
    assert psnr(ends_t.realism, ends.realism) >= 40


def test_per_tile_groupnorm_is_what_the_shared_statistics_fix(model):
    """The peers' per-tile GroupNorm drifts from the untiled result; shared statistics do not."""
    lr = photo(60, 63)
    cfg = TileConfig.for_model(model)
    untiled = model.infer_branch(lr, tile=False)
    shared = model.infer_branch(lr, tile=cfg)
    per_tile = model.infer_branch(lr, tile=replace(cfg, groupnorm="tile"))
    assert psnr(per_tile, untiled) < psnr(shared, untiled) - 3


def test_tiled_batched_sequential_and_branch_agree(model):
    lr = photo(30, 41)
    cfg = replace(TileConfig.for_model(model), latent_tile=64, latent_overlap=16, vae_tile=48)
    a = model.infer(lr, tile=cfg)
    b = model.infer(lr, tile=cfg, batched=False)
    r = model.infer_branch(lr, "realism", tile=cfg)
    assert a.fidelity.shape == (1, 3, 120, 164)
    assert (a.fidelity - b.fidelity).abs().max() < 1e-4 and (a.realism - b.realism).abs().max() < 1e-4
    assert (r - a.realism).abs().max() < 1e-4


def test_tiling_switches_on_automatically_above_the_threshold(model, monkeypatch):
    seen = []
    real = tiling.infer_tiled
    monkeypatch.setattr(tiling, "infer_tiled", lambda *a, **k: seen.append(1) or real(*a, **k))
    small = replace(TileConfig.for_model(model), latent_tile=32, latent_overlap=8, vae_tile=32, auto_latent=40)
    monkeypatch.setattr(TileConfig, "for_model", classmethod(lambda cls, m: small))
    model.infer(photo(8, 8))                 # 32 x 32 output: below the threshold
    assert seen == []
    model.infer(photo(12, 12))               # 48 x 48 output: above it
    assert seen == [1]
    model.infer(photo(12, 12), tile=False)   # disabled
    assert seen == [1]
    model.infer_branch(photo(8, 8), tile=True)  # forced
    assert seen == [1, 1]


def test_tile_and_color_fix_options_are_checked(model):
    with pytest.raises(TypeError, match="tile"):
        model.infer(photo(8, 8), tile="yes")
    with pytest.raises(ValueError, match="color_fix"):
        model.infer(photo(8, 8), color_fix="histogram")
    with pytest.raises(ValueError, match="color_fix"):
        model.infer_branch(photo(8, 8), color_fix="lab")


# --------------------------------------------------------------------------- colour fix


def test_adain_color_fix_matches_mean_and_std():
    g = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 16, 16, generator=g) * 0.5 + 0.25
    target = (torch.rand(2, 3, 64, 64, generator=g) * 0.3 + torch.tensor([0.1, 0.5, 0.3]).view(1, 3, 1, 1))
    out = adain_color_fix(target, source)
    src_up = torch.nn.functional.interpolate(source, size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    assert out.shape == target.shape
    assert torch.allclose(out.mean((2, 3)), src_up.mean((2, 3)), atol=1e-3)
    assert torch.allclose(out.std((2, 3)), src_up.std((2, 3)), atol=1e-3)


def test_wavelet_color_fix_keeps_detail_and_takes_colour():
    x = photo(64, 64)
    shifted = (x * 0.8 + torch.tensor([0.15, -0.05, 0.05]).view(1, 3, 1, 1)).clamp(0, 1)  # colour cast
    out = wavelet_color_fix(shifted, x)
    assert (out.mean((2, 3)) - x.mean((2, 3))).abs().max() < 0.01
    assert (shifted.mean((2, 3)) - x.mean((2, 3))).abs().max() > 0.05
    lap_k = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).expand(3, 1, 3, 3)
    lap = lambda t: torch.nn.functional.conv2d(t, lap_k, groups=3).abs().mean()
    assert lap(out - shifted) < 0.05 * lap(shifted)  # only low frequencies changed: the detail is the target's


@pytest.mark.parametrize("method", ["adain", "wavelet"])
def test_color_fix_brings_the_output_mean_to_the_lr(model, method):
    lr = photo(24, 32, "coffee")
    plain = model.infer(lr, tile=False)
    fixed = model.infer(lr, tile=False, color_fix=method)
    tiled = model.infer(lr, tile=replace(TileConfig.for_model(model), latent_tile=64, latent_overlap=16, vae_tile=48),
                        color_fix=method)
    target = lr.mean((2, 3))
    err_plain = (plain.fidelity.mean((2, 3)) - target).abs().max()
    assert err_plain > 0.2  # the random VAE gets the colour badly wrong
    # AdaIN sets the mean exactly (up to clipping); the wavelet fix swaps the low frequencies,
    # and clipping the output's own high frequencies to [0, 1] moves the mean a little.
    tol = 1e-3 if method == "adain" else 0.05
    for ends in (fixed, tiled):
        for x in (ends.fidelity, ends.realism):
            assert (x.mean((2, 3)) - target).abs().max() < tol
    branch = model.infer_branch(lr, "fidelity", tile=False, color_fix=method)
    assert (branch - fixed.fidelity).abs().max() < 1e-5


def test_wavelet_levels_set_the_band_taken_from_the_lr(backbone_dir):
    """ModelConfig.color_fix_levels reaches infer and infer_branch; fewer levels take a wider
    band from the LR (all but the finest detail)."""
    from ifcsr.config import ModelConfig, TrainConfig

    lr = photo(24, 32, "coffee")
    outs = {}
    for levels in (2, 5):
        m = IFCSR(load_backbone(backbone_dir), TrainConfig(model=ModelConfig(color_fix="wavelet",
                                                                             color_fix_levels=levels)))
        raw = m.infer(lr, tile=False, color_fix=None)
        outs[levels] = m.infer(lr, tile=False)  # color_fix="config": the model's levels
        up = m.prepare(lr)
        torch.testing.assert_close(outs[levels].fidelity, wavelet_color_fix(raw.fidelity, up, levels=levels))
        torch.testing.assert_close(m.infer_branch(lr, "fidelity", tile=False), outs[levels].fidelity,
                                   atol=1e-5, rtol=0)
    assert (outs[2].fidelity - outs[5].fidelity).abs().max() > 1e-3
    # a 5-level fix keeps the target's own pattern of period 16 px; a 2-level one takes that band
    # from the source
    x = photo(64, 64)
    wave = 0.1 * torch.sin(2 * math.pi * torch.arange(64.0) / 16).view(1, 1, 1, 64)
    kept = {lv: ((wavelet_color_fix(x + wave, x, levels=lv) - x) * wave).mean() / (wave * wave).mean()
            for lv in (2, 5)}
    assert kept[5] > 0.8 and kept[2] < 0.3, kept
    with pytest.raises(ValueError, match="color_fix_levels"):
        ModelConfig(color_fix_levels=0)
