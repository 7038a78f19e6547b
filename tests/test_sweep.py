"""Gamma sweeps, the paper's table, the baselines (ifcsr.evaluation.sweep, ifcsr.evaluation.baselines, figures).

A random tiny backbone with two distinct adapters, saved as a checkpoint once per module;
two 64x64 scikit-image crops as a PairedFolder. Everything runs offline in seconds.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ifcsr.data.images import ImageError, save_image
from ifcsr.evaluation.ablations import K1, SINGLE_STAGE, SingleStageTrainer, load_ablation, train_ablation
from ifcsr.evaluation.baselines import (
    BICUBIC,
    DNI,
    FIDELITY_ONLY,
    REALESRGAN,
    REALISM_ONLY,
    LoraInterpolation,
    run_baselines,
)
from ifcsr.evaluation.endpoint_cache import EndpointCache, model_fingerprint
from ifcsr.evaluation.gamma_maps import GammaMap, load_gamma_map
from ifcsr.evaluation.sweep import make_suite, paper_table, position_vs_curve, summarize, sweep
from ifcsr.evaluation.ymetrics import psnr_y
from ifcsr.models import IFCSR, build_tiny_backbone, lora_parameters
from ifcsr.train import quick_config

FAST = ["psnr", "ssim"]


def _perturb(model, adapter, seed, std=0.05):
    g = torch.Generator().manual_seed(seed)
    for n, p in lora_parameters(model.unet, adapter).items():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * std


def _random_model():
    bb = build_tiny_backbone(seed=0)
    torch.manual_seed(1)
    torch.nn.init.normal_(bb.unet.conv_out.weight, std=0.02)
    cfg = quick_config(steps=1, crop_size=32, batch_size=1, feature_net="vgg-random")
    model = IFCSR(bb, cfg)
    _perturb(model, "fidelity", 2, 0.02)
    _perturb(model, "realism", 3)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved checkpoint (tiny backbone embedded) whose two endpoints differ."""
    return _random_model().save(tmp_path_factory.mktemp("ck") / "ckpt")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """Two 64x64 HR crops and their bicubic x4 LR, laid out as RealSR (test_LR/, test_HR/)."""
    from ifcsr.data import BicubicDegradation, load_sample

    root = tmp_path_factory.mktemp("pairs")
    deg = BicubicDegradation(4)
    for name, (top, left) in (("chelsea", (100, 150)), ("coffee", (150, 250))):
        hr = torch.from_numpy(load_sample(name)[top:top + 64, left:left + 64].copy()).permute(2, 0, 1).float() / 255
        save_image(hr, root / "test_HR" / f"{name}_HR.png")
        save_image(deg(hr, seed=0), root / "test_LR" / f"{name}_LR4.png")
    return root


class Counter:
    """Wraps a bound method and counts calls."""

    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __call__(self, *a, **k):
        self.n += 1
        return self.fn(*a, **k)


def _count_network(model):
    infer, unet = Counter(model.infer), Counter(model.unet.forward)
    model.infer, model.unet.forward = infer, unet
    return infer, unet


# --------------------------------------------------------------------------- the sweep


def test_sweep_calls_network_once_per_image_and_writes_csv_and_figures(checkpoint, pairs_dir, tmp_path):
    model = IFCSR.load(checkpoint)
    infer, unet = _count_network(model)
    res = sweep(model, pairs_dir, metrics=FAST + ["lpips-hed"] if _hed() else FAST, gamma_maps=["ramp"],
                cache=tmp_path / "cache", progress=False)
    # 2 images x (21 gammas + 1 map): the network ran once per image, both endpoints in one UNet pass
    assert infer.n == 2 and unet.n == 2
    assert res.timings["network_calls"] == 2 and res.timings["blends"] == 2 * 22
    assert res.timings["infer_s"] > 0 and res.timings["blend_s"] > 0
    metrics = sorted(res.tidy["metric"].unique())
    assert len(res.tidy) == 2 * 22 * len(metrics)
    s = res.summary
    assert list(s.loc[s.gamma_map == "", "gamma"].round(2)) == [round(0.05 * i, 2) for i in range(21)]
    assert (s["n_images"] == 2).all()

    # the sweep scores the pixel blend: recompute one value by hand
    from ifcsr.evaluation.sweep import load_pairs

    pairs = load_pairs(pairs_dir)
    fresh = IFCSR.load(checkpoint)
    want = np.mean([float(psnr_y(fresh.infer(p["lr"][None]).blend(0.3), p["hr"][None])) for p in pairs])
    got = s.loc[(s.gamma_map == "") & (s.gamma.round(2) == 0.3), "psnr"].item()
    assert got == pytest.approx(want, abs=1e-4)
    # the ramp map's row: gamma is its mean, and its PSNR differs from the scalar blend's
    ramp = s[s.gamma_map == "ramp"]
    assert ramp["gamma"].item() == pytest.approx(0.5, abs=1e-3)

    from ifcsr.widgets.figures import save_figures

    files = res.save(tmp_path / "out")
    files.update(save_figures(res.summary, tmp_path / "out"))
    for key in ("sweep", "summary", "timings", "gamma_curves", "perception_distortion"):
        assert files[key].is_file() and files[key].stat().st_size > 0, key
    back = pd.read_csv(files["sweep"])
    assert set(back.columns) >= {"method", "image", "gamma", "gamma_map", "metric", "value"}
    assert len(back) == len(res.tidy)
    assert json.loads(files["timings"].read_text())["timings"]["network_calls"] == 2
    with open(files["gamma_curves"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _hed():
    from ifcsr.evaluation.metrics import available_metrics

    return bool(available_metrics(["lpips-hed"]).iloc[0]["available"])


def test_endpoint_cache_on_disk_is_reused_and_keyed_by_checkpoint(checkpoint, pairs_dir, tmp_path):
    model = IFCSR.load(checkpoint)
    first = sweep(model, pairs_dir, gammas=[0, 0.5, 1], metrics=FAST, cache=tmp_path, progress=False)
    assert first.timings["network_calls"] == 2
    assert len(list(tmp_path.rglob("*.pt"))) == 2 and len(list(tmp_path.rglob("*.png"))) == 4
    # a fresh process (new model object, same checkpoint): no network call, identical numbers
    again = IFCSR.load(checkpoint)
    infer, _ = _count_network(again)
    second = sweep(again, pairs_dir, gammas=[0, 0.5, 1], metrics=FAST, cache=tmp_path, progress=False)
    assert infer.n == 0 and second.timings["network_calls"] == 0
    pd.testing.assert_frame_equal(first.tidy, second.tidy)
    # another checkpoint (one adapter changed) gets another key and is inferred
    other = IFCSR.load(checkpoint)
    _perturb(other, "realism", 99)
    assert model_fingerprint(other) != model_fingerprint(model)
    assert sweep(other, pairs_dir, gammas=[0.5], metrics=FAST, cache=tmp_path, progress=False
                 ).timings["network_calls"] == 2


def test_endpoint_cache_memory_hits(checkpoint, pairs_dir):
    model = IFCSR.load(checkpoint)
    cache = EndpointCache(model, None)
    lr = torch.rand(1, 3, 16, 16)
    a = cache.endpoints("x", lr)
    b = cache.endpoints("x", lr)
    assert a is b and cache.calls == 1 and cache.memory_hits == 1
    cache.endpoints("x", lr * 0.5)  # same name, other pixels: another entry
    assert cache.calls == 2


def test_gamma_maps_from_files_and_their_errors(tmp_path):
    from PIL import Image

    arr = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    Image.fromarray(arr, mode="L").save(tmp_path / "m.png")
    gm = load_gamma_map(tmp_path / "m.png")
    assert gm.values.shape == (16, 32) and gm.values[0, 0] == 0 and gm.values[0, -1] == 1
    r = gm.resized(8, 64)
    assert r.shape == (1, 1, 8, 64) and 0 <= r.min() and r.max() <= 1
    rgb = np.stack([arr, arr, 255 - arr], -1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="greyscale"):
        load_gamma_map(tmp_path / "rgb.png")
    np.save(tmp_path / "bad.npy", np.full((4, 4), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_gamma_map(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="built-in"):
        load_gamma_map("no-such-map.png")
    with pytest.raises(ValueError, match="2-D"):
        GammaMap("x", torch.zeros(3, 4, 4))


def test_load_pairs_samples_and_folders(pairs_dir, tmp_path):
    from ifcsr.evaluation.sweep import load_pairs

    pairs = load_pairs("samples", crop=64)
    assert [p["name"] for p in pairs] == ["chelsea", "coffee"]  # the held-out photos
    assert pairs[0]["hr"].shape == (3, 64, 64) and pairs[0]["lr"].shape == (3, 16, 16)
    assert [p["name"] for p in load_pairs(pairs_dir)] == ["chelsea", "coffee"]
    with pytest.raises(FileNotFoundError, match="samples"):
        load_pairs(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="'lr' and 'hr'"):
        load_pairs([{"lr": torch.zeros(3, 4, 4)}])


def test_sweep_rejects_bad_gammas(checkpoint, pairs_dir):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sweep(checkpoint, pairs_dir, gammas=[0.5, 1.2], metrics=FAST, progress=False)


def test_position_vs_curve_verdicts():
    # curve: PSNR falls, lpips-hed falls (better) as gamma grows
    curve = pd.DataFrame(dict(method="IFCSR", gamma=[0.0, 0.5, 1.0], gamma_map="", n_images=1,
                              psnr=[30.0, 28.0, 26.0], **{"lpips-hed": [0.30, 0.20, 0.15]}))
    pts = pd.DataFrame(dict(method=["worse", "better", "between"], gamma=np.nan, gamma_map="", n_images=1,
                            psnr=[27.0, 29.0, 31.0], **{"lpips-hed": [0.25, 0.18, 0.35]}))
    pos = position_vs_curve(pd.concat([curve, pts]), "psnr", "lpips-hed").set_index("method")
    assert pos.loc["worse", "verdict"] == "dominated by IFCSR" and pos.loc["worse", "dominated_by_gammas"] == "0.5"
    assert pos.loc["better", "verdict"] == "dominates part of IFCSR"
    assert pos.loc["between", "verdict"] == "on the trade-off"
    assert pos.loc["between", "nearest_gamma"] == 0.0


# --------------------------------------------------------------------------- baselines


def test_dni_is_weight_interpolation_and_costs_one_unet_pass_per_gamma(checkpoint):
    model = IFCSR.load(checkpoint)
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fid, real = model.infer_branch(lr, "fidelity"), model.infer_branch(lr, "realism")
    _, unet = _count_network(model)
    with LoraInterpolation(model) as dni:
        outs = dni.infer(lr, [0.0, 0.5, 1.0])
    assert unet.n == 3 and dni.passes == 3
    torch.testing.assert_close(outs[0], fid, atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[2], real, atol=1e-5, rtol=0)
    # alpha = 0.5 equals a UNet whose weights are W + 0.5 dW_fid + 0.5 dW_real, merged by hand
    from peft.tuners.lora import LoraLayer

    merged = IFCSR.load(checkpoint)
    with torch.no_grad():
        for m in merged.unet.modules():
            if isinstance(m, LoraLayer):
                delta = 0.5 * m.get_delta_weight("fidelity") + 0.5 * m.get_delta_weight("realism")
                m.get_base_layer().weight += delta
                for name in ("fidelity", "realism"):
                    m.lora_B[name].weight.zero_()
    torch.testing.assert_close(outs[1], merged.infer_branch(lr, "fidelity"), atol=1e-5, rtol=0)
    assert not torch.allclose(outs[1], 0.5 * fid + 0.5 * real, atol=1e-4)  # not a pixel blend


def test_lora_interpolation_leaves_the_model_as_it_was(checkpoint):
    model = IFCSR.load(checkpoint)
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    before = model.infer(lr)
    grads = {n: p.requires_grad for n, p in model.unet.named_parameters()}
    fp = model_fingerprint(model)
    dni = LoraInterpolation(model)
    assert "dni" in model.unet.peft_config
    with pytest.raises(ValueError, match="alpha"):
        dni.set_alpha(1.5)
    dni.infer(lr, [0.3])
    dni.close()
    assert set(model.unet.peft_config) == {"fidelity", "realism"}
    assert {n: p.requires_grad for n, p in model.unet.named_parameters()} == grads
    assert model_fingerprint(model) == fp
    after = model.infer(lr)
    assert torch.equal(before.fidelity, after.fidelity) and torch.equal(before.realism, after.realism)


def test_run_baselines_counts_costs_and_reports_missing(checkpoint, pairs_dir, tmp_path):
    from ifcsr.weights.realesrgan import RRDBNet

    pth = tmp_path / "rrdb.pth"
    torch.manual_seed(0)
    torch.save(RRDBNet(num_block=23).state_dict(), pth)  # random weights: tests the plumbing only
    model = IFCSR.load(checkpoint)
    suite = make_suite(FAST)
    res = run_baselines(model, pairs_dir, suite=suite, gammas=[0, 0.5, 1], single_stage=checkpoint,
                        k1=tmp_path / "missing", dni_gammas=[0, 0.25, 0.5, 0.75, 1], realesrgan=pth,
                        progress=False, log=lambda *_: None)
    methods = set(res.tidy["method"])
    assert {BICUBIC, FIDELITY_ONLY, REALISM_ONLY, SINGLE_STAGE, DNI, REALESRGAN} <= methods
    assert K1 not in methods and "train_ablations" in res.unavailable[K1]
    cost = {t["method"]: t for t in res.timings}
    assert cost[DNI]["network_calls"] == 2 * 5          # one UNet pass per gamma per image
    assert cost[SINGLE_STAGE]["network_calls"] == 2     # naive blend: endpoints once per image
    assert cost[BICUBIC]["network_calls"] == 0
    s = summarize(res.tidy)
    assert s.loc[s.method == BICUBIC, "gamma"].isna().all()
    # "fidelity only" is IFCSR at gamma 0, and DNI at alpha 0 is the same image
    f0 = s.loc[s.method == FIDELITY_ONLY, "psnr"].item()
    d0 = s.loc[(s.method == DNI) & (s.gamma == 0), "psnr"].item()
    assert d0 == pytest.approx(f0, abs=1e-3)


def test_single_stage_trainer_ignores_the_fidelity_branch(checkpoint):
    from ifcsr.data import SampleDataset

    model = IFCSR.load(checkpoint)
    data = SampleDataset(crop_size=32, scale=4, seed=0, length=8)
    tr = SingleStageTrainer(model, data, config=model.config, progress=False, device="cpu")
    from ifcsr.losses import build_loss

    tr._loss_inc = build_loss("inc", model.config.loss, tr.feature_net)
    item = data[0]
    lr, hr = item["lr"][None], item["hr"][None]
    g = torch.rand(1, generator=torch.Generator().manual_seed(0))  # one gamma per sample (stage 2's API)
    with torch.no_grad():
        l1, gamma = tr._stage_loss(2, lr, hr, g)
        _perturb(model, "fidelity", 7, 0.5)  # a very different fidelity network ...
        l2, _ = tr._stage_loss(2, lr, hr, g)
        want = tr._loss_inc(model.branch(model.prepare(lr), "realism"), hr)
    assert gamma is None and l1.item() == l2.item() == pytest.approx(want.item())  # ... changes nothing
    # whereas IFCSR's stage 2 loss depends on it (it trains phi on the blend)
    from ifcsr.train import Trainer

    base = Trainer(model, data, config=model.config, progress=False, device="cpu")
    base._loss_inc = tr._loss_inc
    with torch.no_grad():
        b1, _ = base._stage_loss(2, lr, hr, g)
        _perturb(model, "fidelity", 8, 0.5)
        b2, _ = base._stage_loss(2, lr, hr, g)
    assert b1.item() != b2.item()


@pytest.mark.parametrize("kind", ["single_stage", "k1", "paper_l2"])
def test_train_ablation_saves_adapters_with_a_checked_backbone_reference(checkpoint, tmp_path, kind):
    from safetensors.torch import load_file

    out = train_ablation(kind, tmp_path / kind, base=checkpoint, steps=1, progress=False, device="cpu",
                         log=lambda *_: None)
    names = sorted(p.name for p in out.iterdir())
    assert "backbone" not in names and {"fidelity.safetensors", "realism.safetensors", "config.json"} <= set(names)
    meta = json.loads((out / "ifcsr.json").read_text())
    assert meta["ablation"] == kind and len(meta["backbone_sha256"]) == 64
    assert Path(meta["backbone"]) == (checkpoint / "backbone").resolve()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["loss"]["k"] == (1.0 if kind == "k1" else 7.0)
    base_fid = load_file(checkpoint / "fidelity.safetensors")
    fid = load_file(out / "fidelity.safetensors")
    same = all(torch.equal(base_fid[k], fid[k]) for k in base_fid)
    assert same == (kind != "k1")  # single-stage and no-adversarial keep stage 1; k = 1 retrains it
    base_real = load_file(checkpoint / "realism.safetensors")
    real = load_file(out / "realism.safetensors")
    assert not all(torch.equal(base_real[k], real[k]) for k in base_real)
    model = load_ablation(out)
    assert model.infer(torch.rand(1, 3, 8, 8)).fidelity.shape == (1, 3, 32, 32)
    meta["backbone_sha256"] = "0" * 64
    (out / "ifcsr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another backbone"):
        load_ablation(out)


def test_ablation_or_train_loads_a_fitting_checkpoint_and_trains_a_missing_one(checkpoint, tmp_path):
    """The notebooks' "load the ablation, else train it" (ifcsr.evaluation.ablations.ablation_or_train)."""
    from ifcsr.evaluation.ablations import ablation_or_train

    said = []
    assert ablation_or_train("k1", folder=tmp_path / "none", train=False, log=said.append) is None
    assert said and said[0].startswith("k1: ") and "training" not in said[0]
    model = ablation_or_train("k1", folder=tmp_path / "none", work=tmp_path / "work", base=checkpoint, steps=1,
                              progress=False, log=said.append)
    assert (tmp_path / "work" / "k1" / "ifcsr.json").is_file() and "training it now" in said[1]
    assert model.config.loss.k == 1.0
    again = ablation_or_train("k1", folder=tmp_path / "work", log=said.append)  # now it fits: loaded, no training
    assert len(said) == 2
    lr = torch.rand(1, 3, 8, 8)
    assert torch.equal(again.infer(lr).realism, model.infer(lr).realism)


# --------------------------------------------------------------------------- command line


def _cli(argv) -> int:
    """`ifcsr <command> ...` through the module that ifcsr.cli runs for it (ifcsr.cli.sweep,
    ifcsr.cli.evaluate: their options and `main`)."""
    import argparse
    import importlib

    mod = importlib.import_module(f"ifcsr.cli.{argv[0]}")
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return mod.main(p.parse_args(argv[1:]))


def _hide_weight_caches(monkeypatch, tmp_path):
    """No cached weights and no network: pyiqa metrics must report themselves unavailable."""
    from ifcsr.weights import metric_files

    monkeypatch.setenv("IFCSR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(metric_files, "pyiqa_cache_dir", lambda: tmp_path / "hub" / "pyiqa")


def test_evaluate_prints_the_paper_table_with_unavailable_metrics(checkpoint, pairs_dir, tmp_path, monkeypatch,
                                                                  capsys):
    _hide_weight_caches(monkeypatch, tmp_path)
    out = tmp_path / "eval"
    rc = _cli(["evaluate", "--checkpoint", str(checkpoint), "--pairs", str(pairs_dir), "--gamma", "0", "0.5", "1",
               "--out", str(out), "--cache", "none", "--paper"])
    text = capsys.readouterr().out
    assert rc == 0
    table = pd.read_csv(out / "table.csv", dtype=str).set_index("gamma")
    assert list(table.columns) == ["PSNR", "SSIM", "LPIPS", "DISTS", "NIQE", "MUSIQ", "MANIQA", "CLIPIQA", "FID"]
    assert list(table.index) == ["0", "0.5", "1"]
    for col in ("LPIPS", "DISTS", "NIQE", "MUSIQ", "MANIQA", "CLIPIQA", "FID"):
        assert (table[col] == "unavailable").all(), col  # a reason, never a number
        assert f"  {col}: " in text
    assert all(math.isfinite(float(v)) for v in table["PSNR"])
    assert "28.00" in text and "RealSR" in text and "PiSA-SR" in text  # the paper's numbers, --paper
    reasons = pd.read_csv(out / "unavailable.csv")
    assert set(reasons["metric"]) == {"lpips", "dists", "niqe", "musiq", "maniqa-pipal", "clipiqa", "fid"}
    assert reasons["reason"].str.len().min() > 10


def test_paper_table_values_match_the_sweep(checkpoint, pairs_dir):
    res = paper_table(checkpoint, pairs_dir, gammas=[0, 1], metrics=FAST, cache=None, progress=False)
    t = res["table"]
    s = sweep(checkpoint, pairs_dir, gammas=[0, 1], metrics=FAST, progress=False).summary
    assert t.loc[1.0, "psnr"] == pytest.approx(s.loc[s.gamma == 1, "psnr"].item())
    assert "psnr" not in res["unavailable"]


def test_sweep_cli_writes_outputs(checkpoint, pairs_dir, tmp_path, capsys):
    out = tmp_path / "sw"
    rc = _cli(["sweep", "--checkpoint", str(checkpoint), "--pairs", str(pairs_dir), "--step", "0.25",
               "--metrics", "psnr", "ssim", "--gamma-map", "ramp", "center", "--out", str(out), "--cache", "none"])
    text = capsys.readouterr().out
    assert rc == 0
    for f in ("sweep.csv", "summary.csv", "timings.json", "gamma_curves.png", "perception_distortion.png"):
        assert (out / f).is_file(), f
    assert "2 network calls" in text and "blending" in text
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 5 + 2


def test_realism_ablation_scores_every_variant_bicubic_and_labels_the_adversarial_weight(checkpoint):
    from dataclasses import replace

    from ifcsr.data import BicubicDegradation
    from ifcsr.evaluation.baselines import realism_ablation, stage2_label

    model = IFCSR.load(checkpoint)
    hr = torch.rand(3, 32, 32)
    pair = {"lr": BicubicDegradation(4)(hr), "hr": hr, "name": "noise"}
    res = realism_ablation({"a": model, "b": checkpoint}, pair, gammas=(0.0, 1.0), metrics=("psnr",))
    pts = res["points"]
    assert list(pts["method"]) == ["bicubic", "a", "a", "b", "b"]  # no NR metric: no HR row
    a1 = pts[(pts["method"] == "a") & (pts["gamma"] == 1.0)]["psnr"].item()
    assert a1 == pytest.approx(float(psnr_y(res["endpoints"]["a"].realism, hr[None])), abs=1e-6)
    with pytest.raises(ValueError, match="niqe"):  # 32 px: below NIQE's 96 px blocks
        realism_ablation({"a": model}, pair, metrics=("psnr", "niqe"))
    model.config = replace(model.config, loss=replace(model.config.loss, texture_weight=0.0, overshoot_weight=0.0))
    assert stage2_label(model) == "paper's L_2nd only"
    model.config = replace(model.config, loss=replace(model.config.loss, texture_weight=10.0, adv_weight=0.01))
    assert stage2_label(model) == "L_2nd + texture 10 + adversarial 0.01"


def test_adopt_ablation_keeps_adapters_trained_on_the_same_backbone_only(checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from ifcsr.evaluation.ablations import adopt_ablation
    from ifcsr.models import adapter_state_dict

    source = tmp_path / "source"  # the same backbone files, another realism adapter
    shutil.copytree(checkpoint, source)
    other = IFCSR.load(checkpoint)
    _perturb(other, "realism", 3, 0.5)
    save_file(adapter_state_dict(other.unet, "realism"), source / "realism.safetensors")
    out = adopt_ablation("paper_l2", source, tmp_path / "paper_l2", base=checkpoint)
    assert "backbone" not in {p.name for p in out.iterdir()}
    for name in ("fidelity", "realism"):
        want, have = load_file(source / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert want.keys() == have.keys() and all(torch.equal(want[k], have[k]) for k in want)
    meta = json.loads((out / "ifcsr.json").read_text())
    assert meta["ablation"] == "paper_l2" and Path(meta["backbone"]) == (checkpoint / "backbone").resolve()
    lr = torch.rand(1, 3, 8, 8)
    assert torch.allclose(load_ablation(out).infer(lr).realism, other.infer(lr).realism, atol=1e-6)  # same weights
    stranger = tmp_path / "stranger"
    shutil.copytree(source, stranger)
    vae_file = stranger / "backbone" / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(vae_file)
    k = next(iter(state))
    save_file({**state, k: state[k] + 1.0}, vae_file)  # the same adapters on another backbone
    with pytest.raises(ValueError, match="another backbone"):
        adopt_ablation("paper_l2", stranger, tmp_path / "paper_l22", base=checkpoint)
