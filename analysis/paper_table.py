"""The paper's table on RealSR: our rows measured here, then the paper's rows quoted.

    python analysis/paper_table.py                     # every image (slow on a CPU: see README)
    python analysis/paper_table.py --every 20          # every 20th image by name for the model rows

One command regenerates everything (after a new bundled checkpoint, rerun it):
- measured on the whole set, no network: bicubic and OSEDiff's published outputs (a table of
  their own when the model rows cover a subset of the pairs);
- measured on the selected images (--every / --images): the same two, Real-ESRGAN x4plus, IFCSR
  with the bundled tiny checkpoint at gamma 0..1 (step 0.05; the table shows the paper's 0, 0.2,
  0.6, 1) and the baselines whose checkpoints fit (single-stage, k=1; DNI when asked for);
- quoted: the paper's IFCSR rows and its OSEDiff / PiSA-SR rows (SD 2.1-base backbone).
Writes analysis/results/paper_table.md and .csv (with provenance: checkpoint sha256, command,
date, wall time) and realsr_per_image.csv / realsr_summary.csv for notebook 04.
RealSR comes from $IFCSR_REALSR, the `ifcsr fetch-data realsr` cache, or --dataset.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _short(path) -> str:
    """A path relative to the repository's parent when inside it (../shared/..., ifcsr/assets/...)."""
    p = Path(path).resolve()
    for base, prefix in ((REPO, ""), (REPO.parent, "../")):
        if p.is_relative_to(base):
            return prefix + str(p.relative_to(base))
    return str(p)


def _training_data(checkpoint) -> str:
    """What the checkpoint's stages trained on, from its config.json (the run's data, then stage 2's)."""
    from ifcsr.config import TrainConfig

    try:
        cfg = TrainConfig.load(Path(checkpoint) / "config.json")
    except (OSError, ValueError, TypeError):  # ConfigError is a ValueError
        return "(training data not recorded in the checkpoint)"
    names = {"samples": "the four scikit-image training photos",
             "package-photos": "seven package photos (those four, matplotlib's grace_hopper, scikit-learn's "
                               "china and flower)"}

    def say(data):
        return names.get(data, str(data)) if isinstance(data, str) else ", ".join(map(str, data or ["?"]))

    run, stage2 = cfg.data, cfg.stage2.data
    return say(run) + (f"; stage 2 on {say(stage2)}" if stage2 and stage2 != run else "")


def main(argv=None) -> int:
    from ifcsr.data.datasets import DatasetNotFoundError, resolve_dataset
    from ifcsr.evaluation.benchmark import PAPER_TABLE_GAMMAS, evaluate_benchmark, table_cells
    from ifcsr.evaluation.benchmark_sets import parse_gammas
    from ifcsr.evaluation.sweep import PAPER_METRICS
    from ifcsr.evaluation.tables import PAPER_HEADERS, frame_to_markdown, paper_notes, paper_reference_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None, help="RealSR folder (default: $IFCSR_REALSR, the fetch cache, "
                   "or ../shared/data/realsr next to the repository)")
    p.add_argument("--checkpoint", default=None, help="IFCSR checkpoint (default: the bundled tiny one)")
    p.add_argument("--every", type=int, default=1, help="model rows on every k-th image by name (default all)")
    p.add_argument("--images", nargs="+", default=None, metavar="NAME", help="model rows on these pairs only")
    p.add_argument("--baselines", nargs="*", default=["realesrgan", "single-stage", "k1"],
                   help="realesrgan single-stage k1 dni (DNI: one network pass per image and gamma)")
    p.add_argument("--no-whole-set", action="store_true",
                   help="skip the no-model rows on every image (bicubic and OSEDiff on all pairs; "
                   "never run when the model rows cover every pair)")
    p.add_argument("--gammas", default="0:1:0.05", help="IFCSR's curve: START:STOP:STEP or numbers separated "
                   "by commas (default 0:1:0.05; the table shows the paper's 0, 0.2, 0.6, 1 in any case)")
    p.add_argument("--extra-metrics", nargs="*", default=[], metavar="NAME",
                   help="columns beyond the paper's, e.g. piqe (a second offline no-reference index; "
                   "the paper's rows have no value for it)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    dataset = args.dataset
    if dataset is None:
        try:
            dataset = resolve_dataset("realsr")
        except DatasetNotFoundError:
            dataset = REPO.parent / "shared" / "data" / "realsr"
    dataset = Path(dataset)
    compare = {"OSEDiff (published outputs)": dataset / "results_osediff"}
    metrics = list(PAPER_METRICS) + [m for m in args.extra_metrics if m not in PAPER_METRICS]

    # The no-model rows on every pair, unless the model rows already cover every pair.
    all_pairs = args.every == 1 and not args.images
    whole = None if args.no_whole_set or all_pairs else evaluate_benchmark(
        dataset, no_model=True, compare=compare, metrics=metrics, cache="default")
    model = evaluate_benchmark(dataset, checkpoint=args.checkpoint, compare=compare, metrics=metrics,
                               gammas=parse_gammas([*PAPER_TABLE_GAMMAS, *args.gammas.split(",")]),
                               table_gammas=PAPER_TABLE_GAMMAS,
                               baselines=args.baselines, every=args.every, names=args.images, cache="default")
    wall = time.perf_counter() - t0
    meta = model.meta
    command = "python analysis/paper_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.tidy.to_csv(out / "realsr_per_image.csv", index=False)
    model.summary.to_csv(out / "realsr_summary.csv", index=False)

    def labelled(res, source):
        cells = table_cells(res.table, res.unavailable)
        cells.insert(0, "images", [str(n) for n in res.table["n"].astype(int)])
        cells = cells.drop(columns=["n"])
        cells.insert(0, "source", source)
        return cells

    paper = paper_reference_table(as_text=True)
    paper.insert(0, "images", "RealSR, 100 (paper)")
    paper.insert(0, "source", "quoted from the paper (SD 2.1-base)")
    tiny = "measured here (IFCSR rows: bundled tiny backbone)" if meta.get("tiny") else "measured here"
    parts = [labelled(model, tiny)] + ([labelled(whole, "measured here, no model")] if whole else []) + [paper]
    csv = pd.concat(parts).rename_axis("method")
    csv.to_csv(out / "paper_table.csv")
    shown = [m for m in metrics if m not in model.unavailable]
    heads = [PAPER_HEADERS.get(m, m) for m in shown]

    def md(cells):
        return frame_to_markdown(cells[["images", *[h for h in heads if h in cells.columns]]])

    paper_cols = paper[["images", *[h for h in heads if h in paper.columns]]]
    lines = [
        "# IFCSR on RealSR: measured here, then the paper's numbers (quoted)",
        "",
        f"- Command: `{command}`; {meta['date']}; wall time {wall:.0f} s on this machine "
        f"(IFCSR endpoints inferred for {model.timings.get('IFCSR images_inferred', 0)} images in this run; "
        "the others came from the endpoint cache).",
        f"- IFCSR checkpoint: `{_short(meta['checkpoint'])}`, sha256 `{meta['checkpoint_sha256']}`; {meta['model']}.",
        f"- Images: RealSR x4, the StableSR/OSEDiff crops (LR 128 px, HR 512 px) at `{_short(dataset)}`. Model rows: "
        f"{meta['selection']}." + (f" No-model rows: also on all {len(whole.meta['images'])} pairs." if whole else ""),
        "- OSEDiff: its published outputs (`results_osediff/`), scored here with the same code.",
        "",
        f"## Measured here: {meta['selection']}",
        "",
        md(parts[0]),
        "",
        *(["## Measured here: the whole set, no network", "", md(parts[1]), ""] if whole else []),
        "## Quoted from the paper (IFCSR, CVPR 2026, RealSR; Stable Diffusion 2.1-base, LSDIR + FFHQ training)",
        "",
        frame_to_markdown(paper_cols),
        "",
        # the footnotes of the quoted numbers in paper_table.csv too (it holds every column)
        *[f"- Note: {n}" for n in paper_notes(paper.columns)],
        *([""] if paper_notes(paper.columns) else []),
        "## Protocol card",
        "",
        model.card,
        "",
        "## What differs from the paper's rows",
        "",
        "- Backbone: ours is the tiny backbone (x1 VAE, 1.4M-parameter UNet, pretrained on four photos in CPU "
        "minutes); the paper's is Stable Diffusion 2.1-base (866M-parameter UNet) with its generative prior.",
        f"- Training data: ours {_training_data(meta['checkpoint'])} with bicubic / Real-ESRGAN degradations; "
        "the paper's LSDIR + 10k FFHQ with Real-ESRGAN degradations, ~24 h per stage on an H100.",
        "- Images: the paper's rows are over all 100 RealSR pairs; our model rows over the images named above.",
        "- Same protocol for every measured row (card above); the paper's protocol is OSEDiff's/PiSA-SR's pyiqa, "
        "which the calibration test reproduces on OSEDiff's outputs (tests/test_realsr_calibration.py).",
    ]
    if model.skipped:
        lines += ["", "## Not run", ""] + [f"- {k}: {v}" for k, v in model.skipped.items()]
    (out / "paper_table.md").write_text("\n".join(lines) + "\n")
    from ifcsr.models import BUNDLED_CHECKPOINT
    from ifcsr.provenance import record

    ablations = [p for p in (Path(__file__).resolve().parent / "checkpoints").glob("*") if p.is_dir()]
    record([out / f for f in ("paper_table.md", "paper_table.csv", "realsr_per_image.csv", "realsr_summary.csv")],
           inputs=[args.checkpoint or BUNDLED_CHECKPOINT, *ablations])  # analysis/results/MANIFEST.json
    print("\n".join(lines))
    print(f"\nwrote {out / 'paper_table.md'}, {out / 'paper_table.csv'}, {out / 'realsr_per_image.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
