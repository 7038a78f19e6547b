"""Views for notebooks: the live gamma explorer (`explorer`, ipywidgets), its per-move arithmetic
(`live`) and curve (`curves`), static figures of sweeps (`figures`) and of the method and
training (`method_figures`). May import everything but ifcsr.cli.

Every public name is available here (``from ifcsr.widgets import BlendExplorer``), imported on
first use: ``import ifcsr`` pulls in neither matplotlib nor ipywidgets, and these modules import
them lazily too.
"""

from __future__ import annotations

from ifcsr.lazy import lazy_names

# public name -> the module that defines it (imported on first use, so importing the package is free)
_NAMES = {
    "BlendExplorer": "explorer", "time_updates": "explorer",
    "CURVE_COLUMNS": "live", "as_uint8": "live", "as_float": "live", "encode_image": "live",
    "y_channel": "live", "LiveMetrics": "live", "disk": "live", "gamma_from_mask": "live",
    "face_mask": "live", "texture_mask": "live", "colorize_map": "live",
    "curve_points": "curves", "baseline_points": "curves", "CurvePlot": "curves",
    "default_crop": "figures", "endpoints_figure": "figures", "gamma_curves_figure": "figures",
    "pd_notna": "figures", "perception_distortion_figure": "figures", "best_gamma_figure": "figures",
    "dp_toy_figure": "figures", "risk_figure": "figures",
    "depth_weights_figure": "method_figures", "per_layer_figure": "method_figures",
    "loss_curves_figure": "method_figures", "metric_vs_gamma_figure": "method_figures",
    "ablation_figure": "method_figures", "realism_ablation_figure": "method_figures",
}
__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_names(__name__, _NAMES)
