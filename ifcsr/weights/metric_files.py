"""The weight files of the metrics (pyiqa's, torchvision's, CLIP's, timm's, ifcsr's HED): where
each is cached, whether it is there, and whether a download could work now; and the offline NIQE
model. Never downloads. Imports torch (for its hub folder), ifcsr.errors and ifcsr.weights only.

The caches are listed in ``ifcsr.evaluation.metrics``'s docstring; ``ifcsr fetch-weights``
fills them on a connected machine.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from ifcsr.errors import InputError
from ifcsr.weights.download import offline_flag

PYIQA_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{}"


def pyiqa_cache_dir() -> Path:
    """pyiqa's weight cache: ``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``.

    pyiqa computes it once at import as ``os.path.join(torch.hub.get_dir(), "pyiqa")``; use
    pyiqa's value once it is imported, else compute it the same way (importing pyiqa just to
    ask would cost seconds).
    """
    mod = sys.modules.get("pyiqa.utils.download_util")
    if mod is not None:
        return Path(mod.DEFAULT_CACHE_DIR)
    return Path(torch.hub.get_dir()) / "pyiqa"


def _hf_hub_cache_dir() -> Path:
    from ifcsr.weights.cache import hf_hub_cache_dir

    return hf_hub_cache_dir()


@dataclass(frozen=True)
class WeightFile:
    """One file a metric needs, and the cache it is looked up in.

    store: "pyiqa" (pyiqa_cache_dir()), "torchvision" (<hub>/checkpoints), "clip" (<hub>/clip),
    "hf" (Hugging Face hub cache, ``repo_id``; any of ``filename`` or ``alt`` will do),
    "ifcsr-hed" (``ifcsr.weights.hed.hed_cache_path()``).
    """

    filename: str
    store: str
    url: str
    repo_id: str | None = None
    alt: tuple[str, ...] = ()

    def directory(self) -> Path:
        hub = Path(torch.hub.get_dir())
        if self.store == "pyiqa":
            return pyiqa_cache_dir()
        if self.store == "torchvision":
            return hub / "checkpoints"
        if self.store == "clip":
            return hub / "clip"
        if self.store == "ifcsr-hed":
            return hub / "ifcsr"
        if self.store == "hf":
            return _hf_hub_cache_dir() / ("models--" + str(self.repo_id).replace("/", "--"))
        raise InputError(f"unknown weight store {self.store!r}")

    def locate(self) -> Path | None:
        """The cached file, or None. Never downloads."""
        if self.store == "hf":
            snapshots = self.directory() / "snapshots"
            for name in (self.filename, *self.alt):
                hits = sorted(snapshots.glob(f"*/{name}")) if snapshots.is_dir() else []
                if hits:
                    return hits[0]
            return None
        if self.store == "ifcsr-hed":
            from ifcsr.weights.hed import hed_cache_path

            path = hed_cache_path()
        else:
            path = self.directory() / self.filename
        return path if path.is_file() else None

    def describe(self) -> str:
        where = {
            "pyiqa": "the pyiqa cache",
            "torchvision": "torchvision's checkpoint cache",
            "clip": "the CLIP cache",
            "hf": "the Hugging Face hub cache",
            "ifcsr-hed": "ifcsr's HED cache",
        }[self.store]
        name = self.repo_id if self.store == "hf" else self.filename
        return f"{name} not in {where} ({self.directory()})"


def pyiqa_file(name: str) -> WeightFile:
    return WeightFile(name, "pyiqa", PYIQA_URL.format(name))


def torchvision_file(url: str) -> WeightFile:
    return WeightFile(url.rsplit("/", 1)[-1], "torchvision", url)


ALEXNET = torchvision_file("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
VGG16 = torchvision_file("https://download.pytorch.org/models/vgg16-397923af.pth")
NIQE_MAT = pyiqa_file("niqe_modelparameters.mat")


@functools.lru_cache(maxsize=None)
def host_reachable(host: str, timeout: float = 1.5) -> bool:
    # One cheap TCP connect per host and process; a DNS failure returns at once.
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def no_network_reason(files) -> str | None:
    """Why ``files`` cannot be downloaded now, or None when they can."""
    flag = offline_flag()
    if flag:
        return flag
    down = sorted({urlparse(f.url).hostname for f in files if not host_reachable(urlparse(f.url).hostname)})
    return f"{', '.join(down)} unreachable" if down else None


NIQE_ASSET = Path(__file__).resolve().parents[1] / "assets" / "niqe_pris_params.npz"


def niqe_params_path() -> tuple[Path | None, str]:
    """Where an offline NIQE pristine model is, and where it came from; (None, why) if none.

    Looked up in order: ``$IFCSR_NIQE_PARAMS`` (a .npz with mu_pris_param/cov_pris_param or a
    .mat with mu_prisparam/cov_prisparam), ``ifcsr/assets/niqe_pris_params.npz`` (shipped),
    and an installed ``basicsr`` (``basicsr/metrics/niqe_pris_params.npz``, found without
    importing basicsr). pyiqa's own ``niqe_modelparameters.mat`` is preferred over all of
    these by the ``niqe`` metric when it is cached.
    """
    env = os.environ.get("IFCSR_NIQE_PARAMS")
    if env:
        p = Path(env)
        if not p.is_file():
            return None, f"IFCSR_NIQE_PARAMS={env} is not a file"
        return p, "IFCSR_NIQE_PARAMS"
    if NIQE_ASSET.is_file():
        return NIQE_ASSET, "shipped with ifcsr"
    spec = importlib.util.find_spec("basicsr")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "metrics" / "niqe_pris_params.npz"
            if p.is_file():
                return p, "installed basicsr"
    return None, f"no NIQE pristine parameters ({NIQE_ASSET.name} not in {NIQE_ASSET.parent})"
