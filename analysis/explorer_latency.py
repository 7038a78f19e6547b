"""How long one slider move of the live explorer takes (ifcsr.widgets.explorer.BlendExplorer), at 512x512.

The budget is 50 ms per move on a 2-core CPU. Each move runs the explorer's real update
handler through the slider's observer (`time_updates`): blend (uint8 fixed point), live
PSNR(Y)/SSIM(Y) against HR, the zoomed crop, the marker on the perception-distortion
curve, JPEG/PNG encoding and the widget state serialisation (ipywidgets builds the
message; without a kernel it is not sent). No network is involved: the endpoints are
fixed images.

Endpoints: with --checkpoint (or IFCSR_CHECKPOINT) the model's own endpoints of the
astronaut photo (x4 bicubic LR 128x128 -> 512x512); by default stand-ins with the same
size and content statistics: the bicubic upsample ("fidelity") and an unsharp-masked copy
of it ("realism"). The blend costs the same for any content; JPEG encoding varies a little.

    python analysis/explorer_latency.py                 # -> analysis/results/explorer_latency.{csv,json}
    python analysis/explorer_latency.py --moves 303 --checkpoint path/to/ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_MS = 50.0


def endpoints(checkpoint=None):
    """(fidelity, realism, hr) at 512x512 and a description of where they came from."""
    import torch.nn.functional as F

    from ifcsr.data import BicubicDegradation, load_sample
    from ifcsr.data.images import to_tensor

    hr = to_tensor(load_sample("astronaut"))  # 512x512
    lr = BicubicDegradation(4)(hr)
    if checkpoint:
        from ifcsr.models import IFCSR

        ends = IFCSR.load(checkpoint).infer(lr)
        return ends.fidelity, ends.realism, hr, f"endpoints of checkpoint {checkpoint}"
    up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    blur = F.avg_pool2d(F.pad(up, (2, 2, 2, 2), mode="replicate"), 5, 1)
    sharp = (up + 1.5 * (up - blur)).clamp(0, 1)  # unsharp mask: a "realism"-like stand-in
    return up, sharp, hr, "stand-ins: bicubic upsample and its unsharp-masked copy"


def sweep_curve():
    """A perception-distortion curve of the explorer's size (21 gammas) plus two baselines."""
    g = np.round(np.linspace(0, 1, 21), 2)
    rows = [dict(method="IFCSR", gamma=x, gamma_map="", n_images=1, psnr=28 - 6 * x, niqe=8 - 3 * x ** 0.5)
            for x in g]
    rows += [dict(method="bicubic", gamma=np.nan, gamma_map="", n_images=1, psnr=27.5, niqe=8.5),
             dict(method="Real-ESRGAN x4plus", gamma=np.nan, gamma_map="", n_images=1, psnr=25.0, niqe=5.5)]
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.environ.get("IFCSR_CHECKPOINT"))
    p.add_argument("--moves", type=int, default=202, help="slider moves per scenario (gamma 0..1 and back)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    from ifcsr.widgets import BlendExplorer, face_mask, time_updates

    fid, real, hr, source = endpoints(args.checkpoint)
    half = args.moves // 2
    gammas = np.concatenate([np.linspace(0, 1, args.moves - half), np.linspace(1, 0, half)])
    scenarios = [
        ("scalar, HR + curve, jpeg", dict(hr=hr, curve=sweep_curve()), "scalar"),
        ("gamma map, HR + curve, jpeg", dict(hr=hr, curve=sweep_curve(), mask=face_mask(fid)), "map"),
        ("scalar, no HR, no curve, jpeg", dict(), "scalar"),
        ("scalar, HR + curve, png", dict(hr=hr, curve=sweep_curve(), image_format="png"), "scalar"),
        # issue 18: the risk-aware map (solved per move from the risk map computed once) and
        # the risk overlay; the one-off risk computation is timed apart (risk_map_ms)
        ("risk-aware map, HR + curve, jpeg", dict(hr=hr, curve=sweep_curve()), "risk"),
        ("scalar + risk overlay, HR + curve, jpeg", dict(hr=hr, curve=sweep_curve()), "scalar+overlay"),
    ]
    frames = []
    risk_map_ms = None
    for name, kw, mode in scenarios:
        ex = BlendExplorer(fid, real, **kw)
        if mode.endswith("+overlay"):
            mode = mode.split("+")[0]
            ex.risk_toggle.value = True
        if mode == "risk" or ex.risk_toggle.value:
            ex.ensure_risk()  # once per image: the risk map, its sorted values, the overlay weights
            risk_map_ms = round(ex.risk_seconds * 1000, 1)
        time_updates(ex, np.linspace(0, 1, 11), mode=mode)  # warm-up: first-call costs, caches
        df = time_updates(ex, gammas, mode=mode)
        df.insert(0, "scenario", name)
        frames.append(df)
    tidy = pd.concat(frames, ignore_index=True)
    parts = ["blend", "metrics", "encode", "curve", "widgets", "total"]
    summary = tidy.groupby("scenario", sort=False)[parts].median().round(2)
    summary["total_p90"] = tidy.groupby("scenario", sort=False)["total"].quantile(0.9).round(2)
    summary["total_max"] = tidy.groupby("scenario", sort=False)["total"].max().round(2)
    summary["moves"] = tidy.groupby("scenario", sort=False).size()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(out / "explorer_latency.csv", index=False)
    main_row = summary.loc["scalar, HR + curve, jpeg"]
    risk_row = summary.loc["risk-aware map, HR + curve, jpeg"]
    info = dict(
        image="512x512", source=source, budget_ms=BUDGET_MS,
        median_ms=float(main_row["total"]), p90_ms=float(main_row["total_p90"]),
        within_budget=bool(main_row["total_p90"] < BUDGET_MS),
        risk_aware_median_ms=float(risk_row["total"]), risk_aware_p90_ms=float(risk_row["total_p90"]),
        risk_aware_within_budget=bool(risk_row["total_p90"] < BUDGET_MS),
        risk_map_once_ms=risk_map_ms,
        summary_ms=summary.reset_index().to_dict("records"),
        cpu_count=os.cpu_count(), load_average=list(os.getloadavg()), torch_threads=torch.get_num_threads(),
        python=sys.version.split()[0], numpy=np.__version__, platform=platform.platform(),
        measured_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    (out / "explorer_latency.json").write_text(json.dumps(info, indent=2))
    from ifcsr.provenance import record

    record([out / "explorer_latency.csv", out / "explorer_latency.json"],
           inputs=[args.checkpoint] if args.checkpoint else [])  # stand-ins: no checkpoint
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"explorer update at 512x512, median ms per part ({source}):")
        print(summary.to_string())
    print(f"default explorer (scalar gamma, live PSNR/SSIM, curve marker, JPEG): median {info['median_ms']:.1f} ms, "
          f"p90 {info['p90_ms']:.1f} ms per move; budget {BUDGET_MS:.0f} ms: "
          f"{'met' if info['within_budget'] else 'NOT met'} (load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores)")
    print(f"risk-aware mode: median {info['risk_aware_median_ms']:.1f} ms, p90 {info['risk_aware_p90_ms']:.1f} ms "
          f"per move; the risk map itself, once per image: {risk_map_ms} ms")
    print(f"wrote {out / 'explorer_latency.csv'} and {out / 'explorer_latency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
