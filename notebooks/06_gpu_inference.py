# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · GPU inference, large images and Stable Diffusion 2.1
#
# **What you will learn**
#
# - how to run IFCSR on a GPU (in half precision) and on the CPU with the same code;
# - how large images are super-resolved in overlapping tiles, so memory stays bounded
#   (`model.infer(lr, tile=True)`), and what that costs compared with blending;
# - how the real backbone, Stable Diffusion 2.1-base, is loaded from a local folder or the
#   model hub, and what the notebook tells you when its weights are missing.
#
# Without a GPU or without SD 2.1 weights the notebook still runs: it falls back to the
# tiny backbone on whatever device exists, and says so.

# %%
import os
import time

import torch

from ifcsr.config import SD21_BASE
from ifcsr.data import BicubicDegradation, load_sample
from ifcsr.data.images import save_image, to_tensor
from ifcsr.evaluation.sweep import describe_model
from ifcsr.models import IFCSR, BackboneNotFoundError
from ifcsr.tiling import TileConfig
from ifcsr.widgets import BlendExplorer
from ifcsr.widgets.figures import endpoints_figure

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # the tiny fallback (None: bundled)
SD21 = os.environ.get("IFCSR_SD21", SD21_BASE)  # a local diffusers folder or a hub id
SD_CHECKPOINT = os.environ.get("IFCSR_SD_CHECKPOINT")  # IFCSR adapters trained on SD 2.1, if you have them
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.float16 if DEVICE == "cuda" else torch.float32
PHOTO = "coffee"
print(f"device: {DEVICE} ({torch.cuda.get_device_name() if DEVICE == 'cuda' else 'no GPU found'}), dtype {DTYPE}")

# %% [markdown]
# ## The backbone: SD 2.1-base if its weights are here, else the tiny one
#
# `IFCSR_SD_CHECKPOINT` names a checkpoint whose adapters were trained on SD 2.1 (a day per
# stage on an H100 in the paper). With only the SD 2.1 weights (`IFCSR_SD21`: a folder from
# `huggingface-cli download stabilityai/stable-diffusion-2-1-base --local-dir sd21`, or the
# hub id when the hub is reachable), the adapters are untrained: both endpoints then equal
# the backbone's one-step output, which shows the cost and the memory of the real
# pipeline, not its quality.

# %%
model, why = None, ""
try:
    if SD_CHECKPOINT:
        model = IFCSR.load(SD_CHECKPOINT, device=DEVICE, dtype=DTYPE)
    else:
        model = IFCSR.from_backbone(SD21, device=DEVICE, dtype=DTYPE)
        why = "SD 2.1-base with UNTRAINED adapters: both endpoints are the same image"
except (BackboneNotFoundError, FileNotFoundError) as err:
    print(f"SD 2.1-base is not available here:\n{err}\n")
if model is None:
    model = IFCSR.load(CHECKPOINT, device=DEVICE, dtype=DTYPE)
    why = f"fallback: the tiny backbone of {CHECKPOINT or 'the bundled checkpoint'}"
print(f"{describe_model(model)} on {DEVICE}; {why}")

# %% [markdown]
# ## A large image, in tiles
#
# The input is the whole HR photo treated as a low-resolution image, so the output is four
# times larger on each side (in small mode a crop of it, and the x4 bicubic LR on a CPU).
# `tile=None` decides by size; `tile=True` forces tiles. The tiles overlap and are blended
# with Gaussian weights; the VAE works on tiles with margins and shared normalisation
# statistics, so there are no seams. Tiling trades speed for memory: on a CPU it is also
# faster (attention grows with the square of the tile), but on a GPU with memory to spare
# one untiled pass is usually quicker (exercise 1 measures both).

# %%
hr = to_tensor(load_sample(PHOTO))
if SMALL:
    hr = hr[..., :128, :128]
lr = hr if DEVICE == "cuda" and not SMALL else BicubicDegradation(4)(hr)
tiles = TileConfig.for_model(model)
print(f"LR {tuple(lr.shape[-2:])} -> output {lr.shape[-2] * model.scale}x{lr.shape[-1] * model.scale}; "
      f"UNet tiles of {tiles.latent_tile} latent pixels with overlap {tiles.latent_overlap}")
if DEVICE == "cuda":
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
t0 = time.perf_counter()
ends = model.infer(lr.to(DEVICE), tile=True)
if DEVICE == "cuda":
    torch.cuda.synchronize()
t_infer = time.perf_counter() - t0
peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if DEVICE == "cuda" else ""
print(f"tiled inference of both endpoints: {t_infer:.2f} s{peak}")

# %%
t0 = time.perf_counter()
for g in (0.1, 0.2, 0.3, 0.4, 0.5):
    x = ends.blend(g)
if DEVICE == "cuda":
    torch.cuda.synchronize()
t_blend = (time.perf_counter() - t0) / 5
print(f"one blend at {tuple(x.shape[-2:])}: {1000 * t_blend:.2f} ms on {DEVICE} "
      f"({t_infer / t_blend:.0f}x cheaper than the inference)")
out = save_image(ends.blend(0.5).float().cpu(), "gpu_inference_gamma0.50.png")
print(f"saved {out}")

# %% [markdown]
# ## Look at it
#
# The full image is large; the explorer shows a 512x512 window of it (its update cost grows
# with the number of pixels shown). Save the whole image at any gamma with `ends.blend`.

# %%
fid, real = ends.fidelity.float().cpu(), ends.realism.float().cpu()
fig = endpoints_figure({"gamma 0 (fidelity)": fid, "gamma 0.5": ends.blend(0.5).float().cpu(),
                        "gamma 1 (realism)": real}, title=f"{PHOTO}, {describe_model(model)}", note=why)
window = (slice(None), slice(None), slice(0, 512), slice(0, 512))
BlendExplorer(fid[window], real[window], name=f"{PHOTO}_window")

# %% [markdown]
# ## Exercises
#
# 1. Time `model.infer(lr, tile=False)` against `tile=True` on growing crops of the photo.
#    Where does tiling start to pay off on your device, and why (hint: attention)?
# 2. Compare the peak GPU memory of tiled and untiled inference with
#    `torch.cuda.max_memory_allocated()`.
# 3. With SD 2.1 weights available, load the backbone in `float16` and `float32`: how do
#    speed and memory change?
#
# Worked solutions: `notebooks/solutions/06_gpu_inference.py`.

# %% [markdown]
# ## Questionnaire
#
# Answers are in this notebook (fastbook style: check yourself before the exercises).
#
# 1. How does `model.infer(lr, tile=True)` keep memory bounded on a large image?
# 2. Why are there no seams between the tiles?
# 3. On a CPU, is tiling faster or slower than one untiled pass? And on a GPU with memory to spare? Why?
# 4. What does the notebook do when the SD 2.1-base weights are missing?
# 5. With SD 2.1 weights but untrained adapters, what do the two endpoints equal, and what does the run still show?
# 6. Which dtype does the notebook use on a GPU, and which on a CPU?
# 7. Why does the explorer show only a 512x512 window of the output, and how do you save the whole image at some gamma?
