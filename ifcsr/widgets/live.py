"""What the explorer computes on each move, in numpy: uint8/float conversions, live PSNR(Y) and
SSIM(Y) against HR, and gamma-map masks (disk, face, texture). Imports numpy, ifcsr.errors, ifcsr.data.images."""

from __future__ import annotations

import io
import math

import numpy as np

from ifcsr.errors import InputError

# BT.601 studio-swing luma from RGB in [0, 1], as ifcsr.evaluation.ymetrics.psnr_y / ssim_y (pyiqa's rgb2ycbcr).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32) / 255.0
_Y_BIAS = 16.0 / 255.0
# SSIM window of ifcsr.evaluation.ymetrics.ssim_y: separable 11-tap Gaussian, sigma 1.5, 'valid' filtering.
_G = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_G = (_G / _G.sum()).astype(np.float32)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

CURVE_COLUMNS = ("method", "gamma", "gamma_map", "n_images")  # non-metric columns of a sweep summary


# ----------------------------------------------------------------------------- conversions


def as_uint8(image, *, name: str = "image") -> np.ndarray:
    """One image as an HxWx3 uint8 array: a (3, H, W) / (1, 3, H, W) tensor in [0, 1], an HxWx3
    uint8 or float [0, 1] array, or an RGB PIL image."""
    from ifcsr.data.images import ImageError, to_tensor, to_uint8

    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"{name}: expected an HxWx3 image, got shape {image.shape}")
        return np.ascontiguousarray(image)
    t = to_tensor(image, name=name)
    if t.shape[0] != 1:
        raise ImageError(f"{name}: the explorer shows one image, got a batch of {t.shape[0]}")
    return to_uint8(t)


def as_float(image, *, name: str = "image") -> np.ndarray:
    """One image as an HxWx3 float32 array in [0, 1], keeping a float tensor's full precision."""
    from ifcsr.data.images import to_tensor

    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    t = to_tensor(image, name=name)
    return np.ascontiguousarray(t[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())


def encode_image(arr: np.ndarray, fmt: str = "jpeg", *, quality: int = 90) -> bytes:
    """HxWx3 (or HxW) uint8 -> JPEG or PNG bytes for a widgets.Image."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(arr)
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=quality)
    elif fmt == "png":
        im.save(buf, "PNG", compress_level=1)  # level 1: fast; the live view is not an archive
    else:
        raise InputError(f"image format must be 'jpeg' or 'png', got {fmt!r}")
    return buf.getvalue()


def y_channel(x: np.ndarray) -> np.ndarray:
    """HxWx3 float RGB in [0, 1] -> HxW float32 luma in [0, 1] (BT.601, as psnr_y)."""
    return (x.reshape(-1, 3).astype(np.float32) @ _Y_WEIGHTS + _Y_BIAS).reshape(x.shape[:2])


# ----------------------------------------------------------------------------- live metrics


def _blur_valid(a: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian, 'valid' region: (H, W) -> (H - 10, W - 10), float32.

    A sliding-window view times the 11 taps is a matrix-vector product per axis: about twice
    as fast as scipy.ndimage.correlate1d here, and it computes only the valid region."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = sliding_window_view(a, 11, axis=0) @ _G  # (H - 10, W)
    return sliding_window_view(a, 11, axis=1) @ _G  # (H - 10, W - 10)


class LiveMetrics:
    """PSNR(Y) and SSIM(Y) of blends against HR, cheap enough for every slider move.

    Values equal ``ifcsr.evaluation.ymetrics.psnr_y`` / ``ssim_y`` of the float blend (tested to 1e-3 dB
    and 1e-4): Y of a blend is the blend of the endpoints' Y, so only a (H, W) plane is
    blended per move; HR's SSIM terms are computed once; the blurs are float32 separable
    filters on values centred at 128 (variances then lose no precision to cancellation);
    the rest works in preallocated buffers.
    """

    def __init__(self, fidelity: np.ndarray, realism: np.ndarray, hr: np.ndarray):
        if not (fidelity.shape == realism.shape == hr.shape):
            raise InputError(f"fidelity {fidelity.shape}, realism {realism.shape} and hr {hr.shape} differ in size")
        if min(hr.shape[:2]) < 11:
            raise InputError(f"SSIM needs at least 11x11 pixels, got {hr.shape[:2]}")
        self.y_fid = y_channel(fidelity)
        self.y_diff = y_channel(realism) - self.y_fid  # Y(realism) - Y(fidelity)
        self.y_hr = y_channel(hr)
        # ssim_y rounds Y to 0..255 integers (as MATLAB's uint8); centred at 128 here
        self._yh = (np.rint(self.y_hr * 255.0) - 128.0).astype(np.float32)
        mu2 = _blur_valid(self._yh)
        self._mu2c = mu2                                        # centred mean of HR
        self._s22c2 = _blur_valid(self._yh * self._yh) - mu2 * mu2 + _C2   # sigma_2^2 + C2
        mu2 = mu2 + 128.0
        self._2mu2 = 2 * mu2
        self._mu2sq_c1 = mu2 * mu2 + _C1
        H, W = self.y_hr.shape
        self._y = np.empty((H, W), np.float32)
        self._x = np.empty((H, W), np.float32)
        self._p = np.empty((H, W), np.float32)
        self._a = np.empty((H - 10, W - 10), np.float32)
        self._b = np.empty((H - 10, W - 10), np.float32)

    def y(self, gamma) -> np.ndarray:
        """Y of the blend: a scalar gamma or an (H, W) map."""
        np.multiply(self.y_diff, gamma, out=self._y)
        self._y += self.y_fid
        return self._y

    def __call__(self, gamma) -> dict:
        y = self.y(gamma)
        np.subtract(y, self.y_hr, out=self._p)
        mse = float(np.vdot(self._p.ravel(), self._p.ravel())) / y.size
        psnr = 10 * math.log10(1.0 / (mse + 1e-8))
        x, p, a, b = self._x, self._p, self._a, self._b
        np.clip(y, 0, 1, out=x)
        x *= 255.0
        np.rint(x, out=x)
        x -= 128.0
        mu1 = _blur_valid(x)                          # centred
        np.multiply(x, x, out=p)
        s11 = _blur_valid(p)
        np.multiply(x, self._yh, out=p)
        s12 = _blur_valid(p)
        np.multiply(mu1, mu1, out=a)
        s11 -= a                                      # sigma_1^2
        np.multiply(mu1, self._mu2c, out=a)
        s12 -= a                                      # sigma_12
        s12 *= 2
        s12 += _C2                                    # 2 sigma_12 + C2
        s11 += self._s22c2                            # sigma_1^2 + sigma_2^2 + C2
        np.divide(s12, s11, out=s12)
        np.maximum(s12, 0, out=s12)                   # pyiqa's relu on the contrast-structure term
        mu1 += 128.0
        np.multiply(mu1, self._2mu2, out=a)
        a += _C1                                      # 2 mu1 mu2 + C1
        np.multiply(mu1, mu1, out=b)
        b += self._mu2sq_c1                           # mu1^2 + mu2^2 + C1
        np.divide(a, b, out=a)
        ssim = float(np.vdot(a.ravel(), s12.ravel())) / a.size
        return {"psnr": psnr, "ssim": ssim}


# ----------------------------------------------------------------------------- gamma maps


def disk(shape, center, radius: float, *, feather: float = 0.3) -> np.ndarray:
    """A soft disk in [0, 1] of shape (H, W): 1 inside radius * (1 - feather), 0 outside radius."""
    H, W = shape
    cy, cx = center
    yy, xx = np.ogrid[:H, :W]
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2, dtype=np.float32)
    inner = radius * (1 - feather)
    return np.clip((radius - d) / max(radius - inner, 1e-6), 0, 1).astype(np.float32)


def gamma_from_mask(mask: np.ndarray, gamma_inside: float, gamma_outside: float) -> np.ndarray:
    """Per-pixel gamma: gamma_inside where mask = 1, gamma_outside where mask = 0, linear between."""
    m = np.asarray(mask, dtype=np.float32)
    return gamma_outside + (gamma_inside - gamma_outside) * m


def face_mask(image, *, grow: float = 1.4, feather: float = 0.35, min_relative_size: float = 0.5) -> np.ndarray:
    """(H, W) soft mask over the faces that scikit-image's LBP frontal-face cascade finds
    (its trained file ships inside scikit-image: no download). Detections smaller than
    `min_relative_size` of the largest are dropped (the cascade's small false positives).
    All zeros when no face is found."""
    from skimage import data as skdata
    from skimage.color import rgb2gray
    from skimage.feature import Cascade

    img = as_uint8(image)
    det = Cascade(skdata.lbp_frontal_face_cascade_filename())
    faces = det.detect_multi_scale(img=rgb2gray(img), scale_factor=1.2, step_ratio=1,
                                   min_size=(24, 24), max_size=(img.shape[0], img.shape[1]))
    m = np.zeros(img.shape[:2], np.float32)
    biggest = max((max(f["height"], f["width"]) for f in faces), default=0)
    for f in faces:
        if max(f["height"], f["width"]) < min_relative_size * biggest:
            continue
        c = (f["r"] + f["height"] / 2, f["c"] + f["width"] / 2)
        m = np.maximum(m, disk(m.shape, c, grow * max(f["height"], f["width"]) / 2, feather=feather))
    return m


def texture_mask(image, *, sigma: float = 3.0, quantile: float = 0.6) -> np.ndarray:
    """(H, W) soft mask of textured regions: local energy of the Laplacian, smoothed, scaled so
    that the `quantile` of the image maps to 0.5. Realism on texture, fidelity on flat areas."""
    from scipy.ndimage import gaussian_filter, laplace

    y = y_channel(as_float(image))
    energy = gaussian_filter(np.abs(laplace(y)), sigma)
    ref = float(np.quantile(energy, quantile)) or 1e-6
    return np.clip(energy / (2 * ref), 0, 1).astype(np.float32)


def colorize_map(gamma_map: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """(H, W) gamma in [0, 1] -> HxWx3 uint8 through a matplotlib colour map (for panels)."""
    import matplotlib

    rgba = matplotlib.colormaps[cmap](np.clip(gamma_map, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)
