"""Views for notebooks: the live gamma explorer (ipywidgets) and static matplotlib figures.

Imported only explicitly (``from ifcsr.viz import BlendExplorer``): ``import ifcsr`` pulls in
neither ipywidgets nor matplotlib, and this module imports them lazily too, so its figure
helpers work without ipywidgets and the explorer's arithmetic without a running kernel.

BlendExplorer shows what "inference-free" means (DESIGN 1): the caller infers both endpoint
images ONCE; every slider move then only

  1. blends  x = (1 - gamma) * fidelity + gamma * realism   (ifcsr.blend.blend, uint8 fixed point),
  2. scores PSNR(Y) and SSIM(Y) against HR (``LiveMetrics``: the endpoints' and HR's Y channels
     and HR's SSIM statistics are computed once; Y is linear, so Y(blend) = blend(Y)),
  3. moves a marker on a pre-rendered perception-distortion curve, and
  4. re-encodes the display image (JPEG; PNG costs ~20x more at 512x512).

No network is called per move: the explorer never sees a model, only two images.
``analysis/explorer_latency.py`` times the update handler.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np

from .blend import GammaError, blend
from .errors import InputError

# BT.601 studio-swing luma from RGB in [0, 1], as ifcsr.metrics.psnr_y / ssim_y (pyiqa's rgb2ycbcr).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32) / 255.0
_Y_BIAS = 16.0 / 255.0
# SSIM window of ifcsr.metrics.ssim_y: separable 11-tap Gaussian, sigma 1.5, 'valid' filtering.
_G = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_G = (_G / _G.sum()).astype(np.float32)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

CURVE_COLUMNS = ("method", "gamma", "gamma_map", "n_images")  # non-metric columns of a sweep summary


# ----------------------------------------------------------------------------- conversions


def as_uint8(image, *, name: str = "image") -> np.ndarray:
    """One image as an HxWx3 uint8 array: a (3, H, W) / (1, 3, H, W) tensor in [0, 1], an HxWx3
    uint8 or float [0, 1] array, or an RGB PIL image."""
    from .images import ImageError, to_tensor, to_uint8

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
    from .images import to_tensor

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

    Values equal ``ifcsr.metrics.psnr_y`` / ``ssim_y`` of the float blend (tested to 1e-3 dB
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


# ----------------------------------------------------------------------------- the curve


def curve_points(curve, x: str, y: str, *, method: str = "IFCSR"):
    """(gammas, xs, ys) of the scalar-gamma curve of `method`, sorted by gamma.

    curve: a sweep summary (``ifcsr.sweep.SweepResult.summary``: columns method, gamma,
    gamma_map, metrics...), a tidy frame (columns gamma, metric, value; mean over images), or
    a dict {"gamma": [...], x: [...], y: [...]}.
    """
    import pandas as pd

    if isinstance(curve, dict):
        df = pd.DataFrame(curve)
    else:
        df = curve.copy()
    if "metric" in df.columns and "value" in df.columns:  # tidy
        if "method" in df.columns:
            df = df[df["method"] == method]
        if "gamma_map" in df.columns:
            df = df[df["gamma_map"].fillna("") == ""]
        df = df.pivot_table(index="gamma", columns="metric", values="value", aggfunc="mean").reset_index()
    else:
        if "method" in df.columns:
            df = df[df["method"] == method]
        if "gamma_map" in df.columns:
            df = df[df["gamma_map"].fillna("") == ""]
    for col in ("gamma", x, y):
        if col not in df.columns:
            raise InputError(f"curve has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    df = df.dropna(subset=["gamma", x, y]).sort_values("gamma")
    if len(df) < 2:
        raise InputError(f"curve needs at least 2 gammas with {x} and {y}, got {len(df)}")
    return df["gamma"].to_numpy(float), df[x].to_numpy(float), df[y].to_numpy(float)


def baseline_points(curve, x: str, y: str, *, method: str = "IFCSR") -> dict:
    """{label: (xs, ys)} of every method in a sweep summary other than `method`'s scalar curve:
    one point for bicubic or Real-ESRGAN, a polyline (sorted by gamma) for gamma-swept methods
    (naive blend, k = 1, DNI), one point per gamma map (labelled with the map's name)."""
    if curve is None or isinstance(curve, dict) or "method" not in getattr(curve, "columns", ()):
        return {}
    if "metric" in curve.columns or x not in curve.columns or y not in curve.columns:
        return {}
    df = curve[curve[x].notna() & curve[y].notna()].copy()
    df["gamma_map"] = df["gamma_map"].fillna("") if "gamma_map" in df.columns else ""
    out = {}
    for (m, gm), g in df.groupby(["method", "gamma_map"], sort=False):
        if m == method and gm == "":
            continue
        g = g.sort_values("gamma") if "gamma" in g.columns else g
        label = f"{m} [{gm}]" if gm else str(m)
        out[label] = (g[x].to_numpy(float), g[y].to_numpy(float))
    return out


def _lower_better(name: str) -> bool:
    try:
        from .metrics import REGISTRY

        return REGISTRY[name].lower_better
    except (ImportError, KeyError):
        return True


def _metric_label(name: str) -> str:
    try:
        from .metrics import REGISTRY

        spec = REGISTRY[name]
        arrow = "lower is better" if spec.lower_better else "higher is better"
        return f"{(spec.label or name).split(' (not')[0]} ({arrow})"
    except (ImportError, KeyError):
        return name


class CurvePlot:
    """A perception-distortion curve rendered ONCE with matplotlib (Agg); each move only
    paints a marker into a copy of the pixels and re-encodes a small PNG (no matplotlib redraw,
    which costs tens of milliseconds)."""

    def __init__(self, gammas, xs, ys, *, x: str, y: str, baselines: dict | None = None,
                 size=(360, 270), dpi: int = 90, title: str | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.gammas, self.xs, self.ys = (np.asarray(a, float) for a in (gammas, xs, ys))
        fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(self.xs, self.ys, "-", color="0.35", lw=1.2, zorder=1)
        sc = ax.scatter(self.xs, self.ys, c=self.gammas, cmap="coolwarm", vmin=0, vmax=1, s=12, zorder=2)
        ends = [int(np.argmin(np.abs(self.gammas - g))) for g in (0.0, 1.0)]
        for i, (label, (bx, by)) in enumerate((baselines or {}).items()):
            color = f"C{i % 10}"
            if len(bx) > 1:
                ax.plot(bx, by, "-", lw=0.8, color=color, marker=".", ms=3, zorder=2, label=label)
            else:
                ax.scatter(bx, by, marker="s", s=16, color=color, edgecolor="black", lw=0.4, zorder=3, label=label)
        if baselines:
            ax.legend(fontsize=5, loc="best", framealpha=0.6)
        fig.colorbar(sc, ax=ax, pad=0.02, fraction=0.05).ax.tick_params(labelsize=6)
        ax.set_xlabel(_metric_label(x), fontsize=7)
        ax.set_ylabel(_metric_label(y), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.margins(0.12)
        # Oriented as ifcsr.figures.perception_distortion_figure: better is down and to the left.
        if not _lower_better(x):
            ax.invert_xaxis()
        if not _lower_better(y):
            ax.invert_yaxis()
        if title:
            ax.set_title(title, fontsize=8)
        fig.tight_layout(pad=0.4)
        for i in ends:  # label the endpoints on the inner side, so the text stays in the axes
            fx, _ = (ax.transAxes.inverted().transform(ax.transData.transform((self.xs[i], self.ys[i]))))
            right = fx > 0.5
            ax.annotate(f"gamma {self.gammas[i]:g}", (self.xs[i], self.ys[i]), fontsize=6,
                        xytext=(-4 if right else 4, 4), textcoords="offset points", ha="right" if right else "left")
        canvas.draw()
        self.background = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        self._trans = ax.transData
        self._h = self.background.shape[0]
        self._frame = self.background.copy()
        r = 5
        yy, xx = np.mgrid[-r - 1 : r + 2, -r - 1 : r + 2]
        d = np.sqrt(yy**2 + xx**2)
        self._disk = [(dy, dx) for dy, dx, dd in zip(yy.ravel(), xx.ravel(), d.ravel()) if dd <= r - 1.5]
        self._ring = [(dy, dx) for dy, dx, dd in zip(yy.ravel(), xx.ravel(), d.ravel()) if r - 1.5 < dd <= r + 0.5]
        self.x = x
        self.y = y
        self._png: dict = {}

    def png(self, gamma: float, *, hollow: bool = False) -> bytes:
        """`render` encoded as PNG, cached per gamma rounded to 0.005 (the slider moves in steps
        of 0.01; a map's mean gamma is continuous, and half a percent is under a pixel here)."""
        g = round(float(gamma) * 200) / 200
        key = (g, hollow)
        if key not in self._png:
            if len(self._png) > 512:
                self._png.clear()
            self._png[key] = encode_image(self.render(g, hollow=hollow), "png")
        return self._png[key]

    def point(self, gamma: float) -> tuple[float, float]:
        """The curve at gamma (linear interpolation between swept gammas)."""
        return float(np.interp(gamma, self.gammas, self.xs)), float(np.interp(gamma, self.gammas, self.ys))

    def render(self, gamma: float, *, hollow: bool = False) -> np.ndarray:
        """The curve with a marker at gamma: HxWx3 uint8 (a reused buffer)."""
        px, py = self._trans.transform(self.point(gamma))
        cx, cy = int(round(px)), int(round(self._h - py))
        f = self._frame
        np.copyto(f, self.background)
        H, W = f.shape[:2]
        for pts, color in ((self._ring, (255, 255, 255) if not hollow else (200, 30, 30)),
                           (self._disk, (200, 30, 30) if not hollow else None)):
            if color is None:
                continue
            for dy, dx in pts:
                yy, xx = cy + dy, cx + dx
                if 0 <= yy < H and 0 <= xx < W:
                    f[yy, xx] = color
        return f


# ----------------------------------------------------------------------------- the explorer


class BlendExplorer:
    """Live fidelity-realism explorer: a gamma slider over two endpoint images inferred once.

    >>> ends = model.infer(lr)                                     # the only network call
    >>> BlendExplorer(ends.fidelity, ends.realism, hr=hr, curve=sweep_summary)

    fidelity, realism: the two endpoints, (1, 3, H, W) / (3, H, W) tensors in [0, 1] or HxWx3
        uint8 arrays. hr: optional ground truth of the same size; enables the live PSNR(Y) and
        SSIM(Y) readout.
    curve: optional precomputed sweep (``ifcsr.sweep.sweep(...).summary``, a tidy frame or a
        dict) drawn as a perception-distortion curve with a marker at the current gamma; other
        methods in a sweep summary appear too: squares for single points (bicubic,
        Real-ESRGAN), thin lines for swept ones (DNI, the ablations).
    curve_axes: (x, y) metric names; default: ``ifcsr.sweep.pick_axes``.
    mask: optional (H, W) mask in [0, 1] for the per-pixel mode (e.g. ``face_mask(image)``):
        gamma is "gamma in mask" there and the main gamma elsewhere. The brush paints into it.
    crop: (top, left) of the zoomed view; zoom: its magnification.
    image_format: "jpeg" (default, ~3 ms at 512x512) or "png" (lossless, ~60 ms).

    mode "risk-aware" (``mode_buttons.value = "risk"``): the gamma map is the risk-aware map of
    mean = the slider's gamma (``ifcsr.risk.RiskAwareGamma``), lower where the endpoints disagree
    in structure; the "risk overlay" toggle tints those pixels red (display only). The risk map
    depends only on the endpoints: it is computed once, on first use (``ensure_risk``).

    Each move calls ``update()``: blend, metrics, marker, encode. ``last_timing`` holds the
    milliseconds of each part; the explorer never calls a network.
    """

    def __init__(self, fidelity, realism, hr=None, *, gamma: float = 0.5, curve=None, curve_axes=None,
                 curve_method: str = "IFCSR", mask=None, gamma_in_mask: float = 0.0, crop=None, zoom: int = 4,
                 crop_view: int = 256, image_format: str = "jpeg", quality: int = 90, save_dir=".",
                 name: str = "ifcsr", live_metrics_max_pixels: int = 1536 * 1536, display_width: int | None = None):
        import ipywidgets as widgets

        self.fid = as_uint8(fidelity, name="fidelity")
        self.real = as_uint8(realism, name="realism")
        if self.fid.shape != self.real.shape:
            raise InputError(f"fidelity {self.fid.shape} and realism {self.real.shape} differ in size")
        H, W = self.fid.shape[:2]
        self.shape = (H, W)
        if not 0 <= gamma <= 1 or not 0 <= gamma_in_mask <= 1:
            raise GammaError(f"gamma and gamma_in_mask must be in [0, 1], got {gamma}, {gamma_in_mask}")
        if image_format not in ("jpeg", "png"):
            raise InputError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
        self.image_format, self.quality = image_format, quality
        self.save_dir, self.name = Path(save_dir), name
        self.zoom, self.crop_view = int(zoom), int(crop_view)

        # Buffers reused by every move (no allocation of image-sized arrays per move).
        self._out = np.empty_like(self.fid)
        self._f16 = self.fid.astype(np.uint16)
        self._r16 = self.real.astype(np.uint16)
        self._w = np.empty((H, W, 1), np.uint16)
        self._t1 = np.empty((H, W, 3), np.uint16)
        self._t2 = np.empty((H, W, 3), np.uint16)
        self._gmap = np.empty((H, W), np.float32)
        self._gtmp = np.empty((H, W), np.float32)
        self._risk = None  # the ghosting-risk map, computed once on first use (ensure_risk)

        self.metrics = None
        self.metrics_note = ""
        if hr is not None:
            hr_u8 = as_uint8(hr, name="hr")
            if hr_u8.shape != self.fid.shape:
                raise InputError(f"hr {hr_u8.shape} and the endpoints {self.fid.shape} differ in size")
            if H * W <= live_metrics_max_pixels:
                self.metrics = LiveMetrics(as_float(fidelity, name="fidelity"), as_float(realism, name="realism"),
                                           as_float(hr, name="hr"))
            else:
                self.metrics_note = (f"no live metrics above {live_metrics_max_pixels} pixels; "
                                     "score the saved image with ifcsr.metrics")

        self.base_mask = np.zeros((H, W), np.float32) if mask is None else self._check_mask(mask)
        self.mask = self.base_mask.copy()

        self.curve = None
        if curve is not None:
            if curve_axes is None:
                curve_axes = self._pick_axes(curve, curve_method)
            cx, cy = curve_axes
            g, xs, ys = curve_points(curve, cx, cy, method=curve_method)
            self.curve = CurvePlot(g, xs, ys, x=cx, y=cy, baselines=baseline_points(curve, cx, cy, method=curve_method))

        # ---- widgets
        s = self.crop_side
        top, left = crop if crop is not None else ((H - s) // 2, (W - s) // 2)
        cont = dict(continuous_update=True, style={"description_width": "initial"})
        self.gamma_slider = widgets.FloatSlider(value=gamma, min=0, max=1, step=0.01, description="gamma",
                                                readout_format=".2f", layout={"width": "420px"}, **cont)
        self.mode_buttons = widgets.ToggleButtons(
            options=[("one gamma", "scalar"), ("gamma map", "map"), ("risk-aware", "risk")],
            value="scalar", description="mode",
            tooltips=["one gamma everywhere", "gamma in the mask, the main gamma elsewhere",
                      "a map of mean gamma that stays lower where the endpoints disagree in structure "
                      "(ghosting risk, ifcsr.risk)"])
        self.risk_toggle = widgets.ToggleButton(value=False, description="risk overlay", icon="exclamation-triangle",
                                                tooltip="tint where the endpoints disagree in structure "
                                                        "(ghosting risk: computed once from the two endpoints)")
        self.mask_slider = widgets.FloatSlider(value=gamma_in_mask, min=0, max=1, step=0.01,
                                               description="gamma in mask", readout_format=".2f", **cont)
        self.crop_top = widgets.IntSlider(value=min(max(top, 0), H - s), min=0, max=max(H - s, 0),
                                          description="crop top", **cont)
        self.crop_left = widgets.IntSlider(value=min(max(left, 0), W - s), min=0, max=max(W - s, 0),
                                           description="crop left", **cont)
        self.zoom_dropdown = widgets.Dropdown(options=[2, 4, 8], value=self.zoom if self.zoom in (2, 4, 8) else 4,
                                              description="zoom", layout={"width": "140px"})
        self.brush_radius = widgets.IntSlider(value=max(8, min(H, W) // 10), min=2, max=max(4, min(H, W) // 2),
                                              description="brush radius", **cont)
        self.paint_button = widgets.Button(description="paint mask at crop", icon="paint-brush")
        self.erase_button = widgets.Button(description="erase at crop", icon="eraser")
        self.clear_button = widgets.Button(description="reset mask", icon="undo")
        self.save_button = widgets.Button(description="save image", icon="save", button_style="primary")
        self.save_status = widgets.HTML()
        width = display_width or max(min(W, 640), 384)  # small images are shown enlarged
        self.image = widgets.Image(format=image_format, layout={"width": f"{width}px"})
        self.image.add_class("ifcsr-explorer-image")
        self.crop_image = widgets.Image(format="png", layout={"width": f"{self.crop_view}px"})
        self.crop_image.add_class("ifcsr-explorer-crop")
        self.map_image = widgets.Image(format="png", layout={"width": "160px"})
        self.curve_image = widgets.Image(format="png")
        self.readout = widgets.HTML()
        self.readout.add_class("ifcsr-readout")

        for w in (self.gamma_slider, self.mask_slider, self.crop_top, self.crop_left, self.zoom_dropdown,
                  self.mode_buttons, self.risk_toggle):
            w.observe(self._on_change, names="value")
        self.paint_button.on_click(lambda _: self.paint(+1))
        self.erase_button.on_click(lambda _: self.paint(-1))
        self.clear_button.on_click(lambda _: self.reset_mask())
        self.save_button.on_click(lambda _: self.save())

        self.map_controls = widgets.VBox([
            self.mask_slider, self.brush_radius,
            widgets.HBox([self.paint_button, self.erase_button, self.clear_button]),
            widgets.HTML("<small>white = mask (gamma in mask), black = main gamma; the brush "
                         "paints a soft disk at the centre of the zoomed crop</small>"), self.map_image])
        side = [widgets.HTML("<b>zoomed crop</b>"), self.crop_image,
                widgets.HBox([self.crop_top]), widgets.HBox([self.crop_left, self.zoom_dropdown])]
        if self.curve is not None:
            side += [widgets.HTML("<b>perception-distortion curve</b>"), self.curve_image]
        self.widget = widgets.VBox([
            widgets.HBox([self.gamma_slider, self.mode_buttons, self.risk_toggle]),
            self.readout,
            widgets.HBox([self.image, widgets.VBox(side)], layout={"align_items": "flex-start"}),
            self.map_controls,
            widgets.HBox([self.save_button, self.save_status]),
        ])
        self.widget.add_class("ifcsr-explorer")
        self.last_timing: dict = {}
        self.moves = 0
        self._sync_mode()
        self._render_map()
        self.update()

    # ------------------------------------------------------------------ helpers
    @property
    def crop_side(self) -> int:
        """Side of the zoomed crop in image pixels."""
        return max(4, min(self.crop_view // self.zoom, *self.shape))

    def _check_mask(self, mask) -> np.ndarray:
        m = np.asarray(mask, dtype=np.float32)
        if m.shape != self.shape:
            raise InputError(f"mask of shape {m.shape} does not match the image size {self.shape}")
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise InputError("mask must hold finite values in [0, 1]")
        return m.copy()

    @staticmethod
    def _pick_axes(curve, method):
        try:
            from .sweep import pick_axes

            if not isinstance(curve, dict) and "metric" not in getattr(curve, "columns", ()):
                return pick_axes(curve[curve["method"] == method] if "method" in curve.columns else curve)
        except ImportError:
            pass
        cols = [c for c in (curve.keys() if isinstance(curve, dict) else curve.columns) if c not in CURVE_COLUMNS]
        if "metric" in cols:
            cols = list(dict.fromkeys(curve["metric"]))
        if len(cols) < 2:
            raise InputError("curve needs two metrics; pass curve_axes=(x, y)")
        return cols[0], cols[1]

    @property
    def mode(self) -> str:
        return self.mode_buttons.value

    @property
    def gamma(self) -> float:
        return float(self.gamma_slider.value)

    def ensure_risk(self) -> np.ndarray:
        """The ghosting-risk map of the two endpoints (``ifcsr.risk.ghosting_risk``), (H, W) in
        [0, 1]. It depends only on the endpoints, so it is computed once (the first time the
        overlay or the risk-aware mode is used), with what every later move needs: the sorted
        risk values of the risk-aware solver and the overlay's fixed-point weights."""
        if self._risk is None:
            from .risk import RiskAwareGamma, ghosting_risk

            t0 = time.perf_counter()
            risk = ghosting_risk(self.fid, self.real)
            self._risk_solver = RiskAwareGamma(risk)
            # overlay: img * (1 - a) + red * a with a = 0.7 risk, in 8-bit fixed point like blend()
            a = np.rint(np.clip(risk, 0, 1) * 0.7 * 256).astype(np.uint16)[..., None]
            self._risk_a = a
            self._risk_na = (256 - a).astype(np.uint16)
            self._risk_red = (a * np.array([255, 40, 40], np.uint16) + 128).astype(np.uint16)
            self.risk_seconds = time.perf_counter() - t0
            self._risk = risk
        return self._risk

    def _overlay_risk(self, img: np.ndarray) -> np.ndarray:
        """Tint `img` (HxWx3 uint8, in place) red where the ghosting risk is high."""
        np.multiply(img, self._risk_na, out=self._t1)
        self._t1 += self._risk_red
        self._t1 >>= 8
        np.copyto(img, self._t1, casting="unsafe")
        return img

    def gamma_map(self) -> np.ndarray:
        """The per-pixel gamma of the map modes. "map": gamma in mask inside, the main gamma
        outside. "risk": the risk-aware map whose mean is the main gamma
        (``ifcsr.risk.RiskAwareGamma``: lower where the endpoints disagree in structure)."""
        if self.mode == "risk":
            self.ensure_risk()
            np.copyto(self._gmap, self._risk_solver(self.gamma))
            return self._gmap
        g_out, g_in = self.gamma, float(self.mask_slider.value)
        np.multiply(self.mask, g_in - g_out, out=self._gmap)
        self._gmap += g_out
        return self._gmap

    def _blend_map(self, gmap: np.ndarray) -> np.ndarray:
        """uint8 blend with a per-pixel gamma, in the fixed point of blend()'s scalar fast path:
        8-bit weights w = round(256 gamma), (f (256 - w) + r w + 128) >> 8, all in uint16."""
        w = self._w[..., 0]
        np.multiply(gmap, 256.0, out=self._gtmp)
        np.rint(self._gtmp, out=self._gtmp)
        np.copyto(w, self._gtmp, casting="unsafe")
        np.multiply(self._r16, self._w, out=self._t1)
        np.subtract(256, self._w, out=self._w)
        np.multiply(self._f16, self._w, out=self._t2)
        self._t1 += self._t2
        self._t1 += 128
        self._t1 >>= 8
        np.copyto(self._out, self._t1, casting="unsafe")
        return self._out

    def blended(self) -> np.ndarray:
        """The current image at full resolution, HxWx3 uint8 (a buffer reused by the next move:
        copy it to keep it)."""
        if self.mode == "scalar":
            return blend(self.fid, self.real, self.gamma, out=self._out)
        return self._blend_map(self.gamma_map())

    def _crop_pixels(self, img: np.ndarray) -> np.ndarray:
        s, z = self.crop_side, self.zoom
        t, l = self.crop_top.value, self.crop_left.value
        c = img[t : t + s, l : l + s]
        return np.repeat(np.repeat(c, z, axis=0), z, axis=1)  # nearest: pixels stay pixels

    def _draw_crop_box(self, img: np.ndarray) -> None:
        s = self.crop_side
        t, l = self.crop_top.value, self.crop_left.value
        H, W = self.shape
        b, r = min(t + s, H - 1), min(l + s, W - 1)
        color = np.array([255, 220, 0], np.uint8)
        img[t, l : r + 1] = color
        img[b, l : r + 1] = color
        img[t : b + 1, l] = color
        img[t : b + 1, r] = color

    def _render_map(self) -> None:
        m = (np.clip(self.mask, 0, 1) * 255 + 0.5).astype(np.uint8)
        step = max(1, max(self.shape) // 160)
        self.map_image.value = encode_image(np.ascontiguousarray(m[::step, ::step]), "png")

    def _sync_mode(self) -> None:
        self.map_controls.layout.display = "" if self.mode == "map" else "none"

    # ------------------------------------------------------------------ events
    def _on_change(self, change=None) -> None:
        if change is not None and change.get("owner") is self.mode_buttons:
            self._sync_mode()
        if change is not None and change.get("owner") is self.zoom_dropdown:
            self.zoom = int(self.zoom_dropdown.value)
            s = self.crop_side
            H, W = self.shape
            self.crop_top.max, self.crop_left.max = max(H - s, 0), max(W - s, 0)
        self.update()

    def update(self) -> dict:
        """Blend, score, mark and encode for the current controls; returns milliseconds per part."""
        t0 = time.perf_counter()
        img = self.blended()
        if self.risk_toggle.value:
            self.ensure_risk()
            self._overlay_risk(img)  # display only: blended() recomputes the image for saving
        t1 = time.perf_counter()
        text_metrics = ""
        if self.metrics is not None:
            g = self.gamma if self.mode == "scalar" else self._gmap
            m = self.metrics(g)
            self.current_metrics = m
            text_metrics = f" &middot; PSNR(Y) {m['psnr']:.2f} dB &middot; SSIM(Y) {m['ssim']:.4f}"
        elif self.metrics_note:
            text_metrics = f" &middot; <small>{self.metrics_note}</small>"
        t2 = time.perf_counter()
        crop = self._crop_pixels(img)
        crop_bytes = encode_image(np.ascontiguousarray(crop), "png")
        self._draw_crop_box(img)  # after the crop: the box is drawn on the display copy only
        main_bytes = encode_image(img, self.image_format, quality=self.quality)
        t3 = time.perf_counter()
        curve_bytes = None
        if self.curve is not None:
            g_curve = self.gamma if self.mode == "scalar" else float(self._gmap.mean())
            curve_bytes = self.curve.png(g_curve, hollow=self.mode != "scalar")
        t4 = time.perf_counter()
        self.image.value = main_bytes
        self.crop_image.value = crop_bytes
        if curve_bytes is not None:
            self.curve_image.value = curve_bytes
        if self.mode == "scalar":
            head = f"<b>gamma = {self.gamma:.2f}</b> (0 = fidelity, 1 = realism)"
        elif self.mode == "risk":
            head = (f"<b>risk-aware map</b>: mean {float(self._gmap.mean()):.2f}, from "
                    f"{float(self._gmap.min()):.2f} (risky) to {float(self._gmap.max()):.2f}")
        else:
            head = (f"<b>gamma map</b>: {float(self.mask_slider.value):.2f} in mask, {self.gamma:.2f} "
                    f"outside, mean {float(self._gmap.mean()):.2f}")
        t5 = time.perf_counter()
        total = (t5 - t0) * 1000
        self.moves += 1
        self.readout.value = (f'<span class="ifcsr-gamma">{head}</span>{text_metrics}'
                              f' &middot; <small>update {total:.1f} ms, no network call</small>')
        self.last_timing = dict(blend=(t1 - t0) * 1000, metrics=(t2 - t1) * 1000, encode=(t3 - t2) * 1000,
                                curve=(t4 - t3) * 1000, widgets=(t5 - t4) * 1000,
                                total=(time.perf_counter() - t0) * 1000)
        return self.last_timing

    def paint(self, sign: int = +1) -> None:
        """Add (sign=+1) or erase (-1) a soft disk of the brush radius at the crop's centre."""
        s = self.crop_side
        c = (self.crop_top.value + s / 2, self.crop_left.value + s / 2)
        d = disk(self.shape, c, float(self.brush_radius.value))
        self.mask = np.maximum(self.mask, d) if sign > 0 else np.minimum(self.mask, 1 - d)
        self._render_map()
        self.update()

    def reset_mask(self) -> None:
        self.mask = self.base_mask.copy()
        self._render_map()
        self.update()

    def set_mask(self, mask) -> None:
        """Replace the mask (and the one `reset mask` returns to)."""
        self.base_mask = self._check_mask(mask)
        self.reset_mask()

    def save(self, path=None) -> Path:
        """Save the current image (full resolution, lossless PNG); in map mode the gamma map too."""
        img = self.blended().copy()
        if path is None:
            tag = f"gamma{self.gamma:.2f}" if self.mode == "scalar" else "gammamap"
            path = self.save_dir / f"{self.name}_{tag}.png"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(img).save(path)
        msg = f"saved {path}"
        if self.mode in ("map", "risk"):
            mp = path.with_name(path.stem + "_map.png")
            Image.fromarray((np.clip(self.gamma_map(), 0, 1) * 255 + 0.5).astype(np.uint8)).save(mp)
            msg += f" and its gamma map {mp.name}"
        self.save_status.value = f"<small>{msg}</small>"
        self.update()  # the display buffer was reused by blended()
        return path

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def time_updates(explorer: BlendExplorer, gammas=None, *, mode: str = "scalar"):
    """Move the slider through `gammas` (default 101 values 0..1) calling the real handler;
    a pandas DataFrame with one row of per-part milliseconds per move."""
    import pandas as pd

    explorer.mode_buttons.value = mode
    rows = []
    for g in np.linspace(0, 1, 101) if gammas is None else gammas:
        explorer.gamma_slider.value = float(g)  # fires the observer -> update()
        rows.append(dict(explorer.last_timing, gamma=float(g), mode=mode))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- static figures


def _plt():
    import matplotlib.pyplot as plt

    return plt


def depth_weights_figure(ks=(1, 2, 7), num_layers: int = 5):
    """Normalised w_dec and w_inc (log scale) for each k, and the depth centre of mass of both
    against k: at k = 1 the two objectives coincide, so the blend range collapses."""
    from .losses import depth_weights

    plt = _plt()
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(3.1 * (len(ks) + 1), 2.9))
    layers = np.arange(num_layers + 1)
    for ax, k in zip(axes, ks):
        wd = np.array(depth_weights("dec", k, num_layers))
        wi = np.array(depth_weights("inc", k, num_layers))
        ax.bar(layers - 0.2, wd / wd.sum(), 0.4, label="w_dec (stage 1, fidelity)", color="tab:blue")
        ax.bar(layers + 0.2, wi / wi.sum(), 0.4, label="w_inc (stage 2, realism)", color="tab:red")
        ax.set_yscale("log")
        ax.set_ylim(1e-6, 1.5)
        ax.set_xticks(layers, ["MSE"] + [f"l{i}" for i in layers[1:]], fontsize=7)
        ax.set_title(f"k = {k:g}", fontsize=9)
        ax.set_ylabel("w_l / sum w (log)", fontsize=8)
    axes[0].legend(fontsize=6, loc="lower center")
    ax = axes[-1]
    kk = np.linspace(1, 10, 91)
    for sched, color in (("dec", "tab:blue"), ("inc", "tab:red")):
        com = [np.dot(layers, w) / np.sum(w) for w in (np.array(depth_weights(sched, k, num_layers)) for k in kk)]
        ax.plot(kk, com, color=color, label=f"w_{sched}")
    ax.axvline(1, color="0.5", ls=":")
    ax.set_xlabel("k", fontsize=8)
    ax.set_ylabel("depth centre of mass  sum l w_l / sum w", fontsize=7)
    ax.set_title("the two objectives part as k grows", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_layer_figure(table, *, title: str = "per-layer distance to HR", note: str | None = None):
    """Grouped bars: rows of `table` (a DataFrame indexed by output name, one column per layer)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    n = len(table.index)
    width = 0.8 / n
    cols = list(table.columns)
    x = np.arange(len(cols))
    colors = {"fidelity": "tab:blue", "realism": "tab:red", "bicubic": "0.6"}
    for i, name in enumerate(table.index):
        ax.bar(x + (i - (n - 1) / 2) * width, table.loc[name].to_numpy(float), width, label=str(name),
               color=colors.get(str(name).split(" ")[0]))
    ax.set_xticks(x, cols, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("distance (log)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6.5, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    return fig


def loss_curves_figure(history, *, smooth: int = 5, title: str = "training loss"):
    """Loss against step for every stage (and stage 0's parts) in a Trainer.history."""
    import pandas as pd

    plt = _plt()
    df = pd.DataFrame(history)
    if df.empty or "loss" not in df.columns:
        raise InputError("history holds no loss values")
    if "part" not in df.columns:
        df["part"] = ""
    df["part"] = df["part"].fillna("")
    groups = list(df.groupby(["stage", "part"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.7), squeeze=False)
    names = {1: "stage 1: fidelity (w_dec)", 2: "stage 2: realism on the blend (w_inc)"}
    for ax, ((stage, part), g) in zip(axes[0], groups):
        if len(g) >= smooth > 1:
            ax.plot(g["step"], g["loss"], color="0.75", lw=0.8, label="per step")
            ax.plot(g["step"], g["loss"].rolling(smooth, min_periods=1).mean(), color="tab:blue", lw=1.4,
                    label=f"mean of {smooth}")
            ax.legend(fontsize=6)
        else:
            ax.plot(g["step"], g["loss"], color="tab:blue", lw=1.2, marker="." if len(g) < 30 else None)
        ax.set_title(names.get(stage, f"stage {stage}: {part}"), fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        if (g["loss"] > 0).all() and g["loss"].max() / max(g["loss"].min(), 1e-12) > 20:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def metric_vs_gamma_figure(frames: dict, metrics, *, note: str | None = None):
    """One panel per metric, one line per variant. frames: {label: sweep summary (gamma, metrics)}."""
    plt = _plt()
    metrics = list(metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 2.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for label, df in frames.items():
            d = df[df["gamma_map"].fillna("") == ""] if "gamma_map" in df.columns else df
            d = d.dropna(subset=["gamma"]).sort_values("gamma")
            if m in d.columns:
                ax.plot(d["gamma"], d[m], marker=".", label=label)
        ax.set_xlabel("gamma", fontsize=8)
        ax.set_title(_metric_label(m), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6.5, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.07 if note else 0, 1, 1))
    return fig


def ablation_figure(endpoints: dict, gammas=(0.0, 0.5, 1.0), *, crop=None, title: str | None = None):
    """The ablations side by side. endpoints: {variant: Endpoints}, all of the same image.

    One row per variant: the blend at gamma 0.5 with the crop outlined, the zoomed crop at
    each gamma, and |realism - fidelity| (the range gamma controls) on one colour scale for
    all rows, so a collapsed range reads as dark."""
    from matplotlib.patches import Rectangle

    from .figures import default_crop
    from .images import to_uint8

    plt = _plt()
    names = list(endpoints)
    first = endpoints[names[0]].fidelity
    H, W = first.shape[-2:]
    top, left, size = crop or default_crop(H, W)
    diffs = {n: (e.realism - e.fidelity).abs().mean(dim=1)[0].cpu().numpy() for n, e in endpoints.items()}
    vmax = max(float(np.quantile(d, 0.99)) for d in diffs.values()) or 1e-6
    ncols = len(gammas) + 2
    fig, axes = plt.subplots(len(names), ncols, figsize=(2.2 * ncols, 2.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        e = endpoints[name]
        if e.fidelity.shape != first.shape:
            raise InputError(f"{name}: endpoints of another size than {names[0]}'s")
        mid = to_uint8(e.blend(0.5))
        axes[r, 0].imshow(mid)
        axes[r, 0].add_patch(Rectangle((left, top), size, size, fill=False, ec="yellow", lw=1))
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c, g in enumerate(gammas, start=1):
            x = to_uint8(e.blend(float(g)))
            axes[r, c].imshow(x[top : top + size, left : left + size], interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(f"gamma {g:g} (crop)", fontsize=8)
        im = axes[r, -1].imshow(diffs[name], cmap="magma", vmin=0, vmax=vmax)
        axes[r, -1].set_xlabel(f"mean {255 * float(diffs[name].mean()):.1f} grey levels", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("gamma 0.5", fontsize=8)
    axes[0, -1].set_title("|realism - fidelity|", fontsize=8)
    fig.colorbar(im, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def realism_ablation_figure(result: dict, *, crop=None, x: str = "psnr", y: str = "niqe", title: str | None = None):
    """The realism endpoint with and without the adversarial term (`ifcsr.baselines.realism_ablation`).

    Left: the same zoomed crop of bicubic, the fidelity endpoint, each variant's realism
    endpoint and HR (nearest-neighbour zoom: every pixel visible). Right: the
    perception-distortion plane (x: a distortion, y: a no-reference index), each variant's
    blend curve from gamma 0 (small marker) to 1 (large marker), bicubic, and HR's own score
    on y as a dashed line: the value a natural photo gets."""
    from .figures import default_crop
    from .images import to_uint8

    plt = _plt()
    ends, pts = result["endpoints"], result["points"]
    labels = list(ends)
    first = ends[labels[0]]
    H, W = first.fidelity.shape[-2:]
    top, left, size = crop or default_crop(H, W, max(24, min(H, W) // 5))
    panels = {"bicubic": result["bicubic"], f"fidelity ({labels[0]})": first.fidelity}
    panels.update({f"realism: {label}": e.realism for label, e in ends.items()})
    panels["HR"] = result["hr"]
    n = len(panels)
    fig = plt.figure(figsize=(2.3 * n + 4.6, 3.2))
    grid = fig.add_gridspec(1, n + 2, width_ratios=[1] * n + [0.15, 2.0])
    for i, (label, img) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(to_uint8(img)[top:top + size, left:left + size], interpolation="nearest")
        ax.set_title(label.replace(": ", ":\n"), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[0, n + 1])
    colors = iter(("tab:red", "black", "tab:purple", "tab:cyan", "tab:olive"))
    for label in labels:
        c = pts[pts["method"] == label].sort_values("gamma")
        color = next(colors)
        ax.plot(c[x], c[y], "-", color=color, lw=1.5, label=label)
        ax.scatter(c[x], c[y], s=8 + 40 * c["gamma"].to_numpy(float), color=color, zorder=3)
        ax.annotate("gamma 1", (c[x].iloc[-1], c[y].iloc[-1]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    bic = pts[pts["method"] == "bicubic"]
    ax.scatter(bic[x], bic[y], marker="s", color="tab:gray", label="bicubic", zorder=3)
    hr = pts[pts["method"] == "HR"]
    if len(hr) and y in hr and hr[y].notna().all():
        ax.axhline(float(hr[y].iloc[0]), color="tab:green", ls="--", lw=1, label=f"HR's {y}")
    ax.set_xlabel(_metric_label(x), fontsize=8)
    ax.set_ylabel(_metric_label(y), fontsize=8)
    if not _lower_better(x):  # better to the left, as in Blau & Michaeli's plane
        ax.invert_xaxis()
    if not _lower_better(y):
        ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title("perception-distortion plane (better: down, left)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
