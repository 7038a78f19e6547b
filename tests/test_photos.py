"""The "package-photos" training set (issue 13): seven photos from registry packages, the
tiny preset's stage-2 data, drawn exactly as a folder of the same photos is drawn."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ifcsr.config import StageConfig, TrainConfig
from ifcsr.data.folders import ImageFolder, PhotoDataset
from ifcsr.data.samples import EXTRA_NAMES, HELD_OUT, PHOTO_NAMES, TRAIN_NAMES, load_photo
from ifcsr.errors import InputError, UnknownNameError
from ifcsr.recipes import make_dataset, make_degradation, smoke_preset, tiny_preset


def test_photo_names_are_the_training_photos_and_three_more_never_the_held_out():
    assert set(PHOTO_NAMES) == set(TRAIN_NAMES) | set(EXTRA_NAMES) and len(PHOTO_NAMES) == 7
    assert list(PHOTO_NAMES) == sorted(PHOTO_NAMES)  # as a folder lists them
    assert not set(PHOTO_NAMES) & set(HELD_OUT)
    for name in EXTRA_NAMES:
        im = load_photo(name)
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 and min(im.shape[:2]) >= 400
        assert im.std() > 20  # a photo, not a blank decode
        im[:] = 0  # a fresh copy: the cache is untouched
        assert load_photo(name).std() > 20
    with pytest.raises(UnknownNameError, match="grace_hopper"):
        load_photo("lena")
    with pytest.raises(InputError, match="held-out"):
        PhotoDataset(["astronaut", "chelsea"], crop_size=32)


def test_photo_dataset_draws_what_image_folder_draws_from_the_same_photos(tmp_path):
    """PNG files of the same arrays in a folder: ImageFolder and PhotoDataset give bit-identical
    items for every index and epoch, so `--data FOLDER` and "package-photos" train the same."""
    for name in PHOTO_NAMES:
        Image.fromarray(load_photo(name)).save(tmp_path / f"{name}.png")
    deg = make_degradation("mixed:0.4", 4)
    a = ImageFolder(tmp_path, crop_size=32, degradation=deg, seed=3, verify=False)
    b = PhotoDataset(crop_size=32, degradation=deg, seed=3)
    assert len(a) == len(b) == 7
    for epoch in (0, 2):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for i in range(7):
            x, y = a[i], b[i]
            assert x["name"] == y["name"]
            assert torch.equal(x["hr"], y["hr"]) and torch.equal(x["lr"], y["lr"])
    b.set_epoch(1)
    assert not torch.equal(b[0]["hr"], PhotoDataset(crop_size=32, degradation=deg, seed=3)[0]["hr"])


def test_stage_data_selects_the_stage_dataset_and_is_optional_in_saved_configs():
    cfg = smoke_preset()
    assert type(make_dataset(cfg, 32, data="package-photos")).__name__ == "PhotoDataset"
    assert type(make_dataset(cfg, 32)).__name__ == "SampleDataset"
    with pytest.raises(InputError, match="stage's data"):
        StageConfig(data="/some/folder")
    d = TrainConfig().to_dict()
    assert "data" not in d["stage1"] and "data" not in d["stage2"]  # old checkpoints' hashes unchanged
    cfg = replace(cfg, stage2=replace(cfg.stage2, data="package-photos"))
    assert TrainConfig.from_dict(cfg.to_dict()).stage2.data == "package-photos"
    assert TrainConfig(data="package-photos").data_folders == ()


def test_tiny_preset_trains_stage_2_on_the_package_photos_and_data_overrides_it(tmp_path):
    from ifcsr.cli.app import build_parser
    from ifcsr.cli.train import config_from_args

    preset = tiny_preset()
    assert preset.stage2.data == "package-photos" and preset.stage1.data is None and preset.data == "samples"
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "--data", str(tmp_path)]))
    assert cfg.data == str(tmp_path) and cfg.stage1.data is None and cfg.stage2.data is None
