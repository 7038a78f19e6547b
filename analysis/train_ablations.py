"""Train the two ablation checkpoints that the gamma sweep compares IFCSR with.

    python analysis/train_ablations.py                  # all three
    python analysis/train_ablations.py --kinds k1 --steps 300
    python analysis/train_ablations.py --kinds paper_l2 --adopt CKPT   # keep its adapters, no training

- single_stage: the paper's single-stage ablation. Stage 1 as usual (the bundled
  checkpoint's fidelity adapter: stage 1 of the same recipe), then the realism adapter is
  trained ALONE with w_inc on its own output, never on the blend.
- k1: stages 1 and 2 of the two-stage recipe with k = 1 (plain MSE + LPIPS on both).
- paper_l2: the bundled checkpoint's fidelity adapter, then its own stage 2 with the paper's
  L_2nd alone (texture, overshoot and adversarial terms off), at the bundle's stage-2 length:
  the realism endpoint without the terms the tiny preset adds (notebook 05).

Both reuse the bundled checkpoint's tiny backbone (ifcsr/assets/tiny/backbone, stage 0) and
its recipe (the tiny preset: batch 4, 64x64 crops, lr 2e-3, vgg-hed features, wavelet colour
fix); for single_stage and k1 only the step count is lowered to fit a CPU budget (150 per
trained stage unless --steps). The outputs in analysis/checkpoints/{single_stage,k1,paper_l2}/
hold the two adapters (~0.4 MB each), the config and a reference to the bundled
backbone with its sha256, checked when loaded. Each is recorded in analysis/results/MANIFEST.json
with the hashes of what it was trained from (ifcsr.provenance).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    from ifcsr.evaluation.ablations import ABLATIONS, train_ablation
    from ifcsr.models import BUNDLED_CHECKPOINT
    from ifcsr.provenance import record

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--steps", type=int, default=None,
                   help="steps per trained stage (default: 150 for single_stage and k1, the base's for paper_l2)")
    p.add_argument("--base", default=str(BUNDLED_CHECKPOINT), help="checkpoint whose backbone and recipe are reused")
    p.add_argument("--out", default=str(HERE / "checkpoints"))
    p.add_argument("--work", default="/tmp/ifcsr-ablations", help="resumable training folders")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--adopt", default=None, metavar="CHECKPOINT",
                   help="do not train: keep this checkpoint's adapters as the (single) kind, if it was trained on "
                        "the base's backbone (e.g. an earlier bundle on the same backbone as paper_l2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (Path(args.base) / "backbone" / "unet").is_dir():
        raise SystemExit(f"{args.base} has no backbone/ yet: train the bundled checkpoint first "
                         "(`ifcsr train --preset tiny --bundle`)")
    if args.adopt:
        if len(args.kinds) != 1:
            raise SystemExit("--adopt keeps one checkpoint as one ablation: give exactly one --kinds")
        from ifcsr.evaluation.ablations import adopt_ablation

        kind = args.kinds[0]
        out = adopt_ablation(kind, args.adopt, Path(args.out) / kind, base=args.base)
        record(out, inputs=[Path(args.base) / "backbone"], expensive=True,
               note=f"adapters adopted from {args.adopt}, not trained here")
        print(f"{kind}: {out} (adapters of {args.adopt})")
        return 0
    for kind in args.kinds:
        t0 = time.perf_counter()
        steps = args.steps if args.steps is not None else (None if kind == "paper_l2" else 150)
        out = train_ablation(kind, Path(args.out) / kind, base=args.base, steps=steps,
                             work_dir=Path(args.work) / kind, device=args.device, progress=False)
        meta = json.loads((out / "ifcsr.json").read_text())
        base = Path(args.base)
        # What the ablation was trained from: the base's backbone and recipe, and its fidelity
        # adapter where it was copied.
        used = [base / "backbone", base / "config.json"] + ([base / "fidelity.safetensors"] if kind != "k1" else [])
        record(out, inputs=used, expensive=True,
               command=f"python analysis/train_ablations.py --kinds {kind}"
                       + (f" --steps {args.steps}" if args.steps is not None else ""))
        print(f"{kind}: {out} in {time.perf_counter() - t0:.0f} s ({meta['method']}; fidelity {meta['fidelity']}; "
              f"backbone {meta['backbone']} sha256 {meta['backbone_sha256'][:12]})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
