"""Tests for ifcsr.data: sample photos, degradations, folder datasets. Offline, seconds."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ifcsr import data
from ifcsr.data.images import ImageError, to_tensor


@pytest.fixture(scope="module")
def hr():
    """A 64x64 natural crop, (3, H, W) float in [0, 1]."""
    return to_tensor(data.load_sample("astronaut")[100:164, 200:264])[0]


def _write(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def _noise_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---- sample photos ----------------------------------------------------------------


def test_sample_images_names_split_and_format():
    images = data.sample_images()
    assert tuple(images) == data.SAMPLE_NAMES
    assert set(data.HELD_OUT).isdisjoint(data.TRAIN_NAMES)
    assert set(data.HELD_OUT) | set(data.TRAIN_NAMES) == set(data.SAMPLE_NAMES)
    assert data.HELD_OUT == ("chelsea", "coffee")
    assert tuple(data.train_images()) == data.TRAIN_NAMES
    assert tuple(data.held_out_images()) == data.HELD_OUT
    for name, im in images.items():
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3, name
        # natural colour photos, not grey stored as RGB
        assert np.abs(im[..., 0].astype(int) - im[..., 2]).mean() > 1, name
    # callers get copies, so editing one does not poison the cache
    images["chelsea"][:] = 0
    assert data.load_sample("chelsea").max() > 0


def test_load_sample_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="astronaut.*coffee"):
        data.load_sample("lena")


# ---- degradations -------------------------------------------------------------------

DEGRADATIONS = [data.BicubicDegradation(4), data.RealESRGANDegradation(4)]


@pytest.mark.parametrize("deg", DEGRADATIONS, ids=["bicubic", "realesrgan"])
def test_degradation_shape_dtype_range_and_determinism(deg, hr):
    lr = deg(hr, seed=7)
    assert lr.shape == (3, 16, 16) and lr.dtype == torch.float32
    assert 0 <= lr.min() and lr.max() <= 1
    assert torch.equal(lr * 255, (lr * 255).round())  # quantised to uint8 levels
    assert torch.equal(lr, deg(hr, seed=7))
    # non-divisible size: floor
    assert deg(hr[:, :63, :62], seed=1).shape == (3, 15, 15)

    batch = torch.stack([hr, hr.flip(-1), hr.flip(-2)])
    lrb = deg(batch, seed=np.random.default_rng(3))
    assert lrb.shape == (3, 3, 16, 16) and lrb.dtype == torch.float32
    assert torch.equal(lrb, deg(batch, seed=np.random.default_rng(3)))


def test_bicubic_matches_pil_and_is_close_to_hr(hr):
    lr = data.BicubicDegradation(4)(hr)
    hr_u8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = np.asarray(Image.fromarray(hr_u8).resize((16, 16), Image.BICUBIC)).astype(float)
    ours = lr.permute(1, 2, 0).numpy() * 255
    assert np.abs(ours - pil)[2:-2, 2:-2].max() <= 2  # antialiased: PIL-like, not 4-tap sampling


def test_realesrgan_seeds_differ_and_samples_in_batch_differ(hr):
    deg = data.RealESRGANDegradation(4)
    outs = [deg(hr, seed=s) for s in range(4)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])
    lrb = deg(torch.stack([hr, hr]), seed=0)
    assert not torch.equal(lrb[0], lrb[1])  # independent draws per sample
    # and it really degrades: farther from bicubic than bicubic is from itself
    assert (outs[0] - data.BicubicDegradation(4)(hr)).abs().mean() > 0.01


def test_realesrgan_params_overrides_and_validation():
    deg = data.RealESRGANDegradation(2, noise_range=(1, 5))
    assert deg.params.noise_range == (1, 5) and deg.params.noise_range2 == (1.0, 25.0)
    with pytest.raises(TypeError, match="noise_rang"):
        data.RealESRGANDegradation(4, noise_rang=(1, 5))
    with pytest.raises(ValueError, match="sum to 1"):
        data.DegradationParams(resize_prob=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="low <= high"):
        data.DegradationParams(noise_range=(30, 1))
    with pytest.raises(ValueError, match="unknown kernel"):
        data.DegradationParams(kernel_list=("iso", "aniso", "box", "a", "b", "c"))


def test_degradation_rejects_bad_input(hr):
    deg = data.RealESRGANDegradation(4)
    with pytest.raises(ImageError, match="range|values"):
        deg(hr * 2, seed=0)
    with pytest.raises(ImageError, match="shape"):
        deg(hr[:1], seed=0)
    with pytest.raises(TypeError, match="seed"):
        deg(hr, seed="1")


def test_kernels_are_normalised_and_shaped():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = data.random_kernel(rng)
        assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-5
    iso = data.blur_kernel("gaussian", 11, sigma_x=2.0)
    np.testing.assert_allclose(iso, iso.T, atol=1e-7)  # isotropic -> symmetric
    aniso = data.blur_kernel("gaussian", 11, sigma_x=3.0, sigma_y=0.5)
    assert aniso[5, :].sum() > 3 * aniso[:, 5].sum()  # theta=0: stretched along x
    rotated = data.blur_kernel("gaussian", 11, sigma_x=3.0, sigma_y=0.5, theta=np.pi / 2)
    np.testing.assert_allclose(rotated, aniso.T, atol=1e-6)
    flat = data.blur_kernel("plateau", 11, sigma_x=2.0, beta=2.0)
    peaky = data.blur_kernel("generalized", 11, sigma_x=2.0, beta=0.5)
    # neighbour/centre ratio: plateau (beta>1) is flat-topped, generalized (beta<1) peaky
    assert peaky[5, 6] / peaky[5, 5] < iso[5, 6] / iso[5, 5] < flat[5, 6] / flat[5, 5]
    sinc = data.sinc_kernel(np.pi / 2, 13, pad_to=21)
    assert sinc.shape == (21, 21) and abs(sinc.sum() - 1) < 1e-5 and sinc.min() < 0  # ringing lobes
    with pytest.raises(ValueError, match="odd"):
        data.blur_kernel("gaussian", 10, sigma_x=1.0)


def _changed(a, b):
    return a.shape != b.shape or (a - b).abs().mean() > 1e-3


def test_each_step_changes_the_image_and_is_seeded(hr):
    batch = torch.stack([hr, hr.flip(-1)])
    steps = {
        "blur": lambda x, s: data.apply_blur(x, data.blur_kernel("gaussian", 7, sigma_x=1.5)),
        "resize": lambda x, s: data.random_resize(x, s, resize_prob=(0, 1, 0), resize_range=(0.5, 0.6)),
        "gaussian": lambda x, s: data.add_gaussian_noise(x, s),
        "poisson": lambda x, s: data.add_poisson_noise(x, s),
        "jpeg": lambda x, s: data.jpeg_compress(x, 30),
        "sinc": lambda x, s: data.apply_blur(x, data.sinc_kernel(np.pi / 3, 11)),
    }
    for name, step in steps.items():
        for x in (hr, batch):
            y = step(x, 5)
            assert y.ndim == x.ndim and y.shape[:-2] == x.shape[:-2], name
            assert _changed(x, y), name
            assert torch.equal(y, step(x, 5)), name
    assert not torch.equal(data.add_gaussian_noise(hr, 1), data.add_gaussian_noise(hr, 2))
    assert not torch.equal(data.add_poisson_noise(hr, 1), data.add_poisson_noise(hr, 2))
    for s in range(5):  # "down" draws the factor from [low, 1]
        h, w = data.random_resize(hr, s, resize_prob=(0, 1, 0), resize_range=(0.5, 1.5)).shape[-2:]
        assert h == w and 32 <= h <= 64
    up = data.random_resize(hr, 0, resize_prob=(1, 0, 0), resize_range=(0.5, 1.5)).shape[-1]
    assert 64 <= up <= 96
    assert data.random_resize(hr, 0, resize_prob=(0, 0, 1)).shape == hr.shape


def test_gray_noise_is_equal_across_channels(hr):
    for add in (data.add_gaussian_noise, data.add_poisson_noise):
        mid = torch.full_like(hr, 0.5)  # no clamping, so the noise is visible as is
        noise = add(mid, 0, gray_prob=1.0) - mid
        assert torch.equal(noise[0], noise[1]) and torch.equal(noise[1], noise[2])
        noise = add(mid, 0, gray_prob=0.0) - mid
        assert not torch.equal(noise[0], noise[1])


def test_jpeg_quality_per_sample_and_validation(hr):
    batch = torch.stack([hr, hr])
    out = data.jpeg_compress(batch, [10, 95])
    assert (out[0] - hr).abs().mean() > (out[1] - hr).abs().mean()
    with pytest.raises(ValueError, match="quality"):
        data.jpeg_compress(hr, 0)


# ---- ImageFolder ----------------------------------------------------------------------


def test_image_folder_items_and_determinism(tmp_path):
    _write(tmp_path / "a.png", _noise_image(80, 96, 1))
    _write(tmp_path / "sub" / "b.jpg", _noise_image(70, 70, 2), quality=95)
    ds = data.ImageFolder(tmp_path, crop_size=32, scale=4, length=5, seed=3)
    assert len(ds) == 5
    item = ds[1]
    assert item["hr"].shape == (3, 32, 32) and item["lr"].shape == (3, 8, 8)
    assert item["name"] == "sub/b"
    assert torch.equal(item["hr"], ds[1]["hr"]) and torch.equal(item["lr"], ds[1]["lr"])
    other = data.ImageFolder(tmp_path, crop_size=32, scale=4, length=5, seed=4)
    assert not torch.equal(item["hr"], other[1]["hr"])
    assert ds[0]["hr"].dtype == torch.float32
    with pytest.raises(IndexError):
        ds[5]


def test_image_folder_skips_bad_files_with_one_warning(tmp_path):
    _write(tmp_path / "good.png", _noise_image(64, 64))
    _write(tmp_path / "small.png", _noise_image(20, 64))
    full = _write(tmp_path / "full.png", _noise_image(64, 64)).read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "readme.txt").write_text("ignored: not an image extension")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.ImageFolder(tmp_path, crop_size=32)
    assert len(caught) == 1
    message = str(caught[0].message)
    for bad in ("small.png", "truncated.png", "notes.jpg"):
        assert bad in message
    assert "good.png" not in message and "readme" not in message
    assert sorted(p.name for p in ds.files) == ["full.png", "good.png"]


def test_image_folder_strict_raises_naming_file(tmp_path):
    _write(tmp_path / "good.png", _noise_image(64, 64))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="broken.png"):
        data.ImageFolder(tmp_path, crop_size=32, strict=True)
    _write(tmp_path / "tiny.png", _noise_image(8, 8))
    (tmp_path / "broken.png").unlink()
    with pytest.raises(ImageError, match="tiny.png"):
        data.ImageFolder(tmp_path, crop_size=32, strict=True)


def test_image_folder_empty_or_all_bad_raises(tmp_path):
    with pytest.raises(ImageError, match="no usable images"):
        data.ImageFolder(tmp_path)
    _write(tmp_path / "small.png", _noise_image(16, 16))
    with pytest.warns(UserWarning, match="small.png"), pytest.raises(ImageError, match="no usable images"):
        data.ImageFolder(tmp_path, crop_size=32)
    with pytest.raises(ValueError, match="multiple of scale"):
        data.ImageFolder(tmp_path, crop_size=30, scale=4)


def test_image_folder_survives_files_broken_after_scan(tmp_path):
    for i, name in enumerate("abcd"):
        _write(tmp_path / f"{name}.png", _noise_image(48, 48, i))
    ds = data.ImageFolder(tmp_path, crop_size=32, length=8)
    for name in "abd":
        (tmp_path / f"{name}.png").write_bytes(b"gone")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(8)]  # every index falls back to the one good file
    assert sorted(str(w.message).split("/")[-1][:5] for w in caught) == ["a.png", "b.png", "d.png"]
    assert {it["name"] for it in items} == {"c"}
    assert all(it["hr"].shape == (3, 32, 32) for it in items)
    (tmp_path / "c.png").unlink()
    with pytest.warns(UserWarning, match="c.png"), pytest.raises(ImageError, match="unreadable"):
        ds[1]


def test_image_folder_with_realesrgan(tmp_path):
    _write(tmp_path / "a.png", _noise_image(48, 48))
    ds = data.ImageFolder(tmp_path, crop_size=32, degradation=data.RealESRGANDegradation(4))
    assert ds[0]["lr"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="scale"):
        data.ImageFolder(tmp_path, crop_size=32, scale=2, degradation=data.BicubicDegradation(4))


def test_sample_dataset():
    ds = data.SampleDataset(crop_size=32, scale=4, length=8, seed=1)
    names = [ds[i]["name"] for i in range(8)]
    assert set(names) == set(data.TRAIN_NAMES)
    item = ds[2]
    assert item["hr"].shape == (3, 32, 32) and item["lr"].shape == (3, 8, 8)
    assert torch.equal(item["lr"], ds[2]["lr"])
    with pytest.raises(KeyError, match="valid names"):
        data.SampleDataset(["nope"], crop_size=32)


# ---- PairedFolder -------------------------------------------------------------------


def test_paired_folder_matches_by_name_and_warns_unmatched(tmp_path):
    _write(tmp_path / "test_LR" / "Canon_001_LR4.png", _noise_image(8, 10, 1))
    _write(tmp_path / "test_HR" / "Canon_001_HR.png", _noise_image(32, 40, 2))
    _write(tmp_path / "test_LR" / "img2.png", _noise_image(6, 6, 3))
    _write(tmp_path / "test_HR" / "img2.png", _noise_image(24, 24, 4))
    _write(tmp_path / "test_LR" / "lonely.png", _noise_image(6, 6, 5))
    with pytest.warns(UserWarning, match="lonely.png"):
        ds = data.PairedFolder(tmp_path, scale=4)
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "Canon_001"
    assert item["lr"].shape == (3, 8, 10) and item["hr"].shape == (3, 32, 40)
    assert ds[1]["name"] == "img2"


def test_paired_folder_single_folder_realsr_layout(tmp_path):
    _write(tmp_path / "4" / "Nikon_050_LR4.png", _noise_image(5, 5))
    _write(tmp_path / "4" / "Nikon_050_HR.png", _noise_image(20, 20))
    ds = data.PairedFolder(tmp_path, lr_dir="4", hr_dir="4")
    assert len(ds) == 1 and ds[0]["name"] == "Nikon_050"


def test_paired_folder_wrong_scale_and_missing(tmp_path):
    _write(tmp_path / "test_LR" / "x.png", _noise_image(8, 8))
    _write(tmp_path / "test_HR" / "x.png", _noise_image(16, 16))
    with pytest.raises(ImageError, match="'x'.*16x16.*8x8"):
        data.PairedFolder(tmp_path, scale=4)
    assert len(data.PairedFolder(tmp_path, scale=2)) == 1
    with pytest.raises(FileNotFoundError, match="test_LR"):
        data.PairedFolder(tmp_path / "nowhere")


def test_pairs_from_samples():
    pairs = data.pairs_from_samples(crop=64)
    assert [p["name"] for p in pairs] == list(data.HELD_OUT)
    for p in pairs:
        assert p["hr"].shape == (3, 64, 64) and p["lr"].shape == (3, 16, 16)
    whole = data.pairs_from_samples(["chelsea"])[0]
    assert whole["hr"].shape == (3, 300, 448) and whole["lr"].shape == (3, 75, 112)
    deg = data.RealESRGANDegradation(2)
    a, b = data.pairs_from_samples(["coffee"], deg, 32), data.pairs_from_samples(["coffee"], deg, 32)
    assert a[0]["lr"].shape == (3, 16, 16) and torch.equal(a[0]["lr"], b[0]["lr"])
