"""The names the evaluation offers, which the command line lists without importing torch: the
paper's metrics, the built-in gamma maps, the baselines. Imports nothing."""

from __future__ import annotations

PAPER_METRICS = ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa-pipal", "clipiqa", "fid")
BUILTIN_MAPS = ("ramp", "ramp-y", "center")  # ifcsr.evaluation.gamma_maps.builtin_gamma_map
BASELINE_NAMES = ("realesrgan", "single-stage", "k1", "dni")  # ifcsr.evaluation.benchmark
