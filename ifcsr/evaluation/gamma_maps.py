"""Per-pixel gamma maps for sweeps: the built-in ones (ramps, a centred disk) and maps read from
greyscale images or .npy files. Imports numpy, torch, PIL, ifcsr.errors and ifcsr.data.images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ifcsr.data.images import ImageError
from ifcsr.errors import InputError, MissingFileError
from ifcsr.evaluation.names import BUILTIN_MAPS


@dataclass
class GammaMap:
    """A per-pixel gamma map in [0, 1], stretched (bilinear) to each image's size."""
    name: str
    values: torch.Tensor  # (h, w) float in [0, 1]

    def __post_init__(self):
        v = torch.as_tensor(self.values, dtype=torch.float32)
        if v.ndim != 2 or min(v.shape) < 1:
            raise InputError(f"gamma map {self.name!r} must be 2-D (h, w), got shape {tuple(v.shape)}")
        if not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1:
            raise InputError(f"gamma map {self.name!r} must hold finite values in [0, 1]")
        self.values = v

    def resized(self, H: int, W: int) -> torch.Tensor:
        """(1, 1, H, W). Bilinear interpolation keeps values inside [0, 1]."""
        v = self.values[None, None]
        if v.shape[-2:] == (H, W):
            return v
        return torch.nn.functional.interpolate(v, size=(H, W), mode="bilinear", align_corners=True).clamp(0, 1)




def builtin_gamma_map(name: str, size: int = 256) -> GammaMap:
    """"ramp": gamma 0 at the left edge to 1 at the right; "ramp-y": top to bottom;
    "center": 1 in the centre falling to 0 at the corners (realism where the subject is)."""
    t = torch.linspace(0, 1, size)
    if name == "ramp":
        v = t[None, :].expand(size, size)
    elif name == "ramp-y":
        v = t[:, None].expand(size, size)
    elif name == "center":
        yy, xx = torch.meshgrid(t * 2 - 1, t * 2 - 1, indexing="ij")
        v = (1 - (xx**2 + yy**2).sqrt() / math.sqrt(2)).clamp(0, 1)
    else:
        raise InputError(f"unknown built-in gamma map {name!r}; choose one of {BUILTIN_MAPS} or give an image file")
    return GammaMap(name, v.contiguous())


def load_gamma_map(source) -> GammaMap:
    """A gamma map from a built-in name, a greyscale image (8- or 16-bit; 0 -> gamma 0,
    white -> gamma 1), an RGB image whose three channels are equal, or a .npy of floats in [0, 1]."""
    if isinstance(source, GammaMap):
        return source
    if isinstance(source, str) and source in BUILTIN_MAPS:
        return builtin_gamma_map(source)
    path = Path(source)
    if not path.is_file():
        raise MissingFileError(f"gamma map {source}: no such file (built-in maps: {', '.join(BUILTIN_MAPS)})")
    if path.suffix.lower() == ".npy":
        arr = np.load(path).astype(np.float32)
        return GammaMap(path.stem, torch.from_numpy(arr))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"gamma map {path}: unreadable image ({err})") from err
    if mode == "L":
        v = arr.astype(np.float32) / 255.0
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        v = arr.astype(np.float32) / 65535.0
    elif mode == "RGB":
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise ImageError(f"gamma map {path}: an RGB image with different channels; save it as greyscale")
        v = arr[..., 0].astype(np.float32) / 255.0
    else:
        raise ImageError(f"gamma map {path}: image mode {mode!r}; save it as 8- or 16-bit greyscale")
    return GammaMap(path.stem, torch.from_numpy(np.ascontiguousarray(v)))
