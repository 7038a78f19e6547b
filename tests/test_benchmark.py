"""Real-world benchmark tables (ifcsr.evaluation.benchmark) on a synthetic test set laid out as the
StableSR/OSEDiff crops (test_LR/, test_HR/, same file names), with a random tiny checkpoint.

Everything is offline and small (32x32 HR): the real RealSR set is used only by
tests/test_realsr_calibration.py.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ifcsr.data import BicubicDegradation, PairedFolder, load_sample, quantize
from ifcsr.data.images import ImageError, save_image
from ifcsr.evaluation.benchmark import evaluate_benchmark
from ifcsr.evaluation.benchmark_sets import (
    OutputCache,
    load_benchmark,
    load_outputs,
    parse_compare,
    parse_gammas,
    read_pyiqa_log,
)
from ifcsr.evaluation.ymetrics import psnr_y, ssim_y
from ifcsr.models import IFCSR, build_tiny_backbone, lora_parameters
from ifcsr.train import quick_config

FAST = ["psnr", "ssim"]
NAMES = ("Canon_001", "Canon_002", "Nikon_001")


def _random_model():
    bb = build_tiny_backbone(seed=0)
    torch.manual_seed(1)
    torch.nn.init.normal_(bb.unet.conv_out.weight, std=0.02)
    model = IFCSR(bb, quick_config(steps=1, crop_size=32, batch_size=1, feature_net="vgg-random"))
    g = torch.Generator().manual_seed(3)
    for n, p in lora_parameters(model.unet, "realism").items():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.05
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _random_model().save(tmp_path_factory.mktemp("ck") / "ckpt")


@pytest.fixture(scope="module")
def realsr_like(tmp_path_factory):
    """Three 32x32 HR crops, their bicubic LR (8x8), both named <name>_LR4.png as in the
    OSEDiff copy of RealSR, and an "outputs" folder holding the HR itself (a perfect method)."""
    root = tmp_path_factory.mktemp("realsr")
    deg = BicubicDegradation(4)
    for i, name in enumerate(NAMES):
        img = load_sample(("chelsea", "coffee", "astronaut")[i])[100:132, 120:152]
        hr = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
        save_image(hr, root / "test_HR" / f"{name}_LR4.png")
        save_image(deg(hr, seed=0), root / "test_LR" / f"{name}_LR4.png")
        save_image(hr, root / "perfect" / f"{name}_LR4.png")
    return root


# ---- pairing ---------------------------------------------------------------------------


def test_stablesr_layout_pairs_by_name_without_suffix(realsr_like):
    bset = load_benchmark(realsr_like)
    assert bset.names == list(NAMES) and bset.total == 3 and bset.selection == "all 3 pairs"
    assert bset.pairs[0]["lr"].shape == (3, 8, 8) and bset.pairs[0]["hr"].shape == (3, 32, 32)
    sub = load_benchmark(realsr_like, every=2)
    assert sub.names == ["Canon_001", "Nikon_001"] and "2 of 3" in sub.selection
    assert load_benchmark(realsr_like, limit=1).names == ["Canon_001"]


def test_drealsr_names_pair_too(tmp_path):
    save_image(torch.rand(3, 8, 8), tmp_path / "test_LR" / "DSC_1454_x1.png")
    save_image(torch.rand(3, 32, 32), tmp_path / "test_HR" / "DSC_1454_x1.png")
    assert PairedFolder(tmp_path, strict=True)[0]["name"] == "DSC_1454_x1"


def test_unmatched_and_wrong_sizes_are_errors(tmp_path):
    save_image(torch.rand(3, 8, 8), tmp_path / "test_LR" / "a_LR4.png")
    save_image(torch.rand(3, 32, 32), tmp_path / "test_HR" / "a_LR4.png")
    save_image(torch.rand(3, 8, 8), tmp_path / "test_LR" / "lonely_LR4.png")
    with pytest.raises(ImageError, match="without a partner.*lonely_LR4.png"):
        load_benchmark(tmp_path)
    (tmp_path / "test_LR" / "lonely_LR4.png").unlink()
    save_image(torch.rand(3, 8, 8), tmp_path / "test_LR" / "b.png")
    save_image(torch.rand(3, 30, 32), tmp_path / "test_HR" / "b.png")
    with pytest.raises(ImageError, match="'b'.*30x32.*expected HR = 4 x LR"):
        load_benchmark(tmp_path)


def test_compare_folder_errors(realsr_like, tmp_path):
    bset = load_benchmark(realsr_like)
    outs = load_outputs(realsr_like / "perfect", bset, label="perfect")
    assert [tuple(o.shape) for o in outs] == [(1, 3, 32, 32)] * 3
    for name in NAMES[:2]:
        save_image(torch.rand(3, 32, 32), tmp_path / "partial" / f"{name}.png")
    with pytest.raises(ImageError, match="no output for 1 of 3 pairs \\(Nikon_001\\)"):
        load_outputs(tmp_path / "partial", bset, label="partial")
    for name in NAMES:
        save_image(torch.rand(3, 16, 16), tmp_path / "small" / f"{name}.png")
    with pytest.raises(ImageError, match="16x16 but its HR is 32x32"):
        load_outputs(tmp_path / "small", bset)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_outputs(tmp_path / "nowhere", bset)


def test_parse_compare_and_gammas():
    assert parse_compare(["osediff=/a/b", "x=c=d"]) == {"osediff": Path("/a/b"), "x": Path("c=d")}
    for bad in (["nodir"], ["=x"], ["a=x", "a=y"]):
        with pytest.raises(ValueError):
            parse_compare(bad)
    assert len(parse_gammas(["0:1:0.05"])) == 21
    assert parse_gammas(["0.6", "0", "0:1:0.5"]) == [0.0, 0.5, 0.6, 1.0]
    for bad in (["1.5"], ["0:1:0.3"], ["1:0:0.1"], ["a:b:c"]):
        with pytest.raises(ValueError):
            parse_gammas(bad)


def test_read_pyiqa_log(tmp_path):
    log = tmp_path / "m.log"
    log.write_text(
        "24-10-23 17:29:03.278 - INFO: results_osediff/Canon_001_LR4.png | PSNR: 25.793726; SSIM: 0.851268; "
        "NIQE: 5.673670; MANIQA: 0.607102 | Runtime: 1.06 sec\n"
        "24-10-23 17:29:03.687 - INFO: results_osediff/Canon_002_LR4.png | PSNR: 24.045864; SSIM: 0.735231; "
        "NIQE: 5.823664; MANIQA: 0.716501 | Runtime: 0.41 sec\n"
        "===== Average Metrics for [results_osediff] =====\nPSNR: 24.9198; SSIM: 0.7932; NIQE: 5.7487; "
        "MANIQA: 0.6618 | FID: 123.493817 | FID Runtime: 6.79 sec\n")
    rows, means = read_pyiqa_log(log)
    assert set(rows.image) == {"Canon_001", "Canon_002"}
    assert rows.set_index(["image", "metric"]).loc[("Canon_002", "niqe"), "value"] == 5.823664
    assert means == {"psnr": 24.9198, "ssim": 0.7932, "niqe": 5.7487, "maniqa-pipal": 0.6618, "fid": 123.493817}
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(ValueError, match="no per-image lines"):
        read_pyiqa_log(tmp_path / "empty.log")


# ---- evaluation ------------------------------------------------------------------------


def test_no_model_scores_bicubic_and_compare_folders(realsr_like):
    res = evaluate_benchmark(realsr_like, no_model=True, metrics=FAST, compare={"perfect": realsr_like / "perfect"},
                             cache=None, progress=False)
    assert list(res.table.index) == ["bicubic", "perfect"] and list(res.table["n"]) == [3, 3]
    # the HR scored against itself: SSIM 1 and PSNR at the 1e-8 floor of pyiqa's formula (80 dB)
    assert res.table.loc["perfect", "ssim"] == pytest.approx(1.0, abs=1e-12)
    assert res.table.loc["perfect", "psnr"] == pytest.approx(80.0, abs=1e-3)
    # bicubic is scored as the 8-bit image a saved PNG would hold
    bset = load_benchmark(realsr_like)
    import torch.nn.functional as F

    want = np.mean([float(psnr_y(quantize(F.interpolate(p["lr"][None], scale_factor=4, mode="bicubic",
                                                        align_corners=False).clamp(0, 1)), p["hr"][None]))
                    for p in bset.pairs])
    assert res.table.loc["bicubic", "psnr"] == pytest.approx(want, abs=1e-9)
    assert "studio-range BT.601" in res.card and "no border crop" in res.card and "all 3 pairs" in res.card
    assert "pyiqa" in res.card
    assert "IFCSR" not in " ".join(res.table.index)


def test_unavailable_metric_is_listed_with_its_reason(realsr_like):
    res = evaluate_benchmark(realsr_like, no_model=True, metrics=["psnr", "niqe"], cache=None, progress=False)
    # 32x32 images are below NIQE's 96x96 blocks: listed as unavailable with the reason, no number
    assert "niqe" in res.unavailable and "96x96" in res.unavailable["niqe"]
    assert res.table["niqe"].isna().all()
    assert "NIQE unavailable here" in res.card and "unavailable" in res.text


def test_ifcsr_rows_from_one_batched_inference_then_the_cache(realsr_like, checkpoint, tmp_path):
    """Both endpoints once per image, in batches; a second run at 21 gammas runs no network."""
    model = IFCSR.load(checkpoint)
    calls = []
    real_infer = model.infer
    model.infer = lambda lr, **kw: calls.append(lr.shape[0]) or real_infer(lr, **kw)
    cache = tmp_path / "cache"
    res = evaluate_benchmark(realsr_like, checkpoint=model, metrics=FAST, baselines=(), cache=cache,
                             batch_size=2, progress=False)
    assert calls == [2, 1]  # 3 images, batches of 2: one endpoint pair per image
    assert res.timings["IFCSR images_inferred"] == 3
    assert [i for i in res.table.index if i.startswith("IFCSR")] == [
        "IFCSR gamma=0", "IFCSR gamma=0.2", "IFCSR gamma=0.6", "IFCSR gamma=1"]
    # the rows are the blends of the endpoints cached on disk, rounded to 8 bits
    from ifcsr.evaluation.endpoint_cache import EndpointCache

    disk = EndpointCache(model, cache)
    pairs = load_benchmark(realsr_like).pairs
    ends = [disk.endpoints(p["name"], p["lr"]) for p in pairs]
    assert disk.calls == 0 and disk.disk_hits == 3
    want = np.mean([float(ssim_y(quantize(e.blend(0.6)), p["hr"][None])) for e, p in zip(ends, pairs)])
    assert res.table.loc["IFCSR gamma=0.6", "ssim"] == pytest.approx(want, abs=1e-12)

    calls.clear()
    again = evaluate_benchmark(realsr_like, checkpoint=model, gammas=parse_gammas(["0:1:0.05"]), metrics=FAST,
                               baselines=(), cache=cache, progress=False)
    assert calls == [] and again.timings["IFCSR images_inferred"] == 0
    assert again.timings["IFCSR sweep"]["network_calls"] == 0
    assert len([i for i in again.table.index if i.startswith("IFCSR")]) == 21
    assert again.table.loc["IFCSR gamma=0.6", "ssim"] == pytest.approx(want, abs=1e-12)
    assert len(list(cache.rglob("*.pt"))) == 3


def test_baselines_reported_when_their_checkpoints_are_missing(realsr_like, checkpoint, tmp_path):
    res = evaluate_benchmark(realsr_like, checkpoint=checkpoint, metrics=["psnr"], baselines=("single-stage", "k1"),
                             ablations=tmp_path / "none", cache=tmp_path / "c", progress=False)
    assert set(res.skipped) == {"single-stage (naive blend)", "k=1 (MSE+LPIPS)"}
    assert all("no ablation checkpoint" in v for v in res.skipped.values())
    assert "Not run:" in res.text


def test_dni_and_output_cache(realsr_like, checkpoint, tmp_path):
    """DNI runs the network once per image and gamma; its outputs are cached as 8-bit PNGs."""
    res = evaluate_benchmark(realsr_like, checkpoint=checkpoint, gammas=[0.0, 1.0], metrics=["psnr"],
                             baselines=("dni",), cache=tmp_path / "c", progress=False, every=2)
    assert list(res.table.loc[["DNI (LoRA weight interpolation) gamma=0", "DNI (LoRA weight interpolation) gamma=1"],
                              "n"]) == [2, 2]
    pngs = list((tmp_path / "c" / "outputs").rglob("*.png"))
    assert len(pngs) == 4
    # DNI at gamma 0 is the fidelity adapter alone: the same image as IFCSR's gamma 0 up to round-off
    assert res.table.loc["DNI (LoRA weight interpolation) gamma=0", "psnr"] == pytest.approx(
        res.table.loc["IFCSR gamma=0", "psnr"], abs=0.05)
    oc = OutputCache(tmp_path / "oc", "k")
    x = oc.get("a", torch.zeros(1, 3, 2, 2), "p", lambda: torch.full((1, 3, 8, 8), 0.3))
    y = oc.get("a", torch.zeros(1, 3, 2, 2), "p", lambda: pytest.fail("must come from the cache"))
    assert oc.calls == 1 and oc.hits == 1 and torch.equal(x, y) and torch.equal(x, quantize(x))


def test_cli_evaluate_dataset(realsr_like, tmp_path, capsys):
    from ifcsr.cli.app import main

    out = tmp_path / "out"
    rc = main(["evaluate", "--dataset", str(realsr_like), "--no-model", "--compare",
               f"perfect={realsr_like / 'perfect'}", "--metrics", "psnr", "ssim", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "perfect" in text and "bicubic" in text and "Protocol:" in text
    table = pd.read_csv(out / "table.csv", index_col=0)
    assert list(table.index) == ["bicubic", "perfect"]
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image["image"]) == set(NAMES)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["meta"]["images"] == list(NAMES) and prov["meta"]["command"] and prov["meta"]["date"]
    assert "Protocol:" in (out / "table.md").read_text()
    # dataset-only options without --dataset are refused before anything runs
    assert main(["evaluate", "--no-model"]) == 2
    assert "need --dataset" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", str(tmp_path / "nowhere"), "--no-model"]) == 2
