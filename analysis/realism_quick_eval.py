"""Quick proxy evaluation of saved stage-2 variant runs (analysis/realism_variants.py --runs DIR).

Centre 256-px crops of chelsea + coffee (x4 bicubic LR) and the first N RealSR images (whole,
evaluation only): PSNR-Y, NIQE, PIQE, stripe_score, halo_score per output. Cheaper than
realism_check.py on whole images (CPU-starved runs, issue 13). Writes --out (CSV).

    python analysis/realism_quick_eval.py 2 RUN_DIR [RUN_DIR ...]
"""
import sys

import pandas as pd

sys.path.insert(0, "analysis")
import torch.nn.functional as F
from realism_check import REALSR, score

from ifcsr.data import pairs_from_samples
from ifcsr.data.images import load_image, to_tensor
from ifcsr.models import IFCSR

runs = sys.argv[2:]; nreal = int(sys.argv[1])
OUT = "analysis/results/realism_variants.csv"
pairs = [("cc", p["name"], p["lr"][None], p["hr"][None]) for p in pairs_from_samples(["chelsea", "coffee"], crop=256)]
for f in sorted((REALSR / "test_LR").glob("*.png"))[:nreal]:
    pairs.append(("realsr", f.stem, to_tensor(load_image(f)), to_tensor(load_image(REALSR / "test_HR" / f.name))))
rows = []
for run in runs:
    m = IFCSR.load(run)
    for set_, name, lr, hr in pairs:
        e = m.infer(lr)
        outs = {"fidelity": e.fidelity, "g0.5": e.blend(0.5), "realism": e.realism}
        if run == runs[0]:
            outs["bicubic"] = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False)
        for o, x in outs.items():
            rows.append(dict(run=run.split("/")[-1], set=set_, image=name, output=o, **score(x, hr)))
    df = pd.DataFrame(rows)
    print(df[df.run == run.split("/")[-1]].groupby(["set", "output"])[["psnr_y", "niqe", "piqe", "stripe", "halo"]].mean().round(4).to_string(), flush=True)
    df.to_csv(OUT, index=False)
