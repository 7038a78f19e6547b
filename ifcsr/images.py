"""Image conversion at the edges of the library.

Public image tensors are float in [0, 1], shape (B, 3, H, W). PIL images, numpy arrays
(uint8 or float HWC) and tensors of shape (3, H, W) are accepted where a user hands an
image in; everything is validated and never silently "fixed" (diffusers' philosophy:
concise errors over silent correction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class ImageError(ValueError):
    """An image that cannot be used: wrong mode, shape, range, NaN, unreadable file."""


def to_tensor(image, *, name: str = "image") -> torch.Tensor:
    """Convert a PIL image, numpy array or tensor to a float tensor (B, 3, H, W) in [0, 1].

    numpy/PIL inputs are HWC (uint8 in [0, 255] or float in [0, 1]); tensors are
    (3, H, W) or (B, 3, H, W) float in [0, 1]. Grey, RGBA and palette images are refused
    with a message saying how to convert them, rather than converted behind your back.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL ships with torchvision/matplotlib
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ImageError(
                f"{name}: PIL image has mode {image.mode!r}; expected 'RGB' "
                f"(convert explicitly with image.convert('RGB'))"
            )
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"{name}: numpy image must be HxWx3 (RGB), got shape {image.shape}")
        if image.dtype == np.uint8:
            t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        elif np.issubdtype(image.dtype, np.floating):
            t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        else:
            raise ImageError(f"{name}: numpy image dtype {image.dtype} unsupported; use uint8 or float")
        image = t
    if not isinstance(image, torch.Tensor):
        raise ImageError(f"{name}: expected a torch.Tensor, numpy array or PIL image, got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ImageError(f"{name}: expected shape (B, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ImageError(f"{name}: tensor dtype {image.dtype} unsupported; use float in [0, 1]")
    check_range(image, name=name)
    return image


def check_range(x: torch.Tensor, *, name: str = "image", eps: float = 1e-4) -> None:
    """Raise ImageError when ``x`` holds NaN/inf or values outside [0, 1]."""
    if not torch.isfinite(x).all():
        raise ImageError(f"{name}: contains NaN or infinite values")
    if x.numel() and (x.min() < -eps or x.max() > 1 + eps):
        raise ImageError(
            f"{name}: values must be in [0, 1], got [{x.min().item():.3f}, {x.max().item():.3f}]"
            " (uint8 images should be passed as numpy/PIL, or divided by 255)"
        )


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float tensor in [0, 1] -> HxWx3 uint8 array."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ImageError(f"to_uint8 takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    return (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def load_image(path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array; a clear error for anything else."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()  # force decoding now: truncated files fail here, not later
            if im.mode in ("L", "LA", "P", "RGBA", "I;16", "I", "F", "CMYK", "1"):
                # A file on disk is a user's photo, not an API argument: converting its
                # storage mode is reading it, not "fixing" it.
                im = im.convert("RGB")
            if im.mode != "RGB":
                raise ImageError(f"{path}: unsupported image mode {im.mode!r}")
            return np.asarray(im).copy()
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it)") from err
    except OSError as err:
        raise ImageError(f"{path}: unreadable or truncated image ({err})") from err


def save_image(x, path) -> Path:
    """Save a [0, 1] tensor (3, H, W)/(1, 3, H, W) or an HxWx3 uint8 array as PNG/JPEG."""
    from PIL import Image

    arr = to_uint8(x) if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise ImageError(f"save_image: expected HxWx3 uint8, got {arr.dtype} {arr.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path
