"""Hostile inputs, the re-count (issue 28, part 6): every class of hole it found, each with the
test that would have caught it. Config values out of any sane range, files that are empty or
cannot be written, trainer states that lie, adapters tied to another scale or role, checksum
records that leave out a file or point outside their folder. Tiny random backbone from conftest;
seconds in all, one 1-step stage-2 run included."""

import dataclasses
import inspect
import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ifcsr.checkpoint import LEGACY_STATE, MANIFEST, READ_FILES, load_state, save_state, write_manifest
from ifcsr.config import LossConfig, ModelConfig, Stage0Config, StageConfig, TrainConfig
from ifcsr.errors import CheckpointError, ConfigError, InputError, OutputError
from ifcsr.models import IFCSR, load_backbone, lora_parameters

CONFIG_CLASSES = (ModelConfig, LossConfig, StageConfig, Stage0Config, TrainConfig)


def _nested(depth: int):
    x = "to_q"
    for _ in range(depth):
        x = [x]
    return x


# Each is wrong for every config field: a value no field may take (too large for any range, NaN,
# infinite, negative, a name longer than any, a list nested where a name belongs, an object).
HOSTILE = {"10**30": 10**30, "-1": -1, "nan": float("nan"), "inf": float("inf"), "5000 chars": "x" * 5000,
           "nested list": [_nested(50)], "object": {}}


@pytest.fixture(scope="module")
def model(tiny_backbone_dir):
    m = IFCSR(load_backbone(tiny_backbone_dir), TrainConfig())
    g = torch.Generator().manual_seed(5)
    for name in ("fidelity", "realism"):  # two different adapters, so a swap changes the output
        for n, p in lora_parameters(m.unet, name).items():
            if "lora_B" in n:
                p.data = torch.randn(p.shape, generator=g) * 0.05
    return m


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("ck") / "ckpt")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(ck: Path, section: str, key: str, value) -> None:
    cfg = json.loads((ck / "config.json").read_text())
    cfg[section][key] = value
    (ck / "config.json").write_text(json.dumps(cfg))
    write_manifest(ck)  # re-recorded: the checksum list is no defence against whoever edits the folder


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize("klass", CONFIG_CLASSES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("what", list(HOSTILE))
def test_every_config_field_refuses_values_outside_its_range(klass, what):
    for f in dataclasses.fields(klass):
        with pytest.raises(ConfigError, match=rf"\b{f.name}\b"):
            klass(**{f.name: HOSTILE[what]})


@pytest.mark.parametrize("section, key, value, match", [
    ("model", "lora_rank", 10**30, "lora_rank must be an integer in 1..1024"),
    ("model", "scale", 10**6, "scale must be an integer in 1..16"),
    ("model", "antiring", 1_000_000_001, "antiring must be 0 .* 3..255"),
    ("model", "lora_alpha", 1e300, "lora_alpha"),
    ("model", "timestep", 10**4, "timestep"),
    ("model", "target_modules", [_nested(200)], r"target_modules\[0\]"),
    ("stage1", "crop_size", 10**6, "crop_size"),
    ("stage1", "batch_size", 10**6, "batch_size"),
    ("stage1", "steps", 10**12, "steps"),
    ("stage1", "betas", [0.9, 0.99, 0.5], "betas"),
    ("loss", "k", 1e200, r"\bk\b"),
    ("loss", "texture_patch", 10**6, "texture_patch"),
    ("loss", "adv_warmup", 10**12, "adv_warmup"),
])
def test_a_checkpoint_config_out_of_range_is_refused_before_any_allocation(saved, tmp_path, monkeypatch, section,
                                                                           key, value, match):
    import ifcsr.models

    ck = _copy(saved, tmp_path / "ck")
    _edit_config(ck, section, key, value)

    def no_backbone(*a, **k):
        raise AssertionError("the backbone was loaded before the config was checked")

    monkeypatch.setattr(ifcsr.models, "load_backbone", no_backbone)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        IFCSR.load(ck)
    assert "config.json" in str(info.value) and time.perf_counter() - t0 < 10
    assert len(str(info.value)) < 600  # the value is shown short, never the whole of it


def test_deeply_nested_config_json_is_a_config_error_not_a_recursion(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    (ck / "config.json").write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    write_manifest(ck)
    with pytest.raises(ConfigError, match="nested more deeply"):
        IFCSR.load(ck)
    (ck / "history.json").write_text("[" * 100_000 + "]" * 100_000)  # the other JSON files of a checkpoint too
    with pytest.raises(CheckpointError, match="nested more deeply"):
        from ifcsr.lora import read_json
        read_json(ck / "history.json")


def test_every_range_is_documented_next_to_its_field():
    """Each numeric, name or list field says its range in the comment on or above its line
    (fields with a fixed set of choices, booleans and the sections name their values already)."""
    choices = {"formulation", "color_fix", "feature_net", "overshoot_reduce", "overshoot_on", "lr_schedule",
               "init_from", "mixed_precision", "adv_taps", "texture_taps", "adv_augment", "color_augment",
               "zero_out_conv", "gradient_checkpointing", "model", "loss", "stage0", "stage1", "stage2"}
    for klass in CONFIG_CLASSES:
        lines = inspect.getsource(klass).splitlines()
        for f in dataclasses.fields(klass):
            if f.name in choices or (klass is StageConfig and f.name == "data"):
                continue
            i = next(n for n, line in enumerate(lines) if line.strip().startswith(f"{f.name}:"))
            above = []
            for line in reversed(lines[:i]):
                if not line.strip().startswith("#"):
                    break
                above.append(line)
            near = [lines[i], *above]
            shared = [line for line in lines if line.strip().startswith("#") and "range" in line.lower()
                      and f.name in line]
            assert any("range" in line.lower() for line in near) or shared, f"{klass.__name__}.{f.name}: no range"


def test_config_ranges_keep_every_shipped_config_and_its_bytes():
    from ifcsr.models import BUNDLED_CHECKPOINT
    from ifcsr.recipes import PRESETS

    text = (BUNDLED_CHECKPOINT / "config.json").read_text()
    assert json.dumps(TrainConfig.load(BUNDLED_CHECKPOINT / "config.json").to_dict(), indent=2) == text
    for name, preset in PRESETS.items():
        cfg = preset()
        assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, name


# --------------------------------------------------------------------------- files


def test_empty_prompt_file_is_a_checkpoint_error_naming_it(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    (ck / "backbone" / "empty_prompt.safetensors").write_bytes(b"")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match=r"backbone/empty_prompt.safetensors: not a readable empty-prompt"):
        IFCSR.load(ck)
    from safetensors.torch import save_file

    save_file({"prompt_embeds": torch.zeros(1, 4, 7)}, ck / "backbone" / "empty_prompt.safetensors")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="7 wide.*expects 32"):
        IFCSR.load(ck)


def test_full_disk_mid_save_is_an_output_error_and_keeps_the_previous_checkpoint(model, saved, tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    ck = _copy(saved, tmp_path / "ck")
    before = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}
    real, calls = safetensors.torch.save_file, []

    def full_disk(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:  # the first adapter is written, the second finds the disk full
            raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) '
                                  f'at path "{args[1]}"')
        return real(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputError, match=rf"{re.escape(str(ck))}: No space left on device.*disk is full.*unchanged"):
        model.save(ck)
    assert len(calls) == 2
    monkeypatch.undo()
    assert {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    IFCSR.load(ck)


def test_other_safetensors_errors_during_a_save_are_not_disguised_as_disk_errors(model, tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    def broken(*args, **kwargs):
        raise SafetensorError("some tensors share memory")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(SafetensorError, match="share memory"):
        model.save(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


# --------------------------------------------------------------------------- trainer state


@pytest.mark.parametrize("stage, step, match", [
    (7, -3, "stage 7"), (1, -3, "step is -3"), (0, 5, "stage 0"), ("1", 2, "stage '1'"), (True, 2, "stage True"),
    (1, 10**8, "step is 100000000, not an integer in 0..10000000"),
])
def test_legacy_trainer_state_with_impossible_stage_or_step_is_refused(tmp_path, stage, step, match):
    torch.save({"stage": stage, "step": step, "optimizer": None}, tmp_path / LEGACY_STATE)
    with pytest.raises(CheckpointError, match=match):
        load_state(tmp_path)


@pytest.mark.parametrize("step, match", [("abc", "step is 'abc'"), (-5, "step is -5"), (2.5, "step is 2.5"),
                                         (None, "step is None")])
def test_trainer_state_json_with_a_bad_step_is_refused(tmp_path, step, match):
    save_state(tmp_path, {"stage": 1, "step": step})
    with pytest.raises(CheckpointError, match=match):
        load_state(tmp_path)


def test_a_resume_from_a_lying_state_stops_before_training(model, tmp_path):
    from ifcsr.train import Trainer

    (tmp_path / "checkpoint").mkdir()
    torch.save({"stage": 7, "step": -3}, tmp_path / "checkpoint" / LEGACY_STATE)
    trainer = Trainer(model, None, config=model.config, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="stage 7"):
        trainer.train(resume=True)


def test_the_state_step_bound_is_the_config_step_bound():
    from ifcsr.checkpoint import MAX_STATE_STEP
    from ifcsr.config import MAX_STEPS

    assert MAX_STATE_STEP == MAX_STEPS  # checkpoint.py imports nothing from config: the two must agree


def test_a_valid_state_still_loads(tmp_path):
    save_state(tmp_path, {"stage": 2, "step": 0, "objects": {}})
    assert load_state(tmp_path)["step"] == 0
    (tmp_path / "old").mkdir()  # an old trainer_state.pt may hold stage and step as 0-d tensors
    torch.save({"stage": torch.tensor(1), "step": torch.tensor(4)}, tmp_path / "old" / LEGACY_STATE)
    assert load_state(tmp_path / "old")["step"] == 4


# --------------------------------------------------------------------------- ifcsr infer --gamma auto:psnr, fetch-data


def test_auto_psnr_with_a_wrong_hr_size_fails_before_anything_is_written(saved, tmp_path, capsys):
    from PIL import Image

    from ifcsr.cli.app import main

    rng = np.random.default_rng(0)
    for name, size in (("a.png", 8), ("b.png", 8), ("a_hr.png", 32), ("b_hr.png", 16)):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--checkpoint", str(saved),
                 "--gamma", "auto:psnr", "--hr", str(tmp_path / "a_hr.png"), str(tmp_path / "b_hr.png"),
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "b_hr.png: 16x16" in err and "32x32" in err and "Traceback" not in err
    assert not out.exists()  # not even a.png's endpoints, whose HR was right


@pytest.mark.parametrize("text, match", [("{ not json", "not valid JSON"), ("[1, 2]", "JSON list"),
                                         ('{"test_HR/x.png": "abc"}', "not a sha256")])
def test_fetch_data_verify_with_a_broken_pin_file_is_one_clear_error(tmp_path, capsys, text, match):
    from ifcsr.cli.app import main
    from ifcsr.data.datasets import PIN_FILE

    (tmp_path / PIN_FILE).write_text(text)
    assert main(["fetch-data", "drealsr", "--verify", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert PIN_FILE in err and match in err and "Traceback" not in err and "Delete it" in err


# --------------------------------------------------------------------------- silent-wrong: adapters tied to their role and scale


def test_adapters_record_role_rank_alpha_and_placement(saved):
    from safetensors import safe_open

    for name in ("fidelity", "realism"):
        with safe_open(str(saved / f"{name}.safetensors"), framework="pt") as f:
            meta = f.metadata()
        assert meta["adapter"] == name and meta["lora_rank"] == "4" and meta["lora_alpha"] == "4.0"
        assert meta["target_modules"].split(",") == list(TrainConfig().model.target_modules)


def test_edited_alpha_and_swapped_adapters_are_refused(saved, tmp_path):
    ck = _copy(saved, tmp_path / "alpha")
    _edit_config(ck, "model", "lora_alpha", 8.0)
    with pytest.raises(CheckpointError, match="lora_alpha 4.0 \\(file\\) vs 8.0 \\(config.json\\)"):
        IFCSR.load(ck)
    ck = _copy(saved, tmp_path / "modules")
    _edit_config(ck, "model", "target_modules", ["to_q", "to_k"])
    with pytest.raises(CheckpointError, match="target_modules"):
        IFCSR.load(ck)
    ck = _copy(saved, tmp_path / "swapped")
    (ck / "fidelity.safetensors").rename(ck / "x")
    (ck / "realism.safetensors").rename(ck / "fidelity.safetensors")
    (ck / "x").rename(ck / "realism.safetensors")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="holds the 'realism' adapter, not 'fidelity'.*swapped"):
        IFCSR.load(ck)


def test_adapters_without_metadata_still_load(saved, tmp_path):
    """Checkpoints saved before the metadata existed (the bundled one among them) load as before."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from ifcsr.models import BUNDLED_CHECKPOINT

    with safe_open(str(BUNDLED_CHECKPOINT / "fidelity.safetensors"), framework="pt") as f:
        assert f.metadata() is None
    ck = _copy(saved, tmp_path / "old")
    for name in ("fidelity", "realism"):
        save_file(load_file(ck / f"{name}.safetensors"), ck / f"{name}.safetensors")
    write_manifest(ck)
    a, b = IFCSR.load(saved), IFCSR.load(ck)
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.infer(lr).realism, b.infer(lr).realism)


def test_resume_refuses_swapped_adapters(model, tmp_path):
    from ifcsr.train import Trainer

    trainer = Trainer(model, None, config=model.config, out_dir=tmp_path, progress=False)
    ck = trainer.save_checkpoint(1, 1)
    (ck / "fidelity.safetensors").rename(ck / "x")
    (ck / "realism.safetensors").rename(ck / "fidelity.safetensors")
    (ck / "x").rename(ck / "realism.safetensors")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="swapped"):
        trainer._resume(1, torch.optim.AdamW(lora_parameters(model.unet, "fidelity").values()))


@pytest.mark.parametrize("rel", [*(f for f in READ_FILES if not f.startswith("trainer_state")),
                                 "backbone/unet/config.json", "backbone/empty_prompt.safetensors"])
def test_checksums_must_list_every_file_the_loader_reads(saved, tmp_path, rel):
    ck = _copy(saved, tmp_path / "ck")
    if rel == "empty_prompt.safetensors":  # the referenced-backbone layout keeps it at the top level
        shutil.copy(ck / "backbone" / rel, ck / rel)
        write_manifest(ck)
    doc = json.loads((ck / MANIFEST).read_text())
    del doc["files"][rel]
    (ck / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=rf"{rel}: not listed in {MANIFEST}"):
        IFCSR.load(ck)


def test_a_file_added_to_the_backbone_after_saving_is_refused(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    (ck / "backbone" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not listed")
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.bin: not listed"):
        IFCSR.load(ck)


def test_fidelity_from_a_checkpoint_with_another_alpha_is_refused(tiny_backbone_dir, tmp_path):
    from ifcsr.recipes import smoke_preset, train_recipe

    cfg = smoke_preset()
    ck = IFCSR(load_backbone(tiny_backbone_dir), replace(cfg, model=replace(cfg.model, lora_alpha=8.0))).save(
        tmp_path / "ck")
    with pytest.raises(InputError, match=r"lora_alpha: 8.0 in .* vs 4.0 in this config"):
        train_recipe(cfg, tmp_path / "out", stages=(2,), fidelity_from=ck, progress=False, log=lambda *_: None)
    assert not (tmp_path / "out" / "final").exists() and not (tmp_path / "out" / "checkpoint").exists()


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("entry, match", [("../outside.txt", "leaves the folder"), ("/etc/hostname", "absolute path"),
                                          ("backbone/../../outside.txt", "leaves the folder"),
                                          ("link.txt", "link that leads out")])
def test_checksum_entries_outside_the_folder_are_refused_unread(saved, tmp_path, monkeypatch, entry, match):
    import ifcsr.checkpoint

    ck = _copy(saved, tmp_path / "ck")
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the checkpoint")
    (ck / "link.txt").symlink_to(outside)
    doc = json.loads((ck / MANIFEST).read_text())
    doc["files"][entry] = ifcsr.checkpoint.sha256_file(outside)  # even with the right sha256
    (ck / MANIFEST).write_text(json.dumps(doc))
    read = []
    real = ifcsr.checkpoint.sha256_file
    monkeypatch.setattr(ifcsr.checkpoint, "sha256_file", lambda p, *a: read.append(Path(p)) or real(p, *a))
    with pytest.raises(CheckpointError, match=match):
        IFCSR.load(ck)
    assert not read  # refused before any file was hashed


def test_a_symlinked_backbone_file_leading_out_is_refused(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    target = tmp_path / "elsewhere.json"
    shutil.copy(ck / "backbone" / "unet" / "config.json", target)
    (ck / "backbone" / "unet" / "config.json").unlink()
    (ck / "backbone" / "unet" / "config.json").symlink_to(target)
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="link that leads out"):
        IFCSR.load(ck)


# --------------------------------------------------------------------------- --fidelity-from without ifcsr.json


def test_a_checkpoint_without_ifcsr_json_uses_its_own_backbone(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ck = _copy(saved, tmp_path / "ck")
    (ck / "ifcsr.json").unlink()
    _edit_config(ck, "model", "backbone", "ifcsr/assets/tiny/backbone-of-another-machine")  # relative, absent here
    model = IFCSR.load(ck)
    assert Path(model.backbone.source) == ck / "backbone"
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.infer(lr).realism, IFCSR.load(saved).infer(lr).realism)


def test_fidelity_from_without_ifcsr_json_trains_on_the_checkpoints_backbone(tiny_backbone_dir, tmp_path,
                                                                             monkeypatch):
    from ifcsr.models import adapter_state_dict
    from ifcsr.recipes import smoke_preset, train_recipe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = smoke_preset()
    cfg = replace(cfg, stage2=replace(cfg.stage2, steps=1))
    base = IFCSR(load_backbone(tiny_backbone_dir), cfg)
    g = torch.Generator().manual_seed(2)
    for n, p in lora_parameters(base.unet, "fidelity").items():  # a fidelity adapter that is not zero
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.05
    ck = base.save(tmp_path / "ck")
    (ck / "ifcsr.json").unlink()
    _edit_config(ck, "model", "backbone", "ifcsr/assets/tiny/backbone-of-another-machine")
    model, final = train_recipe(cfg, tmp_path / "out", stages=(2,), fidelity_from=ck, progress=False,
                                log=lambda *_: None)
    want = load_backbone(tiny_backbone_dir).unet.state_dict()
    got = {k.replace(".base_layer.", "."): v for k, v in model.unet.state_dict().items() if "lora_" not in k}
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    fid = adapter_state_dict(base.unet, "fidelity")
    assert all(torch.equal(v, adapter_state_dict(model.unet, "fidelity")[k]) for k, v in fid.items())
    assert (final / MANIFEST).is_file()


def test_non_object_ifcsr_json_and_history_are_named(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    (ck / "ifcsr.json").write_text("[1]")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="ifcsr.json: expected a JSON object"):
        IFCSR.load(ck)
    ck = _copy(saved, tmp_path / "ck2")
    (ck / "history.json").write_text("7")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="history.json: expected a list"):
        IFCSR.load(ck)

