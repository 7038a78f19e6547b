# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Training: stage 1 (fidelity) and stage 2 (realism on the blend)
#
# **What you will learn**
#
# - how to train the two LoRA adapters of IFCSR on a few photos (or a folder of your own),
#   on a CPU, on the frozen tiny backbone that ships with `ifcsr`;
# - what stage 1 and stage 2 optimise, read off their loss curves (`Trainer.history`);
# - how the freshly trained endpoints compare with the bundled checkpoint's.
#
# Two modes: **small** (`IFCSR_SMALL=1`, what CI runs: a few steps on tiny crops, seconds)
# and **full** (for a class: the bundled checkpoint's settings, 300 steps per stage on 64x64
# crops, 6-10 minutes for both stages on two CPU cores; the bundle itself ran 800 + 200,
# stage 2 on seven photos with its texture term and overshoot penalty).
# Training is resumable: interrupt the cell and run it again, it continues from the last
# checkpoint in `OUT`.

# %%
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch.nn.functional as F

from ifcsr.config import TrainConfig
from ifcsr.data import ImageFolder, SampleDataset, pairs_from_samples
from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR, load_backbone
from ifcsr.recipes import make_degradation
from ifcsr.train import Trainer
from ifcsr.widgets import loss_curves_figure
from ifcsr.widgets.figures import endpoints_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = Path(os.environ.get("IFCSR_CHECKPOINT") or BUNDLED_CHECKPOINT)  # its backbone and recipe
PHOTOS = ("astronaut", "rocket") if SMALL else ("astronaut", "rocket", "hubble_deep_field", "motorcycle")
MY_FOLDER = None  # or a folder of your own photos (DIV2K, LSDIR, your phone's pictures ...)
STEPS = 3 if SMALL else 300  # per stage
CROP = 32 if SMALL else 64  # HR crop; the LR crop is CROP / 4
BATCH = 2 if SMALL else 4
OUT = Path("runs") / "notebook03"  # checkpoints land here (resumable)

# %% [markdown]
# ## The recipe and the data
#
# We start from the recipe the checkpoint was trained with (`config.json`) and change only
# the number of steps, the crop and the batch, with `dataclasses.replace`. The backbone
# (tiny VAE + UNet, frozen) is the checkpoint's; the two adapters start from scratch.

# %%
base = TrainConfig.load(CHECKPOINT / "config.json")
stage = replace(base.stage1, steps=STEPS, crop_size=CROP, batch_size=BATCH, checkpoint_every=0 if SMALL else 50)
cfg = replace(base, stage1=stage, stage2=replace(stage, seed=base.stage2.seed, init_from=base.stage2.init_from))
print(f"loss: k={cfg.loss.k:g} on {cfg.loss.feature_net} features; LoRA rank {cfg.model.lora_rank}; "
      f"lr {stage.lr:g}; {STEPS} steps x batch {BATCH} of {CROP}x{CROP} crops per stage; "
      f"degradation: {cfg.degradation}")

degradation = make_degradation(cfg.degradation, cfg.model.scale)
if MY_FOLDER is None:
    data = SampleDataset(PHOTOS, crop_size=CROP, scale=cfg.model.scale, degradation=degradation, seed=0)
else:
    data = ImageFolder(MY_FOLDER, crop_size=CROP, scale=cfg.model.scale, degradation=degradation, seed=0)
panels = {}
for item in (data[0], data[1]):
    panels[f"{item['name']}: LR (nearest)"] = F.interpolate(item["lr"][None], scale_factor=cfg.model.scale)
    panels[f"{item['name']}: HR"] = item["hr"]
fig = endpoints_figure(panels, title="training pairs: random crops, degraded on the fly")

# %% [markdown]
# ## Train stage 1, then stage 2
#
# Stage 1 trains only the *fidelity* adapter with $w^{dec}$; stage 2 freezes it and trains
# the *realism* adapter on $(1-\gamma) f_\theta + \gamma f_\phi$ with $w^{inc}$ and one
# random $\gamma$ per sample (the `gamma_mean` column of the history).

# %%
model = IFCSR.from_backbone(load_backbone(CHECKPOINT / "backbone"), cfg)
trainer = Trainer(model, data, config=cfg, out_dir=OUT)  # CUDA when present, else CPU
trainer.train(stages=(1, 2), resume=True)
history = pd.DataFrame(trainer.history)
print(history.groupby("stage")["loss"].agg(["count", "first", "last", "min"]).to_string())

# %%
fig = loss_curves_figure(trainer.history, smooth=1 if SMALL else 10,
                         title=f"loss curves ({'small' if SMALL else 'full'} mode)")

# %% [markdown]
# The two stage losses are on different scales: they weight the layers differently, so
# compare each curve with itself. In small mode three steps show only that the mechanics
# run; in full mode the stage 1 loss falls steadily and the stage 2 loss is noisy, because
# every batch draws new gammas.

# %% [markdown]
# ## The new endpoints next to the bundled ones, on a held-out photo

# %%
final = model.save(OUT / "final", history=trainer.history)
trained = IFCSR.load(final)
bundled = IFCSR.load(CHECKPOINT)
pair = pairs_from_samples(["coffee"], crop=128 if SMALL else 256)[0]
lr, hr = pair["lr"][None], pair["hr"][None]
new, ref = trained.infer(lr), bundled.infer(lr)
fig = endpoints_figure({"ours: fidelity": new.fidelity, "ours: realism": new.realism,
                        "bundled: fidelity": ref.fidelity, "bundled: realism": ref.realism, "HR": hr},
                       title=f"held-out coffee: {STEPS} steps per stage vs the bundled checkpoint")

# %% [markdown]
# ## Exercises
#
# 1. Train with $k = 1$ (`cfg = replace(cfg, loss=replace(cfg.loss, k=1.0))`) and compare the
#    gap between the two new endpoints with the $k = 7$ run.
# 2. Point `MY_FOLDER` at a folder of your own photos and train in full mode. Which photos
#    does the new model do better on than the bundled one?
# 3. Interrupt the training cell half way, run it again and check in `trainer.history` that
#    it resumed at the step where it stopped.
#
# Worked solutions: `notebooks/solutions/03_training.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. Which parts of the model are frozen in stages 1 and 2, and which are trained in each stage?
# 2. What does the `gamma_mean` column of the stage-2 history record?
# 3. Why should you not compare the stage-1 loss curve with the stage-2 one?
# 4. Why is the stage-2 loss noisier than the stage-1 loss?
# 5. How does the notebook change the steps, crop and batch of the checkpoint's recipe without editing it?
# 6. Where are the checkpoints written, and what happens when you rerun an interrupted training cell?
# 7. What does small mode demonstrate, and what can it not demonstrate?
