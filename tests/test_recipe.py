"""Stage 0, the tiny recipe end to end, the bundled checkpoint and `ifcsr demo`."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ifcsr.config import Stage0Config
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR
from ifcsr.recipes import make_dataset, smoke_preset, train_recipe
from ifcsr.train import Trainer


def test_stage0_lowers_reconstruction_and_denoising_losses():
    torch.manual_seed(0)
    cfg = smoke_preset()
    cfg = replace(cfg, stage0=Stage0Config(vae_steps=40, unet_steps=40, batch_size=4, crop_size=32,
                                           vae_lr=2e-3, unet_lr=2e-3))
    data = make_dataset(cfg, 32, degradation=None)
    tr = Trainer(None, data, config=cfg, progress=False)
    bb = tr.train_stage0()
    vae = [r["loss"] for r in tr.history if r.get("part") == "vae"]
    unet = [r["loss"] for r in tr.history if r.get("part") == "unet"]
    assert np.mean(vae[-8:]) < 0.7 * np.mean(vae[:8]), (vae[:8], vae[-8:])
    assert np.mean(unet[-10:]) < 0.9 * np.mean(unet[:10]), (unet[:10], unet[-10:])
    assert bb.vae.config.scaling_factor != 1.0  # latent scale measured on the data


def test_smoke_recipe_end_to_end_and_resume(tmp_path):
    model, final = train_recipe(smoke_preset(), tmp_path / "run", progress=False, log=lambda *_: None)
    for f in ("config.json", "fidelity.safetensors", "realism.safetensors", "history.json", "backbone/unet/config.json"):
        assert (final / f).is_file(), f
    hist = json.loads((final / "history.json").read_text())
    assert {r["stage"] for r in hist} == {0, 1, 2}
    loaded = IFCSR.load(final)
    assert loaded.config == model.config
    lr = torch.rand(1, 3, 8, 8)
    a, b = model.infer(lr), loaded.infer(lr)
    assert torch.equal(a.fidelity, b.fidelity) and torch.equal(a.realism, b.realism)
    # a second run resumes: stage 0 is reused, stages 1-2 are complete
    msgs = []
    train_recipe(smoke_preset(), tmp_path / "run", progress=False, log=msgs.append)
    assert any("reusing" in m for m in msgs) and any("already complete" in m for m in msgs)


def test_fidelity_from_retrains_only_stage2(tmp_path):
    """`ifcsr train --fidelity-from CK`: stage 2 on CK's backbone and fidelity adapter, nothing else."""
    from ifcsr.models import adapter_state_dict

    _, base = train_recipe(smoke_preset(), tmp_path / "base", progress=False, log=lambda *_: None)
    cfg = replace(smoke_preset(), stage2=replace(smoke_preset().stage2, seed=5))
    model, final = train_recipe(cfg, tmp_path / "s2", stages=(2,), fidelity_from=base, progress=False,
                                log=lambda *_: None)
    old = IFCSR.load(base)
    fid_old, fid_new = adapter_state_dict(old.unet, "fidelity"), adapter_state_dict(model.unet, "fidelity")
    assert all(torch.equal(fid_old[k], fid_new[k]) for k in fid_old)
    real_old, real_new = adapter_state_dict(old.unet, "realism"), adapter_state_dict(model.unet, "realism")
    assert any(not torch.equal(real_old[k], real_new[k]) for k in real_old)
    hist = json.loads((final / "history.json").read_text())
    assert [r["stage"] for r in hist].count(2) == cfg.stage2.steps and {0, 1} <= {r["stage"] for r in hist}
    meta = json.loads((final / "ifcsr.json").read_text())
    assert meta["stages_0_1_from"] == str(base) and "stage0_s" in meta["timings"]
    with pytest.raises(ValueError, match="stages"):
        train_recipe(cfg, tmp_path / "bad", stages=(1, 2), fidelity_from=base, progress=False)


def test_bundled_checkpoint_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (BUNDLED_CHECKPOINT / "config.json").is_file(), "the bundled checkpoint is missing"
    model = IFCSR.load()
    assert model.backbone.is_tiny
    assert model.config.loss.feature_net == "vgg-hed"
    meta = json.loads((BUNDLED_CHECKPOINT / "ifcsr.json").read_text())
    assert meta["feature_net"] == "vgg-hed"
    size = sum(p.stat().st_size for p in BUNDLED_CHECKPOINT.rglob("*") if p.is_file())
    assert size < 10 * 2**20, f"bundled checkpoint is {size / 2**20:.1f} MB"
    ends = model.infer(torch.rand(1, 3, 16, 16))
    assert (ends.fidelity - ends.realism).abs().mean() > 1e-3


def test_bundled_checkpoint_is_the_tiny_preset():
    """The bundled weights were made by `ifcsr train --preset tiny`: its config is the preset's."""
    from ifcsr.recipes import tiny_preset

    bundled, preset = IFCSR.load().config.to_dict(), tiny_preset().to_dict()
    bundled["model"].pop("backbone"), preset["model"].pop("backbone")  # a path once trained
    assert bundled == preset


def test_demo_writes_every_file(tmp_path, capfd):
    from ifcsr.cli.app import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--step", "0.25", "--no-fetch"]) == 0
    printed = capfd.readouterr()
    # Issue 17: labelled directions, honest counts, and none of peft's / bitsandbytes' noise.
    assert "PSNR-Y dB (higher better)" in printed.out and "NIQE (lower better)" in printed.out
    assert "grid of 5 gammas: " in printed.out and "psnr on 5" in printed.out
    for noise in ("peft_config", "gemm_4bit_forward", "kernels-community"):
        assert noise not in printed.err and noise not in printed.out
    names = {"lr.png", "fidelity.png", "realism.png", "demo.png", "metrics.csv", "summary.csv"}
    names |= {f"blend_gamma_{g:.2f}.png" for g in (0, 0.25, 0.5, 0.75, 1)}
    assert names <= {p.name for p in out.iterdir()}
    import pandas as pd

    tidy = pd.read_csv(out / "metrics.csv")
    assert list(tidy.columns) == ["image", "gamma", "metric", "value", "lower_better"]
    assert {"psnr", "ssim"} <= set(tidy.metric)
    assert sorted(tidy.gamma.unique()) == [0, 0.25, 0.5, 0.75, 1]
    # every metric that ran, ran on the whole grid
    assert (tidy.groupby("metric")["gamma"].nunique() == 5).all() and "niqe" in set(tidy.metric)


def test_demo_on_user_image_and_bad_file(tmp_path, capsys):
    from PIL import Image

    from ifcsr.cli.app import main

    Image.fromarray((np.random.default_rng(0).random((32, 28, 3)) * 255).astype(np.uint8)).save(tmp_path / "my.png")
    assert main(["demo", "--image", str(tmp_path / "my.png"), "--out", str(tmp_path / "o"), "--step", "0.5"]) == 0
    tidy = __import__("pandas").read_csv(tmp_path / "o" / "metrics.csv")
    assert set(tidy.metric) == {"niqe"}  # no HR: no full-reference metric, NIQE on the whole grid
    assert sorted(tidy.gamma) == [0, 0.5, 1]
    (tmp_path / "bad.png").write_text("not an image")
    assert main(["demo", "--image", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o2")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # rejected before anything was created
    assert main(["demo", "--photo", "nonsense", "--out", str(tmp_path / "o3")]) == 2
    assert "nonsense" in capsys.readouterr().err and not (tmp_path / "o3").exists()
    # An input too small for every metric: one clear line, not a raw empty table.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    assert main(["demo", "--image", str(tmp_path / "tiny.png"), "--out", str(tmp_path / "o4"), "--no-fetch"]) == 0
    printed = capsys.readouterr().out
    assert "no metric can run" in printed and "needs the HR image" in printed and "Empty DataFrame" not in printed
    assert (tmp_path / "o4" / "demo.png").is_file()


def test_mixed_degradation_fraction():
    from ifcsr.recipes import make_degradation

    hr = torch.rand(3, 64, 64)
    assert make_degradation("mixed").p_bicubic == 0.5
    deg = make_degradation("mixed:0.8")
    assert deg.p_bicubic == 0.8
    # p = 1 is exactly bicubic, p = 0 exactly Real-ESRGAN, for the same seed
    bic = make_degradation("bicubic")
    assert torch.equal(torch.as_tensor(make_degradation("mixed:1")(hr, seed=3)), torch.as_tensor(bic(hr, seed=3)))
    assert not torch.equal(torch.as_tensor(make_degradation("mixed:0")(hr, seed=3)), torch.as_tensor(bic(hr, seed=3)))
    # the fraction is honoured: count the draws that came out exactly bicubic
    small = torch.rand(3, 32, 32)
    ref = torch.as_tensor(bic(small, seed=0))
    n_bic = sum(torch.equal(torch.as_tensor(deg(small, seed=s)), ref) for s in range(200))
    assert 140 <= n_bic <= 180, n_bic
    for bad in ("mixed:x", "mixed:1.5", "mixed:-0.1", "gaussian"):
        with pytest.raises(ValueError, match="degradation|mixed"):
            make_degradation(bad)


def test_train_cli_options_reach_the_config():
    """`ifcsr train` options land in the TrainConfig it runs; no option leaves the preset as is."""
    from ifcsr.cli.app import build_parser
    from ifcsr.cli.train import config_from_args
    from ifcsr.recipes import tiny_preset

    parse = build_parser().parse_args
    assert config_from_args(parse(["train"])) == tiny_preset()
    cfg = config_from_args(parse(["train", "--realism-init", "fidelity", "--lr-schedule", "cosine", "--steps", "7",
                                  "--k", "1", "--degradation", "mixed:0.5"]))
    assert cfg.stage2.init_from == "fidelity" and cfg.stage1.init_from is None
    assert cfg.stage1.lr_schedule == cfg.stage2.lr_schedule == "cosine"
    assert cfg.stage1.steps == cfg.stage2.steps == 7 and cfg.loss.k == 1.0 and cfg.degradation == "mixed:0.5"
    assert config_from_args(parse(["train", "--realism-init", "zero"])).stage2.init_from is None
    cfg = config_from_args(parse(["train", "--stage2-degradation", "realesrgan"]))
    assert cfg.stage2.degradation == "realesrgan" and cfg.stage1.degradation is None
    assert cfg.degradation == tiny_preset().degradation  # the run's own mix is untouched
    with pytest.raises(ValueError, match="mixed"):
        config_from_args(parse(["train", "--degradation", "mixed:2"]))
    cfg = config_from_args(parse(["train", "--antiring", "5", "--overshoot-on", "bicubic"]))
    assert cfg.model.antiring == 5 and cfg.loss.overshoot_on == "bicubic"
    assert config_from_args(parse(["train", "--antiring", "0"])).model.antiring == 0
    with pytest.raises(ValueError, match="antiring"):  # InputError is a ValueError
        config_from_args(parse(["train", "--antiring", "4"]))
