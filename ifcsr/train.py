"""Trainer: stage 0 (tiny backbone), stage 1 (fidelity), stage 2 (realism on the blend).

    Stage 1:  min_theta  L_s(f_theta(x_L), x_H; w_dec)
    Stage 2:  min_phi    E_{gamma ~ U(0,1)} L_s((1 - gamma) f_theta(x_L) + gamma f_phi(x_L), x_H; w_inc)
              with theta frozen and gamma drawn per sample.

Built on `accelerate` as its authors intend: the same code runs on one CPU, one GPU or several
(`accelerate launch -m ifcsr.cli.train ...`). Per stage, `accelerator.prepare` gets
  - the trainable module, `StageModule`: it holds the IFCSR model and its forward IS the stage
    loss, so the adapter switches inside IFCSR happen inside one (DDP-)forward and DDP reduces
    the LoRA gradients in its buckets (as diffusers' train_*_lora scripts prepare the UNet);
  - the AdamW optimiser over the stage's LoRA parameters, kept in float32
    (diffusers' `cast_training_params`) under bf16/fp16 autocast;
  - a DataLoader (workers, one batch per process per micro-step, sharded by accelerate).
Samples, crops, degradations and gamma are drawn from (seed, epoch, index), so a step sees the
same samples on 1 process with gradient accumulation as on several, and a resumed run sees
what the interrupted one would have seen. A non-finite loss on any process stops every process
with the same error. Only the main process writes checkpoints (atomically: temporary folder,
then rename), between two `wait_for_everyone`. History is a list of dicts
(`pandas.DataFrame(trainer.history)`), the same on every process; `resume=True` continues
from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
from .config import VGG_LAYER_NAMES, Stage0Config, StageConfig, TrainConfig, config_diff
from .errors import CheckpointError, ConfigError, InputError, NonFiniteError
from .losses import (bicubic_consistent, build_feature_net, build_loss, feature_maps, needs_feature_net,
                     overshoot_loss, texture_loss)
from .models import ADAPTERS, IFCSR, Backbone, build_tiny_backbone, lora_parameters

# Trainer.extra_state names of the adversarial term's state (stage 2, LossConfig.adv_weight > 0):
# the discriminator's trainable heads (its trunk is the frozen HED VGG16) and its optimizer.
DISC_STATES = ("discriminator", "discriminator_optimizer")


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
    # Stage 0 (tiny backbone, one process): indices depend only on (seed, step).
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


class EpochSampler(torch.utils.data.Sampler):
    """Indices of one epoch: a permutation of range(n) drawn from (seed, epoch), cut to a multiple
    of `multiple` (the samples of one optimiser step over all processes and micro-batches), from
    position `skip` on (a run resumed in the middle of an epoch). A dataset smaller than one step
    is repeated (fresh permutations) to fill one step.

    accelerate shards the batches of this order across processes (batch j to process j mod P), so
    step k of an epoch takes positions [k * multiple, (k + 1) * multiple) whatever P is.
    """

    def __init__(self, n: int, *, seed: int, multiple: int):
        if n < 1:
            raise InputError("the training set is empty")
        self.n, self.seed, self.multiple = int(n), int(seed), int(multiple)
        self.used = max(self.n // self.multiple, 1) * self.multiple
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        reps = -(-self.used // self.n)
        perm = np.concatenate([np.random.default_rng([self.seed, self.epoch, r]).permutation(self.n)
                               for r in range(reps)])[: self.used]
        return iter(perm[self.skip:].tolist())

    def __len__(self) -> int:
        return self.used - self.skip


class StageData(torch.utils.data.Dataset):
    """A stage's training items: the dataset's "hr" and "lr" plus stage 2's per-sample gamma ~ U(0, 1).

    gamma is drawn from (seed, epoch, index), like the crops of `ImageFolder`: a sample keeps its
    gamma whichever batch, micro-batch or process it lands in. `set_epoch` reaches the dataset.
    """

    def __init__(self, data, *, seed: int):
        self.data, self.seed, self.epoch = data, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = self.data[index]
        gamma = np.random.default_rng([self.seed, self.epoch, int(index), 2]).uniform()
        return {"hr": item["hr"], "lr": item["lr"], "gamma": torch.tensor(gamma, dtype=torch.float32)}


class StageModule(nn.Module):
    """What `accelerator.prepare` wraps (DDP under several processes): the IFCSR model, whose
    forward is the stage loss.

    The adapters are switched inside IFCSR (`set_adapter`), which a DDP wrapper around the bare
    UNet could not follow; with the whole loss inside one forward, DDP sees this stage's LoRA
    parameters (the only ones requiring grad when it is built) and all-reduces their gradients
    in buckets during backward. Autocast (mixed precision) wraps this forward too.
    """

    def __init__(self, trainer: "Trainer", stage: int):
        super().__init__()
        self.model = trainer.model
        self.stage = stage
        self._trainer = trainer  # not a module: the losses live on the trainer

    def forward(self, lr: torch.Tensor, hr: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        loss, _ = self._trainer._stage_loss(self.stage, lr, hr, gamma)
        return loss


def check_finite_everywhere(value: torch.Tensor, what: str, accelerator=None) -> None:
    """Raise NonFiniteError on EVERY process when `value` is NaN/inf on ANY of them.

    Each process contributes a 0/1 flag and the flags are summed across processes, so a NaN on
    one rank stops all ranks at the same step (instead of one rank dying and the others hanging
    in the next gradient all-reduce). One process: a local check, no communication."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(value).all()) else 1.0], device=value.device)
    if accelerator is not None and getattr(accelerator, "num_processes", 1) > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        # The same words on every process (no per-process value): each log shows one error.
        n = getattr(accelerator, "num_processes", 1) if accelerator is not None else 1
        raise NonFiniteError(f"{what} is NaN or infinite on {int(bad.item())} process(es) of {n}; stopping every "
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
        self.accelerator = accelerator or Accelerator(cpu=cpu or not torch.cuda.is_available(),
                                                      mixed_precision=self.config.mixed_precision)
        self.device = self.accelerator.device
        self.model = model.to(self.device) if model is not None else None
        if self.model is not None:
            self.model.config = self.config
        self.progress = progress and self.accelerator.is_local_main_process
        self._feature_net = feature_net
        self._disc = self._d_opt = None  # stage 2's discriminator when LossConfig.adv_weight > 0
        self._terms_log: dict[str, torch.Tensor] = {}  # this micro-batch's stage-2 terms (_realism_terms)
        self.history: list[dict] = list(model.history) if model is not None else []
        # Named objects with state_dict()/load_state_dict() saved in every checkpoint and restored
        # on resume next to the stage's optimizer (e.g. "discriminator", "discriminator_optimizer").
        self.extra_state: dict[str, object] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def feature_net(self):
        if self._feature_net is None and not needs_feature_net(self.config.loss):
            return None  # pixel MSE only (LossConfig.layers=(0,))
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
        host = self.model.adapter_host
        host.requires_grad_(False)
        name = ADAPTERS[stage - 1]  # stage 1 -> fidelity, stage 2 -> realism
        params = list(lora_parameters(host, name).values())
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
        src = lora_parameters(self.model.adapter_host, source)
        dst = lora_parameters(self.model.adapter_host, name)
        with torch.no_grad():
            for key, p in dst.items():
                p.copy_(src[key.replace(f".{name}.", f".{source}.")])

    def _color_fixed(self, x: torch.Tensor, x_up: torch.Tensor) -> torch.Tensor:
        """Train as the model infers: with a configured colour fix (ModelConfig.color_fix) the
        losses see the colour-fixed outputs, so the LoRA spends itself on what the fix keeps.
        Its wavelet depth is the loss config's (LossConfig.color_fix_levels)."""
        fix = self.model.mcfg.color_fix
        return x if fix is None else tiling.color_fix(x, x_up, fix, self.config.loss.color_fix_levels)

    def _stage_loss(self, stage: int, lr, hr, gamma=None):
        """L_1st on the fidelity output, or L_2nd on the blend with per-sample gamma, shape (B,).
        The model gives the endpoints (`training_outputs`: whatever its backbone kind)."""
        fid, real, x_up = self.model.training_outputs(lr, stage)
        if stage == 1:
            return self._loss_dec(self._color_fixed(fid, x_up), hr), None
        fid, real = self._color_fixed(fid, x_up), self._color_fixed(real, x_up)
        if gamma is None or gamma.shape != (hr.shape[0],):
            raise InputError(f"stage 2 needs one gamma per sample, shape ({hr.shape[0]},), got "
                             f"{None if gamma is None else tuple(gamma.shape)}")
        self._realism_out = real  # the adversarial term (_train_step) reads the realism endpoint
        gamma = gamma.to(real.device, real.dtype).view(-1, 1, 1, 1)
        x_hat = fid + gamma * (real - fid)  # (1 - gamma) f_theta + gamma f_phi, per sample
        return self._loss_inc(x_hat, hr) + self._realism_terms(real, hr, lr), gamma.flatten()

    def _realism_terms(self, real: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor | float:
        """The optional stage-2 terms on the realism endpoint f_phi(x_L) itself (not the blend: they
        ask the realism end to carry HR's texture without ringing; the blend then moves towards it
        with gamma): texture_weight * texture_loss + overshoot_weight * overshoot_loss. Their
        values go into the history row (`texture`, `overshoot`)."""
        c = self.config.loss
        terms, self._terms_log = 0.0, {}
        if c.texture_weight > 0:
            taps = [VGG_LAYER_NAMES.index(t) for t in c.texture_taps]
            fx = feature_maps(self.feature_net, real.clamp(0, 1))
            with torch.no_grad():
                fy = feature_maps(self.feature_net, hr)
            tex = texture_loss(fx, fy, taps, c.texture_patch)
            self._terms_log["texture"] = tex.detach()
            terms = terms + c.texture_weight * tex
        if c.overshoot_weight > 0:
            samples = None
            if c.overshoot_on == "bicubic":
                samples = bicubic_consistent(lr.to(hr.device), hr)
                self._terms_log["bicubic_frac"] = samples.float().mean()
            over = overshoot_loss(real, hr, c.overshoot_window, c.overshoot_edges, c.overshoot_reduce, samples)
            self._terms_log["overshoot"] = over.detach()
            terms = terms + c.overshoot_weight * over
        return terms

    def _loader(self, stage: int, sc: StageConfig):
        """The stage's DataLoader (prepared: sharded across processes), its sampler and StageData."""
        acc = self.accelerator
        data = StageData(self.data, seed=sc.seed + 7919 * stage)
        group = sc.batch_size * acc.num_processes * sc.grad_accum  # samples per optimiser step
        sampler = EpochSampler(len(data), seed=sc.seed + 7919 * stage, multiple=group)
        workers = self.config.num_workers
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=torch.utils.data.BatchSampler(sampler, sc.batch_size, drop_last=True),
            num_workers=workers, pin_memory=acc.device.type == "cuda",
            # Workers copy the dataset when an epoch's iterator starts: set_epoch must come first.
            persistent_workers=False)
        return acc.prepare(loader), sampler, data

    def _train_step(self, stage: int, step: int, module, opt, batches, params, sc: StageConfig) -> dict:
        """One optimiser step over sc.grad_accum micro-batches of this process."""
        acc = self.accelerator
        t0 = time.perf_counter()
        lr_now = sc.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr_now
        opt.zero_grad(set_to_none=True)
        losses, gammas, adv, terms = [], [], {}, {}
        self._terms_log = {}
        # The adversarial term's augmentations depend only on (seed, step, process): resumable.
        g = torch.Generator().manual_seed(sc.seed * 1_000_003 + step * 101 + acc.process_index)
        for micro in range(sc.grad_accum):
            batch = next(batches)
            # DDP all-reduces the gradients in the backward of the last micro-batch only.
            sync = micro == sc.grad_accum - 1
            with contextlib.nullcontext() if sync else acc.no_sync(module):
                loss = module(batch["lr"], batch["hr"], batch["gamma"])
                if self._disc is not None and step >= self.config.loss.adv_warmup:
                    g_adv = self._adversarial_g_loss(g)
                    adv["stage_loss"] = loss.item()
                    adv["adv_g"] = g_adv.item()
                    loss = loss + self.config.loss.adv_weight * g_adv
                # Every process learns of a non-finite loss on any of them before any backward: all
                # stop here with the same error instead of waiting in the gradient all-reduce.
                check_finite_everywhere(loss.detach().float(), f"stage {stage} step {step}: the loss", acc)
                acc.backward(loss / sc.grad_accum)
            losses.append(acc.reduce(loss.detach().float(), reduction="mean").item())  # same history everywhere
            for name, value in self._terms_log.items():
                terms.setdefault(name, []).append(acc.reduce(value.float(), reduction="mean").item())
            if stage == 2:
                gammas.append(acc.gather(batch["gamma"].float()).mean().item())
        if sc.grad_clip:
            acc.clip_grad_norm_(params, sc.grad_clip)
        opt.step()
        if self._disc is not None:  # D learns from the last micro-batch's HR and realism output
            adv.update(self._discriminator_step(batch["hr"].to(self.device), g))
        row = dict(step=step, stage=stage, loss=float(np.mean(losses)), lr=lr_now,
                   seconds=time.perf_counter() - t0, **adv)
        row.update({name: float(np.mean(values)) for name, values in terms.items()})
        if gammas:
            row["gamma_mean"] = float(np.mean(gammas))
        return row

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
        from diffusers.training_utils import cast_training_params

        acc = self.accelerator
        sc = self._stage_cfg(stage)
        steps = sc.steps if steps is None else steps
        cfg = self.config.loss
        if stage == 1:
            self._loss_dec = build_loss("dec", cfg, self.feature_net).to(self.device)
        else:
            self._loss_inc = build_loss("inc", cfg, self.feature_net).to(self.device)
        params = self._set_trainable(stage)
        # fp32 master weights for the LoRA parameters whatever the backbone's dtype: a bf16 LoRA
        # weight does not move under an lr-5e-5 AdamW step (its update is below bf16's resolution).
        cast_training_params(self.model.adapter_host, dtype=torch.float32)
        if self.config.gradient_checkpointing and self.model.kind == "diffusion":
            self.model.unet.enable_gradient_checkpointing()
            self.model.vae.enable_gradient_checkpointing()  # the decoder runs with grad
        opt = torch.optim.AdamW(params, lr=sc.lr, betas=sc.betas, weight_decay=sc.weight_decay)
        # The optional adversarial realism term: stage 2 only, never stage 1 (fidelity).
        self._disc = self._d_opt = None
        for name in DISC_STATES:
            self.extra_state.pop(name, None)
        if stage == 2 and cfg.adv_weight > 0:
            self._build_discriminator()
            # saved in every stage-2 checkpoint and restored on resume (ifcsr.checkpoint: safetensors + JSON)
            self.extra_state.update(zip(DISC_STATES, (self._disc.heads, self._d_opt)))
        start = 0
        if resume:
            start = self._resume(stage, opt)
        if start == 0 and sc.init_from is not None:
            self._init_adapter(stage, sc.init_from)
        loader, sampler, data = self._loader(stage, sc)
        module, opt = acc.prepare(StageModule(self, stage), opt)
        per_epoch = sampler.used // (sc.batch_size * acc.num_processes * sc.grad_accum)
        rows = []
        bar = _tqdm(desc=f"stage {stage}", disable=not self.progress, initial=start, total=steps)
        step = start
        try:
            while step < steps:
                epoch, within = divmod(step, per_epoch)
                sampler.skip = within * sampler.multiple  # resume in the middle of an epoch
                data.set_epoch(epoch)
                loader.set_epoch(epoch)
                batches = iter(loader)
                for _ in range(within, per_epoch):
                    if step >= steps:
                        break
                    row = self._train_step(stage, step, module, opt, batches, params, sc)
                    step += 1
                    self._log(**row)
                    rows.append(row)
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    if (self.out_dir is not None and sc.checkpoint_every
                            and step % sc.checkpoint_every == 0 and step < steps):
                        self.save_checkpoint(stage, step, opt)
                del batches  # stops the workers of a partly read epoch
        except KeyboardInterrupt:
            # Interrupted: keep what was learned so far, resumable with resume=True. Under several
            # processes the others may be gone: the last periodic checkpoint is the resume point.
            if self.out_dir is not None and rows and acc.num_processes == 1:
                self.save_checkpoint(stage, rows[-1]["step"] + 1, opt)
            raise
        finally:
            bar.close()
            sampler.skip = 0
        self.model.adapter_host.requires_grad_(False)
        if self.out_dir is not None:
            self.save_checkpoint(stage, steps, opt)
        return rows

    # ------------------------------------------------------------------ adversarial term (optional)
    def _build_discriminator(self) -> None:
        """D on frozen HED-VGG16 features (ifcsr/adversarial.py), its heads seeded by the stage-2 seed."""
        from .adversarial import ProjectedDiscriminator

        from .weights.hed import HedPerceptual, _freeze, _vgg16_features

        c = self.config.loss
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.stage2.seed + 2)
            if isinstance(self.feature_net, HedPerceptual):
                trunk = self.feature_net.features  # share the loss's frozen HED trunk (same weights)
            elif c.feature_net == "vgg-random":
                trunk = _freeze(_vgg16_features())  # tests: a seeded random trunk, as the losses use
            else:
                trunk = None  # the HED trunk (ifcsr.weights.hed.load_hed_vgg16)
            self._disc = ProjectedDiscriminator(c.adv_taps, c.adv_channels, trunk=trunk).to(self.device)
        self._d_opt = torch.optim.AdamW(self._disc.heads.parameters(), lr=c.adv_lr, betas=c.adv_betas,
                                        weight_decay=0.0)

    def _adversarial_g_loss(self, g: torch.Generator) -> torch.Tensor:
        """Hinge generator loss of the realism endpoint f_phi(x_L) (not the blend: the term asks
        the realism end to look real; the blend then moves towards it with gamma)."""
        from .adversarial import diff_augment, g_hinge_loss

        self._disc.heads.requires_grad_(False)  # G's step must not touch D
        return g_hinge_loss(self._disc(diff_augment(self._realism_out, self.config.loss.adv_augment, g)))

    def _discriminator_step(self, hr: torch.Tensor, g: torch.Generator) -> dict:
        from .adversarial import d_hinge_loss, diff_augment, r1_penalty

        c = self.config.loss
        disc, fake = self._disc, self._realism_out.detach()
        disc.heads.requires_grad_(True)
        for _ in range(c.adv_d_steps):
            real_aug, fake_aug = diff_augment(hr, c.adv_augment, g), diff_augment(fake, c.adv_augment, g)
            lr_, lf = disc(real_aug), disc(fake_aug)
            d_loss = d_hinge_loss(lr_, lf)
            r1 = r1_penalty(disc, real_aug) if c.adv_r1 > 0 else None
            total = d_loss + 0.5 * c.adv_r1 * r1 if r1 is not None else d_loss
            self._d_opt.zero_grad(set_to_none=True)
            total.backward()
            self._d_opt.step()
        disc.heads.requires_grad_(False)
        out = dict(d_loss=d_loss.item(), d_real=sum(x.mean() for x in lr_).item() / len(lr_),
                   d_fake=sum(x.mean() for x in lf).item() / len(lf))
        if r1 is not None:
            out["r1"] = r1.item()
        return out

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
        safetensors plus a JSON index (ifcsr.checkpoint): nothing in it can run code when read.

        Called by every process; only the main one writes, after all have finished the step
        (their weights and optimiser states are equal: DDP averaged the same gradients), and
        none goes on before the checkpoint is in place."""
        if self.out_dir is None:
            raise InputError("save_checkpoint needs out_dir")
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            objects = {name: obj.state_dict() for name, obj in self.extra_state.items()}
            if opt is not None:
                objects["optimizer"] = opt.state_dict()
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                rng["cuda"] = list(torch.cuda.get_rng_state_all())
            tree = {"stage": stage, "step": step, "rng": rng, "objects": objects}
            self.model.save(self.checkpoint_dir, history=self.history, extra={"stage": stage, "step": step},
                            write_extra=lambda folder: save_state(folder, tree))
        acc.wait_for_everyone()
        return self.checkpoint_dir

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
        from .lora import adapter_metadata, check_adapter_metadata, load_adapter_state_dict, load_safetensors

        st = self._read_state()  # stage and step validated there (ifcsr.checkpoint.check_stage_step)
        if st is None:
            return 0
        ck = self.checkpoint_dir
        for name in ADAPTERS:
            f = ck / f"{name}.safetensors"
            check_adapter_metadata(f, name, adapter_metadata(self.model.mcfg))  # not swapped, same rank and alpha
            load_adapter_state_dict(self.model.adapter_host, name, load_safetensors(f), source=f)
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
