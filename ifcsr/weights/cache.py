"""Where every cache lives: one function per cache, all decided here.
Imports the standard library only (the command line reads it without loading torch).

| cache | path | override |
|---|---|---|
| ifcsr's own (endpoints, data sets, prompt embeddings) | ``$XDG_CACHE_HOME/ifcsr`` (``~/.cache/ifcsr``) | ``IFCSR_CACHE`` |
| torch hub: VGG/AlexNet checkpoints, pyiqa weights, HED and Real-ESRGAN files | ``$XDG_CACHE_HOME/torch/hub`` | ``TORCH_HOME`` (then ``$TORCH_HOME/hub``) |
| Hugging Face hub (SD 2.1-base, timm backbones) | ``$XDG_CACHE_HOME/huggingface/hub`` | ``HF_HUB_CACHE``, or ``HF_HOME`` (then ``$HF_HOME/hub``) |

The torch and Hugging Face rules are those libraries' own (``torch.hub.get_dir`` and
``huggingface_hub.constants``), repeated here so that messages name the folder they really use.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


def ifcsr_cache_dir(*parts: str) -> Path:
    """ifcsr's own cache: ``$IFCSR_CACHE``, else ``$XDG_CACHE_HOME/ifcsr``, else ``~/.cache/ifcsr``."""
    root = os.environ.get("IFCSR_CACHE")
    base = Path(root).expanduser() if root else _xdg_cache_home() / "ifcsr"
    return base.joinpath(*parts)


def torch_hub_dir(*parts: str) -> Path:
    """torch.hub's folder, by torch's own rule: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``.

    (``torch.hub.set_dir`` overrides it inside a process; when torch is already imported we ask it.)"""
    import sys

    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir()).joinpath(*parts)
    home = os.environ.get("TORCH_HOME")
    base = Path(home).expanduser() if home else _xdg_cache_home() / "torch"
    return (base / "hub").joinpath(*parts)


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub computes it: ``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    base = Path(home).expanduser() if home else _xdg_cache_home() / "huggingface"
    return base / "hub"
