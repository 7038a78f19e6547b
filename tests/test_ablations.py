"""Ablations isolate one factor (issue 28, item 2): their config differs from the base's in exactly
the named field(s), and they train each stage on the base recipe's own data and degradation."""

from __future__ import annotations

import pytest

from ifcsr.config import config_diff
from ifcsr.evaluation import ablations
from ifcsr.evaluation.ablations import OPTIONAL_TERMS, ablation_config
from ifcsr.recipes import realesrgan_preset, tiny_preset

ALLOWED = {"k1": {"loss.k"}, "paper_l2": {f"loss.{t}" for t in OPTIONAL_TERMS}, "single_stage": set()}


def changed(a, b) -> set[str]:
    return {line.split(":")[0] for line in config_diff(a.to_dict(), b.to_dict(), ignore=())}


@pytest.mark.parametrize("preset", [tiny_preset, realesrgan_preset])
@pytest.mark.parametrize("kind", sorted(ALLOWED))
def test_an_ablation_changes_only_its_factor(kind, preset):
    base = preset()
    diff = changed(base, ablation_config(kind, base))
    assert diff <= ALLOWED[kind], f"{kind} also changes {sorted(diff - ALLOWED[kind])}"
    if kind == "k1":
        assert diff == {"loss.k"}
    if kind == "paper_l2" and base.loss.texture_weight:  # the tiny bundle's recipe has extra terms
        assert {"loss.texture_weight", "loss.overshoot_weight"} <= diff
    assert ablation_config(kind, base).model == base.model  # the inference post-process stays on both sides


def test_train_ablation_uses_each_stages_own_data_and_degradation(tmp_path, monkeypatch):
    # The bug this catches: stages were rebuilt from the run-level data and degradation only, so
    # the bundle's paper_l2 trained on a 4096-item SampleDataset with mixed:0.8 instead of the
    # seven package photos with mixed:0.4.
    import ifcsr.recipes as recipes
    from ifcsr.train import Trainer

    calls = []
    real_make = recipes.make_dataset

    def spy(cfg, crop, *, seed=0, degradation=None, data=None):
        calls.append((data, getattr(degradation, "p_bicubic", degradation)))
        return real_make(cfg, crop, seed=seed, degradation=degradation, data=data)

    monkeypatch.setattr(recipes, "make_dataset", spy)
    monkeypatch.setattr(Trainer, "train_stage", lambda self, s, resume=False: [])  # the data is what we check
    monkeypatch.setattr(Trainer, "_completed_stage", lambda self: 0)
    ablations.train_ablation("k1", tmp_path / "k1", work_dir=tmp_path / "work", progress=False, log=lambda *a: None)
    base = tiny_preset()
    assert calls[0] == (base.stage1.data, None)  # stage 1: the run's own data and degradation
    assert calls[1] == (base.stage2.data, 0.4)  # stage 2: package photos, mixed:0.4


def test_every_recipe_names_its_tuning_images_and_they_are_not_its_held_out_ones():
    from ifcsr.errors import ConfigError
    from ifcsr.recipes import SPLITS, check_split

    for preset in ("tiny", "realesrgan"):
        split = check_split(preset)
        assert split["tuned_on"]
    assert "chelsea" in SPLITS["tiny"]["tuned_on"]  # issue 13 chose the tiny recipe on it
    bad = {"x": {"tuned_on": ("chelsea", "realsr:Canon_001"), "held_out": ("realsr:*",)}}
    with pytest.raises(ConfigError, match="Canon_001"):
        check_split("x", bad)
    with pytest.raises(ConfigError, match="chelsea"):
        check_split("x", {"x": {"tuned_on": ("chelsea",), "held_out": ("chelsea", "coffee")}})
    with pytest.raises(ConfigError, match="no validation split"):
        check_split("nameless")
