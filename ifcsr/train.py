"""Trainer: stage 0 (tiny backbone), stage 1 (fidelity), stage 2 (realism on the blend).

    Stage 1:  min_theta  L_s(f_theta(x_L), x_H; w_dec)
    Stage 2:  min_phi    E_{gamma ~ U(0,1)} L_s((1 - gamma) f_theta(x_L) + gamma f_phi(x_L), x_H; w_inc)
              with theta frozen and gamma drawn per sample.

Built on `accelerate`: the same code runs on one CPU, one GPU or several (`accelerate launch`).
History is a list of dicts (`pandas.DataFrame(trainer.history)`). Checkpoints are written
atomically (temporary folder, then rename) and `resume=True` continues from the last one.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import tiling
from .checkpoint import (
    LEGACY_STATE,
    MANIFEST,
    RunLock,
    has_state,
    load_state,
    recover_folder,
    save_state,
    verify_manifest,
)
from .config import Stage0Config, StageConfig, TrainConfig, config_diff
from .errors import CheckpointError, ConfigError, InputError, NonFiniteError
from .losses import build_feature_net, build_loss
from .models import ADAPTERS, IFCSR, Backbone, build_tiny_backbone, lora_parameters


def _tqdm(*args, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)


def _batch(data, idx, device):
    """Collate dataset items {"hr", "lr"} at the given indices."""
    items = [data[int(i)] for i in idx]
    hr = torch.stack([it["hr"] for it in items]).to(device)
    lr = torch.stack([it["lr"] for it in items]).to(device)
    return lr, hr


def _draw_indices(n: int, batch: int, seed: int, step: int):
    # Indices and gammas depend only on (seed, step): a resumed run sees the same batches.
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch,), generator=g), g


def _color_augment(hr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random RGB channel order and per-channel gain, per sample: four photos hold few colours,
    and a VAE trained on them alone shifted held-out colours by up to 0.03 (measured)."""
    B = hr.shape[0]
    perm = torch.stack([torch.randperm(3, generator=g) for _ in range(B)]).to(hr.device)
    gain = (0.75 + 0.35 * torch.rand(B, 3, 1, 1, generator=g)).to(hr.device)
    out = torch.gather(hr, 1, perm[:, :, None, None].expand_as(hr))
    return (out * gain).clamp(0, 1)


def check_finite_everywhere(value: torch.Tensor, what: str, accelerator=None) -> None:
    """Raise NonFiniteError on EVERY process when `value` is NaN/inf on ANY of them.

    Each process contributes a 0/1 flag and the flags are summed across processes, so a NaN on
    one rank stops all ranks at the same step (instead of one rank dying and the others hanging
    in the next gradient all-reduce). One process: a local check, no communication."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(value).all()) else 1.0], device=value.device)
    if accelerator is not None and getattr(accelerator, "num_processes", 1) > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        here = "" if bool(torch.isfinite(value).all()) else f" here ({value.detach().float().flatten()[0].item()})"
        raise NonFiniteError(f"{what} is NaN or infinite on {int(bad.item())} process(es){here}; stopping every "
                             "process. Lower the learning rate or check the data; resume from the last checkpoint")


class Trainer:
    """Two-stage IFCSR training (plus stage 0 for the tiny backbone).

    >>> trainer = Trainer(model, data, config=cfg, out_dir="runs/x")
    >>> trainer.train(stages=(1, 2))
    >>> pandas.DataFrame(trainer.history)

    data: a map-style dataset whose items are dicts with "hr" (3, H, W) and "lr" (3, H/s, W/s)
    float tensors in [0, 1] (`ifcsr.data.ImageFolder`, `SampleDataset`).
    """

    def __init__(self, model: IFCSR | None, data, *, config: TrainConfig | None = None, out_dir=None,
                 device: str | torch.device | None = None, feature_net: torch.nn.Module | None = None,
                 progress: bool = True, accelerator=None):
        from accelerate import Accelerator

        self.config = config or (model.config if model is not None else TrainConfig())
        self.data = data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if device is not None:
            from .models import check_device

            device = check_device(device)
        cpu = device is not None and torch.device(device).type == "cpu"
        self.accelerator = accelerator or Accelerator(cpu=cpu or not torch.cuda.is_available())
        self.device = self.accelerator.device
        self.model = model.to(self.device) if model is not None else None
        if self.model is not None:
            self.model.config = self.config
        self.progress = progress and self.accelerator.is_local_main_process
        self._feature_net = feature_net
        self.history: list[dict] = list(model.history) if model is not None else []
        # Named objects with state_dict()/load_state_dict() saved in every checkpoint and restored
        # on resume next to the stage's optimizer (e.g. "discriminator", "discriminator_optimizer").
        self.extra_state: dict[str, object] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def feature_net(self):
        if self._feature_net is None:
            self._feature_net = build_feature_net(self.config.loss.feature_net, seed=self.config.loss.random_seed)
        return self._feature_net.to(self.device)

    def _stage_cfg(self, stage: int) -> StageConfig:
        return {1: self.config.stage1, 2: self.config.stage2}[stage]

    def _log(self, **row):
        self.history.append(row)
        if self.model is not None:
            self.model.history = self.history

    # ------------------------------------------------------------------ stage 0
    def train_stage0(self, *, save_to=None) -> Backbone:
        """Pretrain the tiny backbone on `data`'s HR crops: the VAE (L1 + MSE + tiny KL), then
        the UNet as an epsilon-prediction denoiser on its latents. Saved in diffusers layout."""
        from .models import save_backbone

        c0: Stage0Config = self.config.stage0
        bb = build_tiny_backbone(seed=c0.seed)
        vae, unet = bb.vae.to(self.device).train(), bb.unet.to(self.device)
        vae.requires_grad_(True)
        opt = torch.optim.AdamW(vae.parameters(), lr=c0.vae_lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, c0.vae_steps), eta_min=0.05 * c0.vae_lr)
        bar = _tqdm(range(c0.vae_steps), desc="stage 0: VAE", disable=not self.progress)
        for step in bar:
            t0 = time.perf_counter()
            idx, g = _draw_indices(len(self.data), c0.batch_size, c0.seed, step)
            _, hr = _batch(self.data, idx, self.device)
            if c0.color_augment:
                hr = _color_augment(hr, g)
            post = vae.encode(hr * 2 - 1).latent_dist
            # Decode the posterior mean: IFCSR only ever uses the mode (models.encode), and
            # sampling noise in training made the decoder blur (measured: 29 vs 34+ dB).
            rec = (vae.decode(post.mode()).sample + 1) / 2
            rec_loss = F.l1_loss(rec, hr) + F.mse_loss(rec, hr)
            kl = post.kl().mean() / hr[0].numel()
            loss = rec_loss + c0.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), c0.grad_clip)
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            self._log(step=step, stage=0, part="vae", loss=loss.item(), lr=sched.get_last_lr()[0],
                      psnr=-10 * math.log10(max(F.mse_loss(rec.clamp(0, 1), hr).item(), 1e-12)),
                      seconds=time.perf_counter() - t0)
        vae.eval().requires_grad_(False)
        # Latent scale: unit variance latents, as SD's 0.18215 does for its VAE.
        with torch.no_grad():
            idx, _ = _draw_indices(len(self.data), max(c0.batch_size, 16), c0.seed, 10**6)
            _, hr = _batch(self.data, idx, self.device)
            std = vae.encode(hr * 2 - 1).latent_dist.mode().std().item()
        vae.register_to_config(scaling_factor=1.0 / std)

        unet.train().requires_grad_(True)
        sched = bb.scheduler
        opt = torch.optim.AdamW(unet.parameters(), lr=c0.unet_lr)
        emb = bb.prompt_embeds.to(self.device)
        bar = _tqdm(range(c0.unet_steps), desc="stage 0: UNet", disable=not self.progress)
        for step in bar:
            t0 = time.perf_counter()
            idx, g = _draw_indices(len(self.data), c0.batch_size, c0.seed + 1, step)
            _, hr = _batch(self.data, idx, self.device)
            with torch.no_grad():
                z = vae.encode(hr * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
            noise = torch.randn(z.shape, generator=g).to(self.device)
            t = torch.randint(0, sched.config.num_train_timesteps, (z.shape[0],), generator=g).to(self.device)
            pred = unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=emb.expand(z.shape[0], -1, -1)).sample
            loss = F.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), c0.grad_clip)
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            self._log(step=step, stage=0, part="unet", loss=loss.item(), lr=c0.unet_lr,
                      seconds=time.perf_counter() - t0)
        unet.eval().requires_grad_(False)
        if c0.zero_out_conv:
            # The denoiser's eps prediction at t = 1 has unit scale, so z_L - UNet(z_L, 1) would
            # start far from z_L. With conv_out at zero the residual model starts exactly at
            # VAE(bicubic) (DESIGN 6) and the pretrained features stay; LoRA on conv_out opens it.
            torch.nn.init.zeros_(unet.conv_out.weight)
            torch.nn.init.zeros_(unet.conv_out.bias)
        bb.vae, bb.unet = vae, unet
        if save_to is not None:
            save_backbone(bb, save_to)
            bb.source = str(save_to)
        return bb

    # ------------------------------------------------------------------ stages 1 and 2
    def _set_trainable(self, stage: int) -> list[torch.nn.Parameter]:
        unet = self.model.unet
        unet.requires_grad_(False)
        name = ADAPTERS[stage - 1]  # stage 1 -> fidelity, stage 2 -> realism
        params = list(lora_parameters(unet, name).values())
        for p in params:
            p.requires_grad_(True)
        return params

    def _init_adapter(self, stage: int, source: str) -> None:
        """Copy adapter `source` into this stage's adapter before its first step (StageConfig.init_from).

        Stage 2 from "fidelity": f_phi = f_theta at step 0, so the blend starts at the fidelity
        endpoint for every gamma and stage 2 learns only the move towards realism. From zero,
        f_phi starts at the bare backbone (VAE(bicubic) for the tiny one), and part of what
        stage 2 keeps is that start: a shrunken fidelity correction, not realism."""
        name = ADAPTERS[stage - 1]
        if source == name:  # the value itself is checked by StageConfig
            raise InputError(f"stage {stage} trains {name!r}: init_from must name the other adapter, got {source!r}")
        src = lora_parameters(self.model.unet, source)
        dst = lora_parameters(self.model.unet, name)
        with torch.no_grad():
            for key, p in dst.items():
                p.copy_(src[key.replace(f".{name}.", f".{source}.")])

    def _color_fixed(self, x: torch.Tensor, x_up: torch.Tensor) -> torch.Tensor:
        """Train as the model infers: with a configured colour fix (ModelConfig.color_fix) the
        losses see the colour-fixed outputs, so the LoRA spends itself on what the fix keeps.
        Its wavelet depth is the loss config's (LossConfig.color_fix_levels)."""
        fix = self.model.mcfg.color_fix
        return x if fix is None else tiling.color_fix(x, x_up, fix, self.config.loss.color_fix_levels)

    def _stage_loss(self, stage: int, lr, hr, g):
        """L_1st on the fidelity output, or L_2nd on the blend with per-sample gamma."""
        model = self.model
        x_up = model.prepare(lr)
        xp, (H, W) = model._pad(x_up)
        with torch.no_grad():
            z_L = model.encode(xp)

        def out_of(adapter):
            return self._color_fixed(model.decode(model.denoise(z_L, adapter))[..., :H, :W], x_up)

        if stage == 1:
            return self._loss_dec(out_of("fidelity"), hr), None
        with torch.no_grad():  # theta is frozen in stage 2
            fid = out_of("fidelity")
        real = out_of("realism")
        gamma = torch.rand(hr.shape[0], generator=g).to(self.device).view(-1, 1, 1, 1)
        x_hat = fid + gamma * (real - fid)  # (1 - gamma) f_theta + gamma f_phi, per sample
        return self._loss_inc(x_hat, hr), gamma.flatten()

    def train_stage(self, stage: int, *, steps: int | None = None, resume: bool = False) -> list[dict]:
        """Run stage 1 or 2 for `steps` (default: the stage config's). Returns its history rows.

        With an out_dir, the main process holds OUT/.ifcsr.lock meanwhile: a second run into the
        same folder is refused (RunLockedError) instead of interleaving checkpoints."""
        if self.out_dir is not None and self.accelerator.is_main_process:
            with RunLock(self.out_dir):
                return self._train_stage(stage, steps=steps, resume=resume)
        return self._train_stage(stage, steps=steps, resume=resume)

    def _train_stage(self, stage: int, *, steps: int | None = None, resume: bool = False) -> list[dict]:
        if stage not in (1, 2):
            raise InputError(f"stage must be 1 or 2 (stage 0 is train_stage0), got {stage}")
        if self.model is None:
            raise InputError("stages 1 and 2 need a model (IFCSR) on a backbone")
        sc = self._stage_cfg(stage)
        steps = sc.steps if steps is None else steps
        cfg = self.config.loss
        if stage == 1:
            self._loss_dec = build_loss("dec", cfg, self.feature_net).to(self.device)
        else:
            self._loss_inc = build_loss("inc", cfg, self.feature_net).to(self.device)
        params = self._set_trainable(stage)
        opt = torch.optim.AdamW(params, lr=sc.lr, betas=sc.betas, weight_decay=sc.weight_decay)
        start = 0
        if resume:
            start = self._resume(stage, opt)
        if start == 0 and sc.init_from is not None:
            self._init_adapter(stage, sc.init_from)
        opt = self.accelerator.prepare(opt)
        rows = []
        bar = _tqdm(range(start, steps), desc=f"stage {stage}", disable=not self.progress,
                    initial=start, total=steps)
        try:
            for step in bar:
                t0 = time.perf_counter()
                lr_now = sc.lr_at(step)
                for group in opt.param_groups:
                    group["lr"] = lr_now
                seed = sc.seed + 7919 * stage + 104729 * self.accelerator.process_index
                idx, g = _draw_indices(len(self.data), sc.batch_size, seed, step)
                lr, hr = _batch(self.data, idx, self.device)
                loss, gamma = self._stage_loss(stage, lr, hr, g)
                check_finite_everywhere(loss, f"stage {stage} step {step}: the loss", self.accelerator)
                opt.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                if self.accelerator.num_processes > 1:
                    # Adapters are switched inside IFCSR, so the module is not DDP-wrapped:
                    # average the LoRA gradients across processes ourselves.
                    for p in params:
                        if p.grad is not None:
                            p.grad = self.accelerator.reduce(p.grad, reduction="mean")
                if sc.grad_clip:
                    self.accelerator.clip_grad_norm_(params, sc.grad_clip)
                opt.step()
                row = dict(step=step, stage=stage, loss=loss.item(), lr=lr_now, seconds=time.perf_counter() - t0)
                if gamma is not None:
                    row["gamma_mean"] = gamma.mean().item()
                self._log(**row)
                rows.append(row)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if (self.out_dir is not None and sc.checkpoint_every
                        and (step + 1) % sc.checkpoint_every == 0 and step + 1 < steps):
                    self.save_checkpoint(stage, step + 1, opt)
        except KeyboardInterrupt:
            # Interrupted: keep what was learned so far, resumable with resume=True.
            if self.out_dir is not None and rows:
                self.save_checkpoint(stage, rows[-1]["step"] + 1, opt)
            raise
        self.model.unet.requires_grad_(False)
        if self.out_dir is not None:
            self.save_checkpoint(stage, steps, opt)
        return rows

    def train(self, stages=(1, 2), *, resume: bool = False) -> IFCSR:
        """Run the given stages in order (1 then 2 by default)."""
        done = self._completed_stage() if resume else 0
        for s in stages:
            if resume and s < done:
                continue
            self.train_stage(s, resume=resume)
        return self.model

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoint"

    def save_checkpoint(self, stage: int, step: int, opt=None) -> Path:
        """Adapters, config, history and the trainer state, written together into a temporary
        folder that then replaces the checkpoint (IFCSR.save). The trainer state is tensors in
        safetensors plus a JSON index (ifcsr.checkpoint): nothing in it can run code when read."""
        if self.out_dir is None:
            raise InputError("save_checkpoint needs out_dir")
        objects = {name: obj.state_dict() for name, obj in self.extra_state.items()}
        if opt is not None:
            objects["optimizer"] = opt.state_dict()
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = list(torch.cuda.get_rng_state_all())
        tree = {"stage": stage, "step": step, "rng": rng, "objects": objects}
        return self.model.save(self.checkpoint_dir, history=self.history, extra={"stage": stage, "step": step},
                               write_extra=lambda folder: save_state(folder, tree))

    def _read_state(self):
        """The last trainer state, after settling what an interrupted save left behind
        (ifcsr.checkpoint.recover_folder) and checking every file's sha256."""
        ck = self.checkpoint_dir
        if ck is None:
            return None
        recover_folder(ck)
        if not ck.is_dir() or not has_state(ck):
            return None
        if (ck / MANIFEST).is_file() or not (ck / LEGACY_STATE).is_file():
            verify_manifest(ck)  # an older ifcsr (trainer_state.pt) wrote no checksums.json
        if (ck / "config.json").is_file():
            # Resuming under another config would continue (or call "complete") the old run.
            diff = config_diff(TrainConfig.load(ck / "config.json").to_dict(), self.config.to_dict())
            if diff:
                raise ConfigError(f"{ck} was trained with another config ({'; '.join(diff[:6])}"
                                  f"{'; ...' if len(diff) > 6 else ''}): choose another out_dir, or resume=False "
                                  "(--no-resume) to start over there")
        return load_state(ck)

    def _completed_stage(self) -> int:
        st = self._read_state()
        if st is None:
            return 0
        steps = self._stage_cfg(st["stage"]).steps
        return st["stage"] + (1 if st["step"] >= steps else 0)

    def _resume(self, stage: int, opt) -> int:
        """Load adapters, history, optimizer, the named extra states and the RNG from the last
        checkpoint of this stage."""
        from safetensors.torch import load_file

        from .models import load_adapter_state_dict

        st = self._read_state()
        if st is None:
            return 0
        ck = self.checkpoint_dir
        for name in ADAPTERS:
            load_adapter_state_dict(self.model.unet, name, load_file(ck / f"{name}.safetensors"))
        import json

        self.history = json.loads((ck / "history.json").read_text())
        self.model.history = self.history
        if st["stage"] != stage:
            return 0  # previous stage finished; this one starts fresh on its weights
        objects = st.get("objects", {})
        missing = [n for n in self.extra_state if n not in objects]
        if missing:
            raise CheckpointError(f"{ck}: the trainer state has no {missing} to resume stage {stage} from; "
                                  "start over with `--no-resume` (or resume=False)")
        if "optimizer" in objects:
            opt.load_state_dict(objects["optimizer"])
        for name, obj in self.extra_state.items():
            obj.load_state_dict(objects[name])
        rng = st.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return int(st["step"])


def quick_config(*, steps: int = 20, crop_size: int = 64, batch_size: int = 4, **loss_kw) -> TrainConfig:
    """A small config for tests, CI and notebooks' small mode."""
    from .config import LossConfig

    base = TrainConfig()
    stage = replace(base.stage1, steps=steps, crop_size=crop_size, batch_size=batch_size, lr=1e-3)
    return replace(base, stage1=stage, stage2=stage, loss=replace(LossConfig(), **loss_kw))
