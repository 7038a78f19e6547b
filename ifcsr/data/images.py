"""Image conversion at the edges of the library.
Imports numpy, torch, PIL and ifcsr.errors only.

Public image tensors are float in [0, 1], shape (B, 3, H, W). PIL images, numpy arrays
(uint8 or float HWC) and tensors of shape (3, H, W) are accepted where a user hands an
image in; everything is validated and never silently "fixed" (diffusers' philosophy:
concise errors over silent correction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ifcsr.errors import InputError


class ImageError(InputError):
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
    if image.shape[0] == 0 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ImageError(f"{name}: empty batch or image, shape {tuple(image.shape)}; pass at least one image")
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


BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, as a viewer on a page shows them


def load_image(path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array, as an image viewer shows it:

    - EXIF orientation is applied (a portrait photo from a phone comes out upright);
    - 16-bit files (greyscale "I;16"/"I") are scaled from [0, 65535] to [0, 255], not clipped;
    - float files (TIFF mode "F") must hold values in [0, 1] and are scaled by 255;
    - transparency (RGBA, LA, palette with a transparent colour) is composited on white
      (`BACKGROUND`); greyscale, palette, CMYK and bilevel files become RGB.
    Anything else is an ImageError naming the file and the problem.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()  # force decoding now: truncated files fail here, not later
            im = ImageOps.exif_transpose(im)
            return _as_rgb8(im, path)
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: too many pixels to read safely ({err}); if the file is genuine, pass "
                         "--force-large to the command (or set PIL.Image.MAX_IMAGE_PIXELS = None)") from None
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it)") from err
    except OSError as err:
        raise ImageError(f"{path}: unreadable or truncated image ({err})") from err


def _as_rgb8(im, path) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"{path}: integer image with values in [{a.min():.0f}, {a.max():.0f}]; "
                             "expected 16-bit values in [0, 65535]")
        grey = np.rint(a / 65535.0 * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        if not np.isfinite(a).all():
            raise ImageError(f"{path}: float image contains NaN or infinite values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ImageError(f"{path}: float image with values in [{a.min():.3g}, {a.max():.3g}]; expected [0, 1] "
                             "(scale it to [0, 1], or save it as an 8- or 16-bit image)")
        grey = np.rint(a * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV") or (mode == "RGB" and "transparency" in im.info):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, im).convert("RGB")
    if im.mode != "RGB":
        raise ImageError(f"{path}: unsupported image mode {mode!r}")
    return np.asarray(im).copy()


def save_image(x, path) -> Path:
    """Save a [0, 1] tensor (3, H, W)/(1, 3, H, W) or an HxWx3 uint8 array as PNG/JPEG."""
    from PIL import Image

    arr = to_uint8(x) if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise ImageError(f"save_image: expected HxWx3 uint8, got {arr.dtype} {arr.shape}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
    except ValueError as err:  # PIL: unknown file extension
        raise ImageError(f"{path}: cannot save an image under this name ({err}); use .png or .jpg") from None
    except OSError as err:
        from ifcsr.errors import OutputError, describe_os_error

        raise OutputError(describe_os_error(err, str(path))) from err
    return path
