"""The ablations as checkpoints: single-stage (naive blend), k = 1, the paper's L_2nd alone in stage 2:
trained or adopted on the bundled backbone, loaded with a backbone check, or trained when missing;
their method names. Imports torch, the core (train, models, recipes, checkpoint) and ifcsr.errors.

They store only the adapters, the config and a reference to the backbone with its sha256, which
`load_ablation` checks (analysis/train_ablations.py makes them; analysis/checkpoints holds them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from ifcsr.errors import InputError, MissingFileError
from ifcsr.train import Trainer

SINGLE_STAGE = "single-stage (naive blend)"
K1 = "k=1 (MSE+LPIPS)"
PAPER_L2 = "paper's L_2nd only"
ABLATIONS = {"single_stage": SINGLE_STAGE, "k1": K1, "paper_l2": PAPER_L2}  # folder name -> method name


# ------------------------------------------------------------------------------ ablation training


class SingleStageTrainer(Trainer):
    """The paper's single-stage ablation: stage 2 trains f_phi ALONE,
    min_phi L_s(f_phi(x_L), x_H; w_inc), on its own output instead of the blend."""

    def _stage_loss(self, stage, lr, hr, gamma=None):
        if stage != 2:
            return super()._stage_loss(stage, lr, hr, gamma)
        model = self.model
        x_up = model.prepare(lr)
        real = self._color_fixed(model.branch(x_up, "realism"), x_up)  # encode without grad, UNet + decode with
        return self._loss_inc(real, hr), None


# What each ablation changes in its base's config, and nothing else (tests/test_ablations.py holds
# it): k1 the depth-weight base; paper_l2 the stage-2 terms the paper does not have (an inference
# post-process such as ModelConfig.antiring stays: it is applied to both sides of the comparison);
# single_stage no config field at all (its factor is the stage-2 objective, SingleStageTrainer).
OPTIONAL_TERMS = ("adv_weight", "texture_weight", "overshoot_weight")


def ablation_config(kind: str, cfg):
    """The config of ablation `kind` of a base config: the base with exactly the named factor changed."""
    if kind not in ABLATIONS:
        raise InputError(f"kind must be one of {list(ABLATIONS)}, got {kind!r}")
    if kind == "k1":
        return replace(cfg, loss=replace(cfg.loss, k=1.0))
    if kind == "paper_l2":  # the recipe's stage 2 minus every term the paper does not have
        return replace(cfg, loss=replace(cfg.loss, **{t: 0.0 for t in OPTIONAL_TERMS}))
    return cfg


def backbone_digest(folder) -> str:
    """sha256 over a diffusers-layout backbone's weight files (vae, unet, empty prompt)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not files:
        raise MissingFileError(f"{folder}: no backbone files")
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _backbone_ref(base: Path) -> str:
    from ifcsr.models import BUNDLED_CHECKPOINT

    if base.resolve() == BUNDLED_CHECKPOINT.resolve():
        return "tiny"  # resolved by load_backbone("tiny") to the bundled backbone, wherever installed
    return str((base / "backbone").resolve())


def _resolve_ref(ref: str) -> Path:
    from ifcsr.models import BUNDLED_CHECKPOINT

    return BUNDLED_CHECKPOINT / "backbone" if ref == "tiny" else Path(ref)


def train_ablation(kind: str, out, *, base=None, steps: int | None = None, retrain_fidelity: bool = False,
                   work_dir=None, progress: bool = True, device=None, log=print) -> Path:
    """Train an ablation checkpoint on `base`'s tiny backbone and save it (adapters only) to `out`.

    kind: "single_stage" (stage 1 as usual -- by default `base`'s own fidelity adapter, which
        IS stage 1 of the same recipe -- then the realism adapter trained alone with w_inc),
        "k1" (stages 1 and 2 of the two-stage recipe with k = 1) or "paper_l2" (`base`'s fidelity
        adapter, then stage 2 of its recipe with the paper's L_2nd alone: no texture, overshoot
        or adversarial term).
    base: the checkpoint whose backbone and training recipe are reused (default: bundled).
    steps: steps per trained stage (default: base's config). work_dir: resumable training
        folder (default: a temporary one). Returns `out`.
    """
    from ifcsr.config import TrainConfig
    from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR, load_adapter_state_dict, load_backbone
    from ifcsr.recipes import make_dataset, stage_degradation

    if kind not in ABLATIONS:
        raise InputError(f"kind must be one of {list(ABLATIONS)}, got {kind!r}")
    base = Path(base) if base is not None else BUNDLED_CHECKPOINT
    if not (base / "config.json").is_file() or not (base / "backbone" / "unet").is_dir():
        raise MissingFileError(f"{base}: needs config.json and an embedded tiny backbone/ "
                                "(the bundled checkpoint, or `ifcsr train --preset tiny` output)")
    cfg = ablation_config(kind, TrainConfig.load(base / "config.json"))
    if steps is not None:
        cfg = replace(cfg, stage1=replace(cfg.stage1, steps=steps), stage2=replace(cfg.stage2, steps=steps))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = IFCSR.from_backbone(load_backbone(base / "backbone", device=device), cfg, device=device)
    stages = (1, 2)
    if kind in ("single_stage", "paper_l2") and not retrain_fidelity:
        from safetensors.torch import load_file

        load_adapter_state_dict(model.unet, "fidelity", load_file(base / "fidelity.safetensors"))
        stages = (2,)
    import tempfile

    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"ifcsr-{kind}-"))
    trainer_cls = SingleStageTrainer if kind == "single_stage" else Trainer
    trainer = trainer_cls(model, None, config=model.config, out_dir=work, progress=progress, device=device)
    timings = {}
    done = trainer._completed_stage()
    for s in stages:
        sc = cfg.stage1 if s == 1 else cfg.stage2
        if done > s:
            log(f"{kind} stage {s}: already complete in {work}")
            continue
        # each stage on its own data and degradation, exactly as the base recipe trained it
        # (ifcsr.recipes._train_recipe): otherwise the ablation would differ in its data too
        trainer.data = make_dataset(cfg, sc.crop_size, seed=sc.seed, degradation=stage_degradation(cfg, sc),
                                    data=sc.data)
        t0 = time.perf_counter()
        trainer.train_stage(s, resume=True)
        timings[f"stage{s}_s"] = time.perf_counter() - t0
        log(f"{kind} stage {s}: {sc.steps} steps in {timings[f'stage{s}_s']:.0f} s")
    if done > max(stages):  # everything was already trained: take the weights from the work folder
        from safetensors.torch import load_file

        for name in ("fidelity", "realism"):
            load_adapter_state_dict(model.unet, name, load_file(trainer.checkpoint_dir / f"{name}.safetensors"))
    ref = _backbone_ref(base)
    digest = backbone_digest(_resolve_ref(ref))
    out = Path(out)
    final_cfg = replace(model.config, model=replace(model.config.model, backbone=ref))
    model.config = final_cfg
    extra = {"ablation": kind, "method": ABLATIONS[kind], "base_checkpoint": str(base),
             "fidelity": "copied from base (stage 1 of the same recipe)" if 1 not in stages else "trained",
             "timings": timings, "backbone_sha256": digest}
    model.save(out, history=trainer.history, extra=extra)
    # keep adapters + config + a reference to the backbone; the tiny backbone is not copied
    shutil.rmtree(out / "backbone", ignore_errors=True)
    meta = json.loads((out / "ifcsr.json").read_text())
    meta["backbone"] = ref
    (out / "ifcsr.json").write_text(json.dumps(meta, indent=2))
    from ifcsr.checkpoint import write_manifest

    write_manifest(out)  # the files changed after save: record their sha256 again
    if work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return out


def adopt_ablation(kind: str, source, out, *, base=None) -> Path:
    """Keep another checkpoint's adapters as an ablation checkpoint on `base`'s backbone (no training).

    For a checkpoint trained on the very backbone that `base` holds -- e.g. the bundle before
    the texture term, as "paper_l2" -- its adapter files and config are copied to `out` with a
    reference to `base`'s backbone and its sha256, as `train_ablation` saves them. Refuses a
    source whose backbone differs from `base`'s: its adapters would mean nothing there.
    """
    from ifcsr.models import ADAPTERS, BUNDLED_CHECKPOINT

    if kind not in ABLATIONS:
        raise ValueError(f"kind must be one of {list(ABLATIONS)}, got {kind!r}")
    source, base = Path(source), Path(base) if base is not None else BUNDLED_CHECKPOINT
    missing = [f for f in ("config.json", *(f"{a}.safetensors" for a in ADAPTERS)) if not (source / f).is_file()]
    if missing or not (source / "backbone").is_dir():
        raise FileNotFoundError(f"{source}: not a checkpoint with an embedded backbone (missing "
                                f"{', '.join(missing) or 'backbone/'})")
    digest, theirs = backbone_digest(base / "backbone"), backbone_digest(source / "backbone")
    if digest != theirs:
        raise ValueError(f"{source} was trained on another backbone than {base} holds "
                         f"(sha256 {theirs[:12]} vs {digest[:12]}); train the ablation instead")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for a in ADAPTERS:
        shutil.copyfile(source / f"{a}.safetensors", tmp / f"{a}.safetensors")
    ref = _backbone_ref(base)
    cfg = json.loads((source / "config.json").read_text())
    cfg["model"]["backbone"] = ref
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    meta = json.loads((source / "ifcsr.json").read_text()) if (source / "ifcsr.json").is_file() else {}
    meta.update({"backbone": ref, "ablation": kind, "method": ABLATIONS[kind], "base_checkpoint": str(base),
                 "adopted_from": str(source), "fidelity": "copied from the source checkpoint",
                 "backbone_sha256": digest})
    (tmp / "ifcsr.json").write_text(json.dumps(meta, indent=2))
    from ifcsr.checkpoint import write_manifest

    write_manifest(tmp)  # checksums.json, which IFCSR.load verifies
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def load_ablation(path, *, device="cpu"):
    """IFCSR.load for an ablation checkpoint, after checking its backbone is the one it was
    trained on (ifcsr.json's backbone_sha256)."""
    from ifcsr.models import IFCSR

    path = Path(path)
    if not (path / "config.json").is_file():
        raise MissingFileError(f"{path}: no ablation checkpoint here (train it with analysis/train_ablations.py)")
    meta = json.loads((path / "ifcsr.json").read_text()) if (path / "ifcsr.json").is_file() else {}
    want = meta.get("backbone_sha256")
    if want:
        ref = meta.get("backbone", "tiny")
        folder = path / ref if (path / ref).is_dir() else _resolve_ref(ref)
        if not folder.is_dir():
            raise MissingFileError(f"{path}: its backbone {ref!r} ({folder}) is missing")
        have = backbone_digest(folder)
        if have != want:
            raise InputError(f"{path} was trained on another backbone than {folder} holds now "
                             f"(sha256 {want[:12]} vs {have[:12]}); retrain it with analysis/train_ablations.py")
    return IFCSR.load(path, device=device)


def ablations_dir() -> Path:
    """Where the ablation checkpoints are: $IFCSR_ABLATIONS, else analysis/checkpoints of the
    source checkout (made by analysis/train_ablations.py)."""
    return Path(os.environ.get("IFCSR_ABLATIONS") or Path(__file__).resolve().parents[2] / "analysis" / "checkpoints")


def ablation_or_train(kind: str, *, folder=None, work="runs/ablations", base=None, steps: int | None = None,
                      train: bool = True, progress: bool = True, log=print, device="cpu"):
    """The ablation checkpoint `kind` from `folder` (default `ablations_dir()`), loaded. Where it is
    missing or was trained on another backbone, the reason is logged and, with `train`, it is
    trained into `work`/`kind` (`steps` per stage; None: the recipe's) and loaded; without, None."""
    try:
        return load_ablation(Path(folder or ablations_dir()) / kind, device=device)
    except (FileNotFoundError, ValueError) as err:  # missing, or trained on another backbone
        log(f"{kind}: {err}" + ("; training it now" if train else ""))
        if not train:
            return None
        return load_ablation(train_ablation(kind, Path(work) / kind, base=base, steps=steps, progress=progress),
                             device=device)
