"""`ifcsr bench` in its smallest mode: the table, the CSV, and the peers' control baselines."""

import csv

import pytest
import torch

from ifcsr.cli import app as cli
from ifcsr.evaluation import bench, bench_common


def read_rows(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def by_measure(rows, prefix, size=None):
    found = [r for r in rows if r["measure"].startswith(prefix) and (size is None or r["size"] == str(size))]
    assert found, f"no row {prefix!r} at size {size}"
    return found[0]


def test_quick_benchmark_writes_table_and_csv(tmp_path, capsys):
    rc = cli.main(["bench", "--quick", "--parts", "a,b,e", "--sizes-a", "64", "--repeats", "1",
                   "--blend-repeats", "5", "--threads", "1", "--out", str(tmp_path)])
    assert rc == 0
    columns, rows = read_rows(tmp_path / "benchmarks.csv")
    assert columns == bench_common.COLUMNS
    assert {r["part"] for r in rows} == {"a", "b", "e"}
    for r in rows:  # every figure records where it was measured
        assert r["machine"] and r["threads"] == "1" and r["weights"]
    blend = float(by_measure(rows, "IFCSR blend, torch float32 (out=)", 64)["seconds"])
    blend8 = float(by_measure(rows, "IFCSR blend, numpy uint8", 64)["seconds"])
    pisa = float(by_measure(rows, "latent control (PiSA-SR)", 64)["seconds"])
    dni = float(by_measure(rows, "weight interp. (DNI)", 64)["seconds"])
    assert 0 < blend < pisa and blend < dni and blend8 < min(pisa, dni)
    speedup = by_measure(rows, "cheapest re-inference / IFCSR blend", 64)
    assert float(speedup["ratio"]) == pytest.approx(min(pisa, dni) / blend, rel=1e-6)
    single = float(by_measure(rows, "single branch")["seconds"])
    assert float(by_measure(rows, "both endpoints, batched")["ratio"]) == pytest.approx(
        float(by_measure(rows, "both endpoints, batched")["seconds"]) / single, rel=1e-6)
    gpu = by_measure(rows, "GPU")
    if not torch.cuda.is_available():
        assert gpu["note"].startswith("skipped")
    out = capsys.readouterr().out
    assert "machine:" in out and "IFCSR blend, torch float32" in out and "benchmarks.csv" in out


def test_bench_rejects_unknown_parts(tmp_path):
    with pytest.raises(ValueError, match="unknown parts"):
        bench.run(bench_common.BenchConfig.quick_config(parts=("a", "z")))


def test_peer_controls_reproduce_the_endpoints():
    """DNI at a = 0 / 1 is the fidelity / realism network; PiSA-style latent control at gamma = 0
    is the fidelity output; the merged weights are restored afterwards."""
    model = bench_common.random_tiny_model()
    lr = bench_common.photo_lr(12)
    with torch.no_grad():
        xp, _ = model._pad(model.prepare(lr))
        z = model.encode(xp)
        fid = model.decode(model.denoise(z, "fidelity"))
        real = model.decode(model.denoise(z, "realism"))
        assert (fid - real).abs().max() > 1e-2
        with bench_common.WeightInterpolation(model) as dni:
            assert (dni.change(z, 0.0) - fid).abs().max() < 1e-4
            assert (dni.change(z, 1.0) - real).abs().max() < 1e-4
            mid = dni.change(z, 0.5)
        assert (mid - fid).abs().max() > 1e-3 and (mid - real).abs().max() > 1e-3
        assert torch.equal(model.decode(model.denoise(z, "fidelity")), fid)  # weights and adapters restored
        assert (bench_common.latent_control(model, z, 0.0) - fid).abs().max() < 1e-5
        assert (bench_common.latent_control(model, z, 1.0) - real).abs().max() < 1e-5


def test_sd21_base_config_is_exact():
    """Part e builds SD 2.1-base from these dicts: check the parts that define its cost."""
    from diffusers import UNet2DConditionModel

    assert bench_common.SD21_BASE_UNET["block_out_channels"] == [320, 640, 1280, 1280]
    assert bench_common.SD21_BASE_UNET["attention_head_dim"] == [5, 10, 20, 20]
    assert bench_common.SD21_BASE_UNET["cross_attention_dim"] == 1024 and bench_common.SD21_BASE_UNET["use_linear_projection"]
    assert bench_common.SD21_BASE_VAE["block_out_channels"] == [128, 256, 512, 512]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**bench_common.SD21_BASE_UNET)
    assert 865_000_000 < sum(p.numel() for p in unet.parameters()) < 866_000_000  # SD 2.x UNet: 865.9M


@pytest.mark.slow
def test_subprocess_parts_measure_training_and_peak_rss(tmp_path):
    """Parts c and d run each measurement in a fresh process and report its peak RSS."""
    rows = bench.run(bench_common.BenchConfig.quick_config(parts=("c", "d"), repeats=1, threads=1), log=lambda m: None)
    path = bench.write_csv(rows, tmp_path / "benchmarks.csv")
    _, rows = read_rows(path)
    for stage in (1, 2):
        r = by_measure(rows, f"training step, stage {stage}")
        assert float(r["seconds"]) > 0 and 200 < float(r["peak_mb"]) < 8000
    tiled, untiled = by_measure(rows, "large image, tiled"), by_measure(rows, "large image, untiled")
    assert float(tiled["peak_mb"]) > 200 and float(untiled["peak_mb"]) > 200
    assert float(by_measure(rows, "tiled vs untiled, PSNR dB (2x2")["ratio"]) >= 40
