"""The optional adversarial realism term of stage 2 (ifcsr/adversarial.py, LossConfig.adv_*)."""

from dataclasses import replace

import pytest
import torch

from ifcsr.adversarial import (
    ProjectedDiscriminator,
    d_hinge_loss,
    diff_augment,
    g_hinge_loss,
    r1_penalty,
)
from ifcsr.config import LossConfig, TrainConfig
from ifcsr.models import lora_parameters
from ifcsr.train import Trainer, quick_config
from ifcsr.weights.hed import _freeze, _vgg16_features
from tests.test_core import FixedData, make_model


@pytest.fixture(scope="module")
def feature_net():
    from ifcsr.losses import build_feature_net

    return build_feature_net("vgg-random", seed=0)


def _disc(seed=0, **kw):
    torch.manual_seed(0)
    trunk = _freeze(_vgg16_features())  # one random trunk for every seed: only the heads differ
    torch.manual_seed(seed)
    return ProjectedDiscriminator(trunk=trunk, **kw)


def test_off_by_default_and_validated():
    assert LossConfig().adv_weight == 0.0  # the paper has no GAN loss
    for bad in (dict(adv_weight=-1), dict(adv_taps=("relu9",)), dict(adv_taps=()), dict(adv_augment=("flip",)),
                dict(adv_d_steps=0), dict(adv_lr=0)):
        with pytest.raises(ValueError, match="adv_"):
            LossConfig(**bad)
    cfg = TrainConfig(loss=LossConfig(adv_weight=0.1, adv_taps=["relu3_3"], adv_betas=[0.5, 0.9]))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # lists from JSON come back as tuples


def test_discriminator_gradients_reach_image_and_heads_not_trunk():
    d = _disc(taps=("relu2_2", "relu3_3"), channels=8)
    real = torch.rand(2, 3, 32, 32)
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    logits = d(diff_augment(fake, ("color", "translation", "cutout"), g))
    assert [tuple(x.shape) for x in logits] == [(2, 1, 16, 16), (2, 1, 8, 8)]
    g_hinge_loss(logits).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # G's gradient flows through D and DiffAugment
    assert all(p.grad is None for p in d.trunk.parameters())
    d_hinge_loss(d(real), d(fake.detach())).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.heads.parameters())
    assert r1_penalty(d, real).item() > 0


def test_heads_state_roundtrip_and_mismatch_errors():
    a, b = _disc(0, channels=8), _disc(1, channels=8)
    x = torch.rand(1, 3, 32, 32)
    a.eval(), b.eval()  # spectral norm's power iteration only runs in training mode
    assert not torch.equal(a(x)[0], b(x)[0])
    b.load_heads_state_dict(a.heads_state_dict())
    assert all(torch.equal(p, q) for p, q in zip(a(x), b(x)))
    with pytest.raises(ValueError, match="does not match"):
        _disc(0, channels=4).load_heads_state_dict(a.heads_state_dict())


def _adv_cfg(model, steps, **loss_kw):
    base = quick_config(steps=steps, crop_size=32, batch_size=2, feature_net="vgg-random")
    st = replace(base.stage1, checkpoint_every=2)
    loss = replace(base.loss, adv_weight=0.5, adv_channels=8, adv_taps=("relu2_2", "relu3_3"), **loss_kw)
    return replace(base, model=model.mcfg, stage1=st, stage2=st, loss=loss)


def test_stage1_is_adversarial_free(tiny_backbone_dir, feature_net):
    """Stage 1 with adv_weight > 0 trains exactly as with the term off (and builds no D)."""
    states = []
    for w in (0.0, 0.5):
        model = make_model(tiny_backbone_dir)
        cfg = _adv_cfg(model, 2)
        cfg = replace(cfg, loss=replace(cfg.loss, adv_weight=w))
        tr = Trainer(model, FixedData(), config=cfg, feature_net=feature_net, progress=False)
        tr.train_stage(1)
        assert tr._disc is None and not any("d_loss" in r for r in tr.history)
        states.append({k: v.clone() for k, v in lora_parameters(model.unet, "fidelity").items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_stage2_adversarial_term_changes_realism_and_trains_d(tiny_backbone_dir, feature_net):
    out = {}
    for w in (0.0, 0.5):
        model = make_model(tiny_backbone_dir)
        cfg = _adv_cfg(model, 2)
        cfg = replace(cfg, loss=replace(cfg.loss, adv_weight=w))
        tr = Trainer(model, FixedData(), config=cfg, feature_net=feature_net, progress=False)
        tr.train_stage(2)
        out[w] = ({k: v.clone() for k, v in lora_parameters(model.unet, "realism").items()}, tr)
    real0, _ = out[0.0]
    real1, tr = out[0.5]
    assert any(not torch.equal(real0[k], real1[k]) for k in real0)  # the term reaches the realism LoRA
    rows = [r for r in tr.history if r["stage"] == 2]
    assert all({"d_loss", "adv_g", "d_real", "d_fake", "stage_loss"} <= set(r) for r in rows)
    # The discriminator trained: its heads moved away from their seeded initialisation.
    fresh = Trainer(make_model(tiny_backbone_dir), FixedData(), config=tr.config, feature_net=feature_net,
                    progress=False)
    fresh._build_discriminator()
    trained, init = tr._disc.heads_state_dict(), fresh._disc.heads_state_dict()
    assert any(not torch.equal(trained[k], init[k]) for k in trained if "original" in k)


def test_stage2_resume_restores_discriminator_exactly(tiny_backbone_dir, feature_net, tmp_path):
    """4 steps straight == 2 steps, a checkpoint (safetensors + JSON, no pickle), and a resumed 2."""
    from ifcsr.checkpoint import load_state
    from ifcsr.errors import CheckpointError, ConfigError

    def trainer(out_dir=None, **loss_kw):
        model = make_model(tiny_backbone_dir)
        cfg = _adv_cfg(model, 4, adv_r1=0.1)
        cfg = replace(cfg, loss=replace(cfg.loss, **loss_kw))
        return Trainer(model, FixedData(), config=cfg, feature_net=feature_net, progress=False, out_dir=out_dir)

    full = trainer()
    full.train_stage(2)
    part = trainer(tmp_path)
    part.train_stage(2, steps=2)
    saved = load_state(tmp_path / "checkpoint")["objects"]
    assert {"discriminator", "discriminator_optimizer"} <= set(saved)
    assert not any("trunk" in k for k in saved["discriminator"])  # the frozen trunk is not saved
    resumed = trainer(tmp_path)
    resumed.train_stage(2, resume=True)
    ref = [r["d_loss"] for r in full.history]
    got = [r["d_loss"] for r in resumed.history]
    # Same ops in the same order on one thread: equal up to float round-off.
    assert got == pytest.approx(ref, rel=1e-4)
    a, b = full._disc.heads_state_dict(), resumed._disc.heads_state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # A stage-2 checkpoint written without the term cannot be resumed with it: a clear error
    # (the config check names adv_weight; a state without the discriminator would name it).
    off = tmp_path / "off"
    trainer(off, adv_weight=0.0).train_stage(2, steps=2)
    with pytest.raises((ConfigError, CheckpointError), match="adv_weight|discriminator"):
        trainer(off).train_stage(2, resume=True)


def test_presets_leave_the_adversarial_term_off():
    """Off in every preset: the paper has no GAN loss, and for the tiny preset no setting tried met
    issue 13's criteria (docs/bundled-checkpoint.md, "An adversarial realism term")."""
    from ifcsr.recipes import PRESETS

    assert PRESETS and all(make().loss.adv_weight == 0.0 for make in PRESETS.values())
