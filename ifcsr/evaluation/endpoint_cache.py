"""The endpoint cache: each LR image's two endpoint images, inferred ONCE and kept in memory and on
disk, keyed by a fingerprint of the checkpoint and of the LR image. Imports torch, ifcsr core
(models), ifcsr.weights.cache and ifcsr.errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ifcsr.data.images import ImageError


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


HASH_WEIGHTS_BELOW = 20_000_000  # UNet parameters (LoRA included): hashed one by one below this


def model_fingerprint(model) -> str:
    """sha256 of what decides the endpoints: config, both adapters, dtype and the backbone.

    A small backbone (below HASH_WEIGHTS_BELOW parameters: the tiny one, 1.4M, or a reduced-width
    test model) is hashed weight by weight, in milliseconds; a large one (SD 2.1) by its source,
    revision and variant, since hashing 865M weights per run costs seconds and the hub revision
    already names them. By size, not by `Backbone.is_tiny`: what decides here is the cost.
    """
    from ifcsr.models import ADAPTERS, adapter_state_dict

    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(model.dtype).encode())
    for name in ADAPTERS:
        for k, v in sorted(adapter_state_dict(model.adapter_host, name).items()):
            h.update(k.encode())
            _hash_tensor(h, v)
    if model.kind == "generator":
        # a pretrained generator's base weights are named by their files' sha256 (ifcsr.generator)
        h.update(json.dumps(model.backbone_record(), sort_keys=True).encode())
        return h.hexdigest()
    if sum(p.numel() for p in model.unet.parameters()) < HASH_WEIGHTS_BELOW:
        for module in (model.vae, model.unet):
            for k, v in sorted(module.state_dict().items()):
                if "lora_" not in k:
                    h.update(k.encode())
                    _hash_tensor(h, v)
        h.update(json.dumps(model.vae.config.get("scaling_factor")).encode())
    else:
        m = model.mcfg
        h.update(f"{model.backbone.source}|{m.revision}|{m.variant}".encode())
    _hash_tensor(h, model.prompt_embeds)
    return h.hexdigest()


def image_fingerprint(lr: torch.Tensor) -> str:
    h = hashlib.sha256()
    _hash_tensor(h, lr.float())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``ifcsr.weights.cache.ifcsr_cache_dir("endpoints")``: $IFCSR_CACHE/endpoints, else
    $XDG_CACHE_HOME/ifcsr/endpoints, else ~/.cache/ifcsr/endpoints."""
    from ifcsr.weights.cache import ifcsr_cache_dir

    return ifcsr_cache_dir("endpoints")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:80] or "image"


class EndpointCache:
    """Both endpoint images per LR image, inferred once, kept in memory and on disk.

    Disk layout: ``folder/<model fingerprint[:16]>/<image name>-<LR fingerprint[:12]>.pt``
    holding float32 "fidelity" and "realism" (bit-exact, so a warm run scores exactly what
    a cold run scores), with two PNGs beside it to look at. folder=None keeps memory only.
    ``calls`` counts network inferences (model.infer), ``infer_s`` their time.
    """

    def __init__(self, model, folder=None, *, fingerprint: str | None = None, write_png: bool = True):
        self.model = model
        self.folder = Path(folder) if folder is not None else None
        self.fingerprint = fingerprint or model_fingerprint(model)
        self.write_png = write_png
        self._memory: dict[str, object] = {}
        self.calls = 0
        self.disk_hits = 0
        self.memory_hits = 0
        self.infer_s = 0.0
        self.load_s = 0.0

    def path(self, name: str, lr: torch.Tensor) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / self.fingerprint[:16] / f"{_safe(name)}-{image_fingerprint(lr)[:12]}.pt"

    def _lookup(self, name: str, lr: torch.Tensor):
        """Cached endpoints of one LR image (1, 3, h, w) from memory or disk, else None."""
        from ifcsr.models import Endpoints

        key = f"{name}-{image_fingerprint(lr)}"
        if key in self._memory:
            self.memory_hits += 1
            return self._memory[key]
        path = self.path(name, lr)
        if path is not None and path.is_file():
            t0 = time.perf_counter()
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
                ends = Endpoints(d["fidelity"], d["realism"])
            except Exception as err:  # noqa: BLE001 - a broken cache file is re-inferred, loudly
                warnings.warn(f"endpoint cache {path} unreadable ({err}); inferring again", stacklevel=3)
            else:
                self.load_s += time.perf_counter() - t0
                self.disk_hits += 1
                self._memory[key] = ends
                return ends
        return None

    def _store(self, name: str, lr: torch.Tensor, ends):
        from ifcsr.data.images import save_image
        from ifcsr.models import Endpoints

        ends = Endpoints(ends.fidelity.float().cpu(), ends.realism.float().cpu())
        self._memory[f"{name}-{image_fingerprint(lr)}"] = ends
        path = self.path(name, lr)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".pt.tmp", dir=path.parent)
            os.close(fd)
            torch.save({"fidelity": ends.fidelity, "realism": ends.realism, "name": str(name)}, tmp)
            os.replace(tmp, path)  # atomic: an interrupted sweep never leaves half a file
            if self.write_png:
                save_image(ends.fidelity, path.with_suffix(".fidelity.png"))
                save_image(ends.realism, path.with_suffix(".realism.png"))
        return ends

    def _infer(self, lr: torch.Tensor):
        t0 = time.perf_counter()
        ends = self.model.infer(lr)
        if ends.fidelity.is_cuda:
            torch.cuda.synchronize()
        self.infer_s += time.perf_counter() - t0
        self.calls += 1
        return ends

    def endpoints(self, name: str, lr):
        """Endpoints of one LR image (tensor (3, h, w) / (1, 3, h, w), numpy or PIL)."""
        from ifcsr.data.images import to_tensor

        lr = to_tensor(lr, name=f"lr of {name!r}")
        if lr.shape[0] != 1:
            raise ImageError(f"EndpointCache takes one image at a time, got a batch of {lr.shape[0]}")
        ends = self._lookup(name, lr)
        if ends is None:
            ends = self._store(name, lr, self._infer(lr))
        return ends

    def fill(self, pairs, *, batch_size: int = 4, progress: bool = True) -> int:
        """Infer the endpoints of every pair not cached yet, `batch_size` same-sized LR images
        per network call (one endpoint pair per image; both adapters in one UNet pass).
        pairs: dicts with "name" and "lr". Returns the number of images inferred."""
        from tqdm.auto import tqdm

        from ifcsr.data.images import to_tensor
        from ifcsr.models import Endpoints

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        todo: dict[tuple, list] = {}  # LR shape -> [(name, lr)], so a batch stacks
        for p in pairs:
            lr = to_tensor(p["lr"], name=f"lr of {p['name']!r}")
            if self._lookup(p["name"], lr) is None:
                todo.setdefault(tuple(lr.shape), []).append((p["name"], lr))
        n = sum(len(v) for v in todo.values())
        with tqdm(total=n, desc="endpoints", unit="img", disable=not progress or n == 0) as bar:
            for group in todo.values():
                for i in range(0, len(group), batch_size):
                    chunk = group[i:i + batch_size]
                    ends = self._infer(torch.cat([lr for _, lr in chunk]))
                    for j, (name, lr) in enumerate(chunk):
                        self._store(name, lr, Endpoints(ends.fidelity[j:j + 1], ends.realism[j:j + 1]))
                    bar.update(len(chunk))
        return n
