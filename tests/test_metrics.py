"""ifcsr.evaluation.metrics: registry, availability, tidy frames, Y-channel PSNR/SSIM, offline NIQE.

Reference values come from pyiqa 0.1.16's ResultsCalibra/calibration_summary.csv (rows
"<metric>" = official MATLAB/Python code, "<metric>(ours)" = pyiqa). Its five image pairs are
in pyiqa's sdist, not in the wheel; tests that need them look in $IFCSR_PYIQA_CALIBRA (a
ResultsCalibra folder, or the sdist pyiqa-0.1.16.tar.gz itself) or tests/data/pyiqa_calibra,
and skip with that reason when neither exists.
"""

import importlib.util
import io
import math
import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ifcsr.data.images import ImageError, save_image
from ifcsr.evaluation import metrics
from ifcsr.evaluation.metrics import (
    COLUMNS,
    DEFAULT_METRICS,
    REGISTRY,
    MetricSuite,
    MetricUnavailableError,
    MetricUnavailableWarning,
    available_metrics,
    fetch_metric_weights,
    fid_between,
)
from ifcsr.evaluation.ymetrics import psnr_y, ssim_y

HAS_PYIQA = importlib.util.find_spec("pyiqa") is not None
needs_pyiqa = pytest.mark.skipif(not HAS_PYIQA, reason="pyiqa not installed (ifcsr[metrics])")

CALIBRA_IMAGES = ("I03", "I04", "I06", "I08", "I19")
# pyiqa 0.1.16, ResultsCalibra/calibration_summary.csv
SSIM_OFFICIAL = (0.6993, 0.9978, 0.9989, 0.9669, 0.6519)
SSIM_PYIQA = (0.6997, 0.9978, 0.9989, 0.9671, 0.6522)
NIQE_OFFICIAL = (15.7536, 3.6549, 3.2355, 3.184, 8.6352)
NIQE_PYIQA = (15.6538, 3.6549, 3.2342, 3.1922, 9.0722)
PSNR_RGB_OFFICIAL = (21.11, 20.99, 27.01, 23.3, 21.62)  # pyiqa's default psnr: RGB, no Y
# basicsr 1.4.2 sdist, basicsr/metrics/niqe_pris_params.npz (NIQE's MATLAB modelparameters.mat)
NIQE_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


def _photo(h=128, w=160) -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.chelsea()[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255


def _distortions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "noise": (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1),
        "blur": F.interpolate(F.avg_pool2d(x, 4), size=x.shape[-2:], mode="bilinear", align_corners=False),
        "shift": torch.roll(x, shifts=(1, 2), dims=(2, 3)),
    }


@pytest.fixture(scope="session")
def calibra():
    """{("dist_dir"|"ref_dir", name): (1, 3, H, W) tensor} of pyiqa's calibration images."""
    from PIL import Image

    src = Path(os.environ.get("IFCSR_PYIQA_CALIBRA") or Path(__file__).parent / "data" / "pyiqa_calibra")
    out = {}
    if src.is_dir():
        for kind in ("dist_dir", "ref_dir"):
            for name in CALIBRA_IMAGES:
                hits = [p for p in (src / kind).glob(f"{name}.*") if p.suffix.lower() in (".bmp", ".png")]
                if hits:
                    out[kind, name] = Image.open(hits[0]).convert("RGB")
    elif src.is_file() and tarfile.is_tarfile(src):
        with tarfile.open(src) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) >= 3 and parts[-3] == "ResultsCalibra" and parts[-1].endswith(".bmp"):
                    data = tar.extractfile(member).read()
                    out[parts[-2], parts[-1][:-4]] = Image.open(io.BytesIO(data)).convert("RGB")
    if len(out) != 2 * len(CALIBRA_IMAGES):
        pytest.skip(f"pyiqa calibration images not found at {src} (set IFCSR_PYIQA_CALIBRA to "
                    "pyiqa's ResultsCalibra folder or its sdist pyiqa-0.1.16.tar.gz)")
    return {k: torch.from_numpy(np.array(v)).permute(2, 0, 1)[None].float() / 255 for k, v in out.items()}


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No weights anywhere and no network: what a fresh offline classroom machine sees."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir() -> .../torch/hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("IFCSR_OFFLINE", "1")
    pyiqa_dir = tmp_path / "torch" / "hub" / "pyiqa"
    if HAS_PYIQA:  # pyiqa fixes its cache dir at import: import it now, then redirect it
        import pyiqa.utils.download_util as du

        monkeypatch.setattr(du, "DEFAULT_CACHE_DIR", str(pyiqa_dir))
    return pyiqa_dir


# --- registry --------------------------------------------------------------------------


def test_registry_has_the_paper_metrics_with_peer_settings():
    for name in ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa-pipal", "clipiqa", "fid", "lpips-hed"):
        assert name in REGISTRY
    for name in ("psnr", "ssim"):  # OSEDiff's test_metrics.py
        assert REGISTRY[name].pyiqa_kwargs == {"test_y_channel": True, "color_space": "ycbcr"}
    assert REGISTRY["lpips"].pyiqa_name == "lpips"  # pyiqa's lpips = AlexNet v0.1
    assert "LPIPS_v0.1_alex-df73285e.pth" in [w.filename for w in REGISTRY["lpips"].weights]
    assert REGISTRY["fid"].kind == "dataset" and "fid" not in DEFAULT_METRICS
    hed = REGISTRY["lpips-hed"]
    assert "not LPIPS: HED-VGG16 features, equal channel weights" in hed.label
    assert hed.description.startswith("NOT LPIPS") and hed.lower_better and hed.pyiqa_name is None


@needs_pyiqa
@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.pyiqa_name])
def test_registry_agrees_with_pyiqa_config(name):
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    spec = REGISTRY[name]
    cfg = DEFAULT_CONFIGS[spec.pyiqa_name]
    assert cfg.get("lower_better", False) == spec.lower_better
    assert cfg["metric_mode"] == ("NR" if spec.kind == "dataset" else spec.kind)


# --- PSNR / SSIM on Y --------------------------------------------------------------------


@needs_pyiqa
@pytest.mark.parametrize("color_space", ["ycbcr", "yiq"])
def test_psnr_ssim_equal_pyiqa(color_space):
    import pyiqa

    p = pyiqa.create_metric("psnr", test_y_channel=True, color_space=color_space, device="cpu")
    s = pyiqa.create_metric("ssim", test_y_channel=True, color_space=color_space, device="cpu")
    hr = _photo()
    for name, sr in _distortions(hr).items():
        assert psnr_y(sr, hr, color_space=color_space).item() == pytest.approx(p(sr, hr).item(), abs=1e-5), name
        # pyiqa rounds its Gaussian window to float32; ssim_y's is float64 (measured <= 6e-7)
        assert ssim_y(sr, hr, color_space=color_space).item() == pytest.approx(s(sr, hr).item(), abs=2e-6), name


def test_psnr_y_equals_hand_computed():
    hr = _photo()
    sr = _distortions(hr)["noise"]
    to_y = lambda t: 16 / 255 + t[0].double().numpy().transpose(1, 2, 0) @ np.array([65.481, 128.553, 24.966]) / 255
    mse = np.mean((to_y(sr) - to_y(hr)) ** 2)
    assert psnr_y(sr, hr).item() == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    assert psnr_y(hr, hr).item() == pytest.approx(80.0)  # pyiqa's eps 1e-8 caps identical images
    assert ssim_y(hr, hr).item() == 1.0


def test_psnr_ssim_batched_per_image():
    hr = _photo().repeat(3, 1, 1, 1)
    d = _distortions(hr[:1])
    sr = torch.cat([d["noise"], d["blur"], d["shift"]])
    p, s = psnr_y(sr, hr), ssim_y(sr, hr)
    assert p.shape == s.shape == (3,)
    for i in range(3):
        assert p[i].item() == pytest.approx(psnr_y(sr[i : i + 1], hr[:1]).item(), abs=1e-5)
        assert s[i].item() == pytest.approx(ssim_y(sr[i : i + 1], hr[:1]).item(), abs=1e-12)


def test_calibration_ssim(calibra):
    # pyiqa's default ssim is Y of YIQ; its calibration rows are computed with that setting.
    for i, name in enumerate(CALIBRA_IMAGES):
        dist, ref = calibra["dist_dir", name], calibra["ref_dir", name]
        got = ssim_y(dist, ref, color_space="yiq").item()
        assert got == pytest.approx(SSIM_PYIQA[i], abs=1e-4), name
        assert got == pytest.approx(SSIM_OFFICIAL[i], abs=5e-4), name
        # the images themselves are the calibration images: RGB PSNR as in the table
        mse = F.mse_loss(dist.double(), ref.double()).item()
        assert 10 * math.log10(1 / mse) == pytest.approx(PSNR_RGB_OFFICIAL[i], abs=0.01), name


# --- offline NIQE ------------------------------------------------------------------------


def _niqe_or_skip():
    ok, reason = metrics._check(REGISTRY["niqe"])
    if not ok:
        pytest.skip(f"niqe unavailable here: {reason}")


def test_niqe_params_asset_is_the_basicsr_file():
    from ifcsr.weights.metric_files import NIQE_ASSET as path

    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == NIQE_PARAMS_SHA256
    with np.load(path) as p:
        assert p["mu_pris_param"].shape == (1, 36) and p["cov_pris_param"].shape == (36, 36)


def test_niqe_offline_reproduces_pyiqa_calibration(calibra):
    _niqe_or_skip()
    suite = MetricSuite(["niqe"])
    dist = torch.cat([calibra["dist_dir", n] for n in CALIBRA_IMAGES])
    df = suite(dist, image=list(CALIBRA_IMAGES))
    got = df.set_index("image")["value"]
    for i, name in enumerate(CALIBRA_IMAGES):
        # NIQE fits each AGGD shape by an argmin over a 0.001-step grid and inverts a covariance,
        # so its last digits follow the numpy/scipy/BLAS build: |ours - pyiqa| was 6e-4 on one
        # machine and 2.0e-3 on I03 (value 15.65, i.e. 1.3e-4 relative) with numpy 2.4.6 and
        # scipy 1.17.1. Allow 3e-4 relative, at least 2e-3: a wrong pristine model or colour
        # conversion moves NIQE by 0.1 or more. pyiqa itself is up to 0.44 off MATLAB (I19).
        assert got[name] == pytest.approx(NIQE_PYIQA[i], rel=3e-4, abs=2e-3), name
        assert got[name] == pytest.approx(NIQE_OFFICIAL[i], abs=0.5), name


def test_niqe_prefers_sharp_to_blurred():
    _niqe_or_skip()
    hr = _photo(256, 256)
    blurred = _distortions(hr)["blur"]
    df = MetricSuite(["niqe"])(torch.cat([hr, blurred]), image=["sharp", "blurred"])
    v = df.set_index("image")["value"]
    assert v["sharp"] + 1.0 < v["blurred"]


# --- availability ------------------------------------------------------------------------


def test_available_metrics_frame():
    df = available_metrics()
    assert list(df.columns) == ["metric", "available", "reason", "lower_better", "kind"]
    assert list(df["metric"]) == list(REGISTRY)
    assert df["available"].dtype == bool
    assert (df["reason"].str.len() > 0).all()
    assert df.set_index("metric").loc[["psnr", "ssim"], "available"].all()
    with pytest.raises(ValueError, match="unknown metric 'lpipz'"):
        available_metrics(["lpipz"])


@needs_pyiqa
def test_missing_weights_offline_are_unavailable_with_reason(empty_caches):
    df = available_metrics(["musiq", "lpips", "clipiqa", "maniqa-pipal", "lpips-hed"]).set_index("metric")
    assert not df["available"].any()
    assert "musiq_koniq_ckpt-e95806b9.pth not in the pyiqa cache" in df.loc["musiq", "reason"]
    assert "no network (IFCSR_OFFLINE=1)" in df.loc["musiq", "reason"]
    assert "LPIPS_v0.1_alex-df73285e.pth" in df.loc["lpips", "reason"]
    assert "alexnet-owt-7be5be79.pth" in df.loc["lpips", "reason"]
    assert "RN50.pt" in df.loc["clipiqa", "reason"]
    assert "timm/vit_base_patch8_224" in df.loc["maniqa-pipal", "reason"]
    assert "hed" in df.loc["lpips-hed", "reason"].lower()
    # the right file in pyiqa's cache makes it available (presence is all that is checked)
    empty_caches.mkdir(parents=True)
    (empty_caches / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(b"x")
    assert bool(available_metrics(["musiq"])["available"].iloc[0])


# --- MetricSuite -------------------------------------------------------------------------


@needs_pyiqa
def test_suite_skips_unavailable_with_one_warning(empty_caches):
    with pytest.warns(MetricUnavailableWarning, match="musiq") as rec:
        suite = MetricSuite(["psnr", "musiq"])
    assert len(rec) == 1
    assert "musiq_koniq_ckpt-e95806b9.pth" in suite.unavailable["musiq"]
    hr = _photo()
    sr = _distortions(hr)["noise"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # computing must not warn again
        df = suite(sr, hr, image="chelsea", gamma=0.3)
    assert list(df.columns) == COLUMNS
    assert list(df["metric"]) == ["psnr"]  # no number for musiq, not even NaN


@needs_pyiqa
def test_suite_reports_a_failed_build_instead_of_a_number(empty_caches):
    empty_caches.mkdir(parents=True)
    (empty_caches / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(b"not a checkpoint")
    suite = MetricSuite(["psnr", "musiq"])
    assert suite.unavailable == {}
    hr = _photo()
    with pytest.warns(MetricUnavailableWarning, match="musiq"):
        df = suite(_distortions(hr)["noise"], hr)
    assert set(df["metric"]) == {"psnr"}
    assert suite.unavailable["musiq"].startswith("building it failed")


def test_suite_tidy_frame_per_image():
    hr = _photo().repeat(2, 1, 1, 1)
    d = _distortions(hr[:1])
    sr = torch.cat([d["noise"], d["blur"]])
    df = MetricSuite(["psnr", "ssim"])(sr, hr, image=["noisy", "blurry"], gamma=[0.0, 1.0])
    assert list(df.columns) == COLUMNS
    assert len(df) == 4
    assert df["gamma"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert not df["lower_better"].any()
    v = df.set_index(["image", "metric"])["value"]
    assert v["noisy", "psnr"] == pytest.approx(psnr_y(sr[:1], hr[:1]).item(), abs=1e-6)
    assert v["blurry", "ssim"] == pytest.approx(ssim_y(sr[1:], hr[1:]).item(), abs=1e-12)
    # default names and a missing gamma
    df2 = MetricSuite(["psnr"])(sr, hr)
    assert df2["image"].tolist() == ["0", "1"] and df2["gamma"].isna().all()
    # a tidy frame pivots into the table the paper prints
    assert pd.pivot_table(df, index="gamma", columns="metric", values="value").shape == (2, 2)


def test_hr_none_skips_full_reference_metrics():
    names = ["psnr", "ssim", "niqe"]
    suite = MetricSuite(names)
    df = suite(_photo(128, 128))
    assert list(df.columns) == COLUMNS
    expected = {"niqe"} - set(suite.unavailable)
    assert set(df["metric"]) == expected


def test_bad_input_raises_clear_errors():
    hr = _photo()
    suite = MetricSuite(["psnr", "ssim"])
    nan = hr.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ImageError, match="NaN"):
        suite(nan, hr)
    with pytest.raises(ImageError, match="NaN"):
        psnr_y(hr, nan)
    with pytest.raises(ImageError, match="sizes differ"):
        suite(hr, hr[..., :64])
    with pytest.raises(ImageError, match="sizes differ"):
        ssim_y(hr, hr[..., :64])
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        suite(hr * 255, hr)
    with pytest.raises(ImageError, match="at least 11x11"):
        suite(hr[..., :8, :8], hr[..., :8, :8])
    with pytest.raises(ValueError, match="2 names"):
        suite(hr.repeat(2, 1, 1, 1), hr.repeat(2, 1, 1, 1), image="one")
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        suite(hr.repeat(2, 1, 1, 1), hr.repeat(2, 1, 1, 1), gamma=[0, 0.5, 1])
    with pytest.raises(ValueError, match="unknown metric"):
        MetricSuite(["psnr", "PSNR"])
    with pytest.raises(ValueError, match="fid_between"):
        MetricSuite(["fid"])
    with pytest.raises(ValueError, match="color_space"):
        psnr_y(hr, hr, color_space="lab")


# --- lpips-hed ---------------------------------------------------------------------------


def test_lpips_hed_is_mean_of_hed_layers():
    ok, reason = metrics._check(REGISTRY["lpips-hed"])
    if not ok:
        pytest.skip(reason)
    from ifcsr.weights.hed import HedPerceptual

    hr = _photo(64, 64)
    g = torch.Generator().manual_seed(0)
    mild = (hr + 0.02 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    strong = (hr + 0.10 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    df = MetricSuite(["lpips-hed"])(torch.cat([hr, mild, strong]), hr.repeat(3, 1, 1, 1),
                                    image=["same", "mild", "strong"])
    v = df.set_index("image")["value"]
    assert v["same"] == pytest.approx(0.0, abs=1e-9)
    assert 0 < v["mild"] < v["strong"]
    with torch.no_grad():
        layers = HedPerceptual()(strong, hr)
    assert len(layers) == 5
    assert v["strong"] == pytest.approx(torch.stack(layers).mean().item(), rel=1e-5)
    assert df["lower_better"].all()


# --- FID and fetching --------------------------------------------------------------------


def _folder(path: Path, n: int) -> Path:
    path.mkdir()
    for i in range(n):
        save_image(_photo(32, 32).roll(i, dims=3), path / f"{i}.png")
    return path


@needs_pyiqa
def test_fid_between_unavailable_offline_raises(tmp_path, empty_caches):
    a, b = _folder(tmp_path / "a", 2), _folder(tmp_path / "b", 2)
    with pytest.raises(MetricUnavailableError, match="pt_inception-2015-12-05-6726825d.pth"):
        fid_between(a, b)
    with pytest.raises(ImageError, match="not a folder"):
        fid_between(a, tmp_path / "missing")
    with pytest.raises(ImageError, match="at least 2 images"):
        fid_between(a, _folder(tmp_path / "c", 1))


@needs_pyiqa
def test_fetch_refuses_offline_without_downloading(empty_caches):
    with pytest.raises(MetricUnavailableError, match=r"cannot fetch musiq.*no network"):
        fetch_metric_weights(["musiq"])
    df = fetch_metric_weights(["psnr", "ssim"])  # nothing to fetch
    assert df["available"].all()
    assert not empty_caches.exists() or not any(empty_caches.iterdir())
