"""The live gamma explorer (ipywidgets): `BlendExplorer` and `time_updates`. Imports numpy,
ipywidgets (lazily), ifcsr core (blend, risk), ifcsr.evaluation.sweep and ifcsr.widgets.live/curves.

Imported only explicitly (``from ifcsr.widgets import BlendExplorer``): ``import ifcsr`` pulls in
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

import time
from pathlib import Path

import numpy as np

from ifcsr.blend import GammaError, blend
from ifcsr.errors import InputError
from ifcsr.widgets.curves import CURVE_COLUMNS, CurvePlot, baseline_points, curve_points
from ifcsr.widgets.live import LiveMetrics, as_float, as_uint8, disk, encode_image

# ----------------------------------------------------------------------------- the explorer


class BlendExplorer:
    """Live fidelity-realism explorer: a gamma slider over two endpoint images inferred once.

    >>> ends = model.infer(lr)                                     # the only network call
    >>> BlendExplorer(ends.fidelity, ends.realism, hr=hr, curve=sweep_summary)

    fidelity, realism: the two endpoints, (1, 3, H, W) / (3, H, W) tensors in [0, 1] or HxWx3
        uint8 arrays. hr: optional ground truth of the same size; enables the live PSNR(Y) and
        SSIM(Y) readout.
    curve: optional precomputed sweep (``ifcsr.evaluation.sweep.sweep(...).summary``, a tidy frame or a
        dict) drawn as a perception-distortion curve with a marker at the current gamma; other
        methods in a sweep summary appear too: squares for single points (bicubic,
        Real-ESRGAN), thin lines for swept ones (DNI, the ablations).
    curve_axes: (x, y) metric names; default: ``ifcsr.evaluation.sweep.pick_axes``.
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

        # Buffers reused by every move: the blended image (blend(..., out=)), the gamma map and the
        # risk overlay's uint16 arithmetic.
        self._out = np.empty_like(self.fid)
        self._t1 = np.empty((H, W, 3), np.uint16)
        self._gmap = np.empty((H, W), np.float32)
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
                                     "score the saved image with ifcsr.evaluation.metrics")

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
            from ifcsr.evaluation.sweep import pick_axes

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
            from ifcsr.risk import RiskAwareGamma, ghosting_risk

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

    def blended(self) -> np.ndarray:
        """The current image at full resolution, HxWx3 uint8 (a buffer reused by the next move:
        copy it to keep it)."""
        gamma = self.gamma if self.mode == "scalar" else self.gamma_map()
        return blend(self.fid, self.real, gamma, out=self._out)  # uint8 fixed point, in place

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
