"""The real SD 2.1 layout (issue 28, section 5): which backbone is "tiny" (by configuration, not
size), a referenced backbone's checkpoint (no embedded backbone, the empty-prompt embedding at the
top level) trained, saved and loaded offline without a text encoder, and the UNet's prediction
type (epsilon, v, sample) read from the scheduler."""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ifcsr.config import LossConfig, ModelConfig, StageConfig, TrainConfig
from ifcsr.errors import CheckpointError, InputError
from ifcsr.models import (
    IFCSR,
    PROMPT_FILE,
    Backbone,
    BackboneNotFoundError,
    build_tiny_backbone,
    is_tiny_backbone,
    load_backbone,
    lora_parameters,
    make_scheduler,
)
from ifcsr.tiling import TileConfig, estimate_cost
from ifcsr.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from sdshape import build_sd_shaped_backbone  # noqa: E402


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=2, hr=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.hr = torch.rand(n, 3, hr, hr, generator=g)
        self.lr = torch.nn.functional.interpolate(self.hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)

    def __len__(self):
        return len(self.hr)

    def __getitem__(self, i):
        return {"hr": self.hr[i], "lr": self.lr[i]}


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    """The SD 2.1-base-shaped backbone (5.7 M parameters, below the old 20 M "tiny" threshold)."""
    return build_sd_shaped_backbone(tmp_path_factory.mktemp("sdlayout") / "sd")


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1, also in huggingface_hub's constants (read once at import)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True, raising=False)


# --------------------------------------------------------------------------- tiny or referenced


def test_the_kind_of_backbone_comes_from_its_configuration_not_its_size(sd_dir, tiny_backbone_dir):
    sd = load_backbone(sd_dir)
    assert sum(p.numel() for p in sd.unet.parameters()) < 20_000_000  # small, yet not the tiny backbone
    assert not sd.is_tiny and not is_tiny_backbone(sd_dir)
    assert not is_tiny_backbone("stabilityai/stable-diffusion-2-1-base")
    # the tiny backbone: built (stage 0), saved by stage 0, or the bundled one
    assert build_tiny_backbone().is_tiny and load_backbone(tiny_backbone_dir).is_tiny and load_backbone("tiny").is_tiny
    assert is_tiny_backbone("tiny") and is_tiny_backbone(tiny_backbone_dir)
    # a tiny-config UNet however it is named (e.g. a stage-0 folder reached through a link or copy)
    bb = build_tiny_backbone()
    assert Backbone(bb.vae, bb.unet, bb.scheduler, bb.prompt_embeds, source="/somewhere/else").is_tiny
    # what follows from the kind: SD tile defaults, no tiny CPU time estimate, the description
    model = IFCSR(sd, TrainConfig())
    assert TileConfig.for_model(model) == TileConfig()
    assert TileConfig.for_model(IFCSR(build_tiny_backbone())).latent_tile == 192
    assert estimate_cost(model, (16, 16), device="cpu")["seconds"] is None
    assert model.describe().startswith(f"diffusion backbone {sd_dir}")


# --------------------------------------------------------------------------- the referenced layout


def test_referenced_backbone_trains_saves_and_loads_offline_without_a_text_encoder(tmp_path, monkeypatch, offline):
    # A copy of SD-shaped backbone, passed by a RELATIVE path: the checkpoint must reference it absolutely.
    shutil.copytree(build_sd_shaped_backbone(tmp_path / "build"), tmp_path / "sd")
    monkeypatch.chdir(tmp_path)
    bb = load_backbone("sd")  # text encoder -> empty-prompt embedding, cached as sd/empty_prompt.safetensors
    assert bb.prompt_embeds.shape == (1, 77, 1024) and (tmp_path / "sd" / PROMPT_FILE).is_file()
    model = IFCSR.from_backbone(bb, TrainConfig())
    st = StageConfig(steps=1, lr=1e-3, batch_size=2, crop_size=64)
    cfg = replace(TrainConfig(), model=model.mcfg, stage1=st, stage2=replace(st, seed=1), loss=LossConfig(layers=(0,)))
    Trainer(model, Pairs(), config=cfg, progress=False, out_dir=tmp_path / "run", device="cpu").train(stages=(1, 2))
    assert {r["stage"] for r in model.history} == {1, 2}
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = model.infer(lr)
    model.save(tmp_path / "ck")

    for ck in (tmp_path / "ck", tmp_path / "run" / "checkpoint"):  # IFCSR.save, and the trainer's own save
        assert not (ck / "backbone").exists()  # referenced, not embedded
        meta = json.loads((ck / "ifcsr.json").read_text())
        assert meta["backbone"] == str((tmp_path / "sd").resolve())
        from safetensors.torch import load_file

        assert torch.equal(load_file(ck / PROMPT_FILE)["prompt_embeds"], bb.prompt_embeds)

    # Take away every other source of the prompt: the text encoder, tokenizer and the backbone's cache.
    for name in ("text_encoder", "tokenizer"):
        shutil.rmtree(tmp_path / "sd" / name)
    (tmp_path / "sd" / PROMPT_FILE).unlink()
    with pytest.raises(BackboneNotFoundError, match="no empty-prompt embedding") as err:
        load_backbone("sd")  # the backbone alone cannot give a prompt any more, and says so
    assert "text_encoder/" in str(err.value) and PROMPT_FILE in str(err.value)

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the reference is absolute: any working directory
    loaded = IFCSR.load(tmp_path / "ck")
    assert not loaded.backbone.is_tiny and torch.equal(loaded.prompt_embeds, bb.prompt_embeds)
    after = loaded.infer(lr)
    # The same float32 weights (safetensors stores them exactly) and the same operations, on the same
    # machine and thread count: equal up to float32 round-off of a differently laid out module
    # (peft's adapter loading), far below the training step's change of the output (checked > 1e-4
    # below) and below one 8-bit level (4e-3). Measured: 0.
    for a, b in ((before.fidelity, after.fidelity), (before.realism, after.realism)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    fresh = IFCSR(load_backbone(tmp_path / "sd", prompt_embeds=tmp_path / "ck" / PROMPT_FILE), TrainConfig())
    assert (fresh.infer(lr).realism - after.realism).abs().max() > 1e-4  # the adapters made the difference
    # the trainer's checkpoint loads the same way (stage 2's last step: the same adapters)
    again = IFCSR.load(tmp_path / "run" / "checkpoint")
    for name in ("fidelity", "realism"):
        for k, v in lora_parameters(loaded.unet, name).items():
            assert torch.equal(lora_parameters(again.unet, name)[k], v)


def test_load_backbone_takes_the_prompt_instead_of_computing_it(sd_dir, tmp_path, tiny_backbone_dir):
    shutil.copytree(sd_dir, tmp_path / "sd", ignore=shutil.ignore_patterns("text_encoder", "tokenizer", PROMPT_FILE))
    prompt = torch.randn(1, 77, 1024)
    assert torch.equal(load_backbone(tmp_path / "sd", prompt_embeds=prompt).prompt_embeds, prompt)
    with pytest.raises(CheckpointError, match="cross-attention expects 1024"):
        load_backbone(tmp_path / "sd", prompt_embeds=torch.randn(1, 4, 32))
    with pytest.raises(InputError, match=r"shape \(1, S, D\)"):
        load_backbone(tmp_path / "sd", prompt_embeds=torch.randn(77, 1024))
    # the tiny backbone's own prompt file, given as a path, is read and checked the same way
    with pytest.raises(CheckpointError, match="cross-attention expects 1024"):
        load_backbone(tmp_path / "sd", prompt_embeds=tiny_backbone_dir / PROMPT_FILE)


# --------------------------------------------------------------------------- prediction type


def _backbone(prediction_type):
    bb = build_tiny_backbone(seed=0)
    torch.manual_seed(1)
    torch.nn.init.normal_(bb.unet.conv_out.weight, std=0.02)  # so the UNet's output is not 0
    bb.scheduler = make_scheduler(dict(bb.scheduler.config, prediction_type=prediction_type))
    return bb


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_x0_formulation_converts_every_prediction_type_as_the_ddpm_step_does(prediction_type):
    """OSEDiff's one step from t = 999 for eps, v (SD 2.1-768) and sample predictions alike:
    z_H is DDPMScheduler.step's pred_original_sample for the UNet's output."""
    model = IFCSR(_backbone(prediction_type), ModelConfig(formulation="x0", timestep=999))
    assert model.prediction_type == prediction_type
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.denoise(z, "fidelity")
        pred = model.unet(z, torch.tensor([999]), encoder_hidden_states=model.prompt_embeds).sample
        step = model.scheduler.step(pred, 999, z).pred_original_sample
    torch.testing.assert_close(out, step, atol=1e-4, rtol=1e-4)  # as test_core's epsilon case
    a = model.scheduler.alphas_cumprod[999]
    if prediction_type == "v_prediction":  # x0 = sqrt(a) z - sqrt(1 - a) v: mostly -v at t = 999 (a ~ 5e-3)
        torch.testing.assert_close(out, a.sqrt() * z - (1 - a).sqrt() * pred)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_residual_formulation_refuses_a_backbone_that_does_not_predict_noise(prediction_type, tiny_backbone_dir,
                                                                              tmp_path):
    with pytest.raises(InputError, match=f"predicts '{prediction_type}'.*formulation='x0'"):
        IFCSR(_backbone(prediction_type), ModelConfig(formulation="residual"))
    # read from the folder's scheduler config, as SD 2.1-768's scheduler_config.json says "v_prediction"
    shutil.copytree(tiny_backbone_dir, tmp_path / "bb")
    f = tmp_path / "bb" / "scheduler" / "scheduler_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "prediction_type": prediction_type}))
    with pytest.raises(InputError, match="residual formulation"):
        IFCSR.from_backbone(tmp_path / "bb", TrainConfig())
    assert IFCSR.from_backbone(tmp_path / "bb", ModelConfig(formulation="x0", timestep=999)).prediction_type == \
        prediction_type


def test_an_unknown_prediction_type_is_refused():
    bb = _backbone("epsilon")
    bb.scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(InputError, match="unknown prediction_type 'flow'"):
        IFCSR(bb, ModelConfig(formulation="x0", timestep=999))
