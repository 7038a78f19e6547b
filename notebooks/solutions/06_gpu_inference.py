# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Solutions · 06 GPU inference
#
# Worked solutions to the exercises of `notebooks/06_gpu_inference`. Teachers: hand out the
# notebook without this folder (`python notebooks/strip_solutions.py OUT`).
#
# Exercise 1 runs on any device. Exercises 2 and 3 measure GPU memory and half precision:
# without a GPU they say so and what they would measure; no number is made up. CI runs the
# CPU path in small mode.

# %%
import os

import pandas as pd
import torch

from ifcsr.config import SD21_BASE
from ifcsr.evaluation.bench_common import median_time, photo_lr
from ifcsr.evaluation.bench_sd import sd21_base_model
from ifcsr.evaluation.sweep import describe_model
from ifcsr.models import IFCSR, BackboneNotFoundError
from ifcsr.tiling import TileConfig

SMALL = os.environ.get("IFCSR_SMALL") == "1"
CHECKPOINT = os.environ.get("IFCSR_CHECKPOINT")  # the tiny model (None: bundled)
SD21 = os.environ.get("IFCSR_SD21", SD21_BASE)  # a local diffusers folder or a hub id
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GPU = torch.cuda.get_device_name() if DEVICE == "cuda" else None
print(f"device: {DEVICE} ({GPU or 'no GPU found'})")
model = IFCSR.load(CHECKPOINT, device=DEVICE)
tiles = TileConfig.for_model(model)
print(f"{describe_model(model)}; UNet tiles of {tiles.latent_tile} latent pixels, overlap {tiles.latent_overlap}")

# %% [markdown]
# ## 1. Tiled against untiled, on growing inputs
#
# LR inputs of growing side (the astronaut, resized), both endpoints, median of a few runs.

# %%
if SMALL:
    sides = (16, 32, 48)
elif DEVICE == "cuda":
    sides = (64, 128, 256, 512)
else:
    sides = (32, 64, 96, 128)
rows = []
for side in sides:
    lr = photo_lr(side).to(DEVICE)
    row = {"LR side": side, "output side": side * model.scale}
    for tile in (False, True):
        row[f"{'tiled' if tile else 'untiled'} (s)"] = median_time(lambda: model.infer(lr, tile=tile),
                                                                   1 if SMALL else 3, device=DEVICE)
    rows.append(row)
timing = pd.DataFrame(rows).set_index("LR side")
timing["untiled / tiled"] = timing["untiled (s)"] / timing["tiled (s)"]
print(timing.round(3).to_string())

# %% [markdown]
# Below one tile (`latent_tile` latent pixels) both calls do the same work. Above it the
# untiled UNet runs self-attention over the whole low-resolution latent, and attention
# costs grow with the *square* of the number of positions; tiles keep each attention
# small, so their total grows only linearly with the area (plus the overlap, about
# 10-30% extra work). On a CPU the quadratic term wins early: tiling pays off from a few
# hundred output pixels on a side. On a GPU with memory to spare, attention kernels are
# fast and one big pass uses the hardware better than many small ones, so untiled stays
# quicker up to large images: there tiling is for *memory* (exercise 2), not speed.
# In small mode the inputs are tiny and the ratios are near 1: run full mode to see the
# crossover.

# %% [markdown]
# ## 2. Peak GPU memory, tiled and untiled

# %%
if DEVICE == "cuda":
    lr = photo_lr(128 if SMALL else 512).to(DEVICE)
    mem = {}
    for tile in (False, True):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model.infer(lr, tile=tile)
        torch.cuda.synchronize()
        mem["tiled" if tile else "untiled"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"{GPU}, LR {tuple(lr.shape[-2:])}: peak GPU memory (MB) {pd.Series(mem).round(1).to_dict()}")
else:
    print("No GPU here: nothing to measure. On a GPU this cell reports "
          "torch.cuda.max_memory_allocated() after one untiled and one tiled inference of the same "
          "input. (On a CPU, `ifcsr bench --parts d` measures the peak RSS of tiled and untiled "
          "inference, each in a fresh process.)")

# %% [markdown]
# Untiled, the peak memory grows with the image (the activations of the whole latent, and
# the attention matrix, quadratic in positions, unless the attention kernel is a
# memory-efficient one). Tiled, the peak is set by one tile plus the output buffers, so it
# stays nearly flat as the image grows: that is what lets a 4K output run on a small GPU.

# %% [markdown]
# ## 3. SD 2.1 in float16 and float32
#
# With the SD 2.1-base weights (`IFCSR_SD21`) we load the real backbone; without them, on a
# GPU, we build the same architecture with random weights (`ifcsr.evaluation.bench_sd.sd21_base_model`):
# speed and memory do not depend on the weights' values, image quality does, so only speed
# and memory are reported. Without a GPU nothing is run: SD 2.1 on a CPU takes minutes per
# image in float32 and float16 matrix kernels on CPUs are slow or missing.

# %%
if DEVICE == "cuda":
    lr = photo_lr(128).to(DEVICE)  # 512x512 output, the paper's training size
    rows = []
    for dtype in (torch.float16, torch.float32):
        try:
            sd = IFCSR.from_backbone(SD21, device=DEVICE, dtype=dtype)
            weights = f"SD 2.1-base weights from {SD21}"
        except (BackboneNotFoundError, FileNotFoundError) as err:
            print(f"SD 2.1 weights not available ({type(err).__name__}); using its architecture with random weights")
            sd = sd21_base_model(DEVICE, dtype)
            weights = "SD 2.1-base architecture, random weights"
        torch.cuda.reset_peak_memory_stats()
        seconds = median_time(lambda: sd.infer(lr, tile=False), 5, warmup=2, device=DEVICE)
        rows.append({"dtype": str(dtype).replace("torch.", ""), "both endpoints (s)": seconds,
                     "peak GPU memory (GB)": torch.cuda.max_memory_allocated() / 2**30, "weights": weights})
        del sd
        torch.cuda.empty_cache()
    print(pd.DataFrame(rows).set_index("dtype").round(3).to_string())
else:
    print("No GPU here: nothing to measure. On a GPU this cell loads SD 2.1-base (or its architecture "
          "with random weights when the weights are missing) in float16 and in float32 and reports, "
          "for one 128x128 -> 512x512 inference of both endpoints, the median time and the peak GPU memory.")

# %% [markdown]
# What to expect on a GPU: float16 halves the weights (the UNet's 865M parameters take
# 1.7 GB instead of 3.5 GB) and the activations, so the peak memory roughly halves; tensor
# cores run float16 matrix products several times faster than float32, so the inference
# is typically 2-4x quicker. The endpoints differ from the float32 ones by a fraction of a
# grey level, far below what the slider changes. The VAE decoder of SD 2.1 is the one part
# known to overflow in float16 at some sizes (NaNs): if you see black images, decode in
# float32.
