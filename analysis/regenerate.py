"""Regenerate every results file, figure and table from the bundled checkpoint, in order.

    python analysis/regenerate.py --cheap     # inference only: figures and tables (~20 min on 2 CPU cores)
    python analysis/regenerate.py             # everything: ablation training, seed study, benchmarks, ...
    python analysis/regenerate.py --list      # the steps and their commands
    python analysis/regenerate.py --only gamma_sweep realism_crops

Each step is one analysis script run in a fresh process with this checkout first on the
path; each script records what it wrote in analysis/results/MANIFEST.json (ifcsr.provenance).
Steps run in order (the ablation checkpoints before the figures that compare with them); a
failing step is reported and the others still run; nothing is skipped without saying so. At
the end: the wall time of each step, and `check_manifest`'s verdict (what tests/test_provenance.py
checks in CI).

--cheap runs the inference steps only and relies on the ablation checkpoints already in
analysis/checkpoints; the expensive steps (training studies, benchmarks, notebook timings)
keep the hashes they were made with, and the manifest check says which are now stale.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's ifcsr, whatever is installed

from ifcsr.provenance import check_manifest, stale_entries  # noqa: E402

RESULTS = "analysis/results"


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]       # script (relative to the repository) and its arguments
    cheap: bool                 # inference only; run by --cheap
    makes: str                  # what it writes (for --list and the log)
    fresh: tuple[str, ...] = field(default=())  # append-only outputs removed first (a regenerated
                                                # file holds this bundle's rows only)


STEPS = (
    Step("ablations", ("analysis/train_ablations.py", "--work", "{work}/ablations"), False,
         "analysis/checkpoints/{single_stage,k1,paper_l2}: ablation adapters on the bundle's backbone (~20 min)"),
    Step("bundled_quality", ("analysis/bundled_quality.py",), True,
         "bundled_quality.csv, bundled_psnr_vs_gamma.csv: PSNR of the endpoints, bicubic, VAE; gamma*"),
    Step("realism_crops", ("analysis/realism_crops.py",), True,
         "realism_crops.png/.csv: crops of the realism endpoints, k = 7 vs k = 1"),
    Step("paper_table", ("analysis/paper_table.py", "--baselines", "realesrgan", "--gammas", "0:1:0.1",
                         "--extra-metrics", "piqe"), True,
         "paper_table.md/.csv, realsr_summary.csv, realsr_per_image.csv: the paper's table for the bundle on all "
         "100 RealSR pairs next to the paper's numbers (~10 min from the endpoint cache; filling it takes ~35 "
         "min on 2 cores)"),
    Step("demo_figure", ("analysis/demo_figure.py",), True, "docs/demo.png: the README's figure (`ifcsr demo`)"),
    Step("explorer_latency", ("analysis/explorer_latency.py",), True,
         "explorer_latency.csv/.json: one slider move, timed (stand-in endpoints: no checkpoint)"),
    Step("hostile_inputs", ("analysis/hostile_inputs.py",), True,
         "hostile_inputs.csv: bad and edge inputs through the API and the CLI, by outcome (~5 min)"),
    Step("gamma_sweep", ("analysis/gamma_sweep.py", "--threads", "1"), True,
         "gamma_sweep*.csv, gamma_curves.png, perception_distortion*.png: IFCSR and every baseline, whole "
         "photos (NIQE on a 192-px crop sees only four 96-px blocks; DNI re-infers per point: ~30 min)"),
    Step("realism_check", ("analysis/realism_check.py", "--realsr", "4", "--realesrgan", "--crops"), True,
         "realism_check*.csv/png: issue 13's trade-off and artefact check of the bundle (chelsea, coffee, "
         "4 RealSR images; ~8 min). Its --calibrate mode (artefact_calibration*) needs the bundle before "
         "issue 13 and is rerun by hand: its command is in the manifest"),
    Step("explorer_screenshot", ("analysis/explorer_screenshot.py",), True,
         "explorer_screenshot.png: the real-browser test of the quickstart's explorer (needs Chromium)"),
    Step("stage2_seeds", ("analysis/stage2_seeds.py", "--seeds", "0", "1", "2", "3", "4", "--init", "zero",
                          "fidelity", "--train-photos"), False,
         "stage2_seeds.csv: stage 2 rerun for 5 seeds x 2 starts (~100 min)",
         fresh=(f"{RESULTS}/stage2_seeds.csv",)),
    Step("risk_realsr", ("analysis/risk_realsr.py", "--every", "2", "--nr-grid", "6", "--nr-tol", "0.05",
                         "--knee-grid", "6"), False,
         "risk_realsr*.csv, autogamma_realsr*.csv, risk_realsr.png: risk-aware maps and auto-gamma on 50 RealSR "
         "images (~20 min from the endpoint cache; filling it for 100 images takes ~35 min on 2 cores)"),
    Step("generator_eval", ("analysis/generator_eval.py", "--checkpoint", "ifcsr/assets/realesrgan", "--out",
                            "{work}/generator_eval"), False,
         "generator_eval.md, generator_eval_summary.csv: IFCSR on Real-ESRGAN x4plus (bundled 'realesrgan') against "
         "its prior, bicubic and OSEDiff on the validation photos, chelsea + coffee and RealSR-100 (~60 min on one "
         "core; two --shard processes halve it)"),
    Step("benchmarks", ("analysis/benchmarks.py",), False, "benchmarks.csv: the README's performance table (~40 min)"),
    Step("notebook_walltime", ("analysis/notebook_walltime.py", "--small", "01_quickstart", "02_method", "03_training",
                               "04_tradeoff_curves", "05_classroom_demo", "06_gpu_inference"), False,
         "notebook_walltime.csv: each notebook in small (CI) mode (~5 min)", fresh=(f"{RESULTS}/notebook_walltime.csv",)),
    Step("notebook_walltime_full", ("analysis/notebook_walltime.py", "03_training"), False,
         "notebook_walltime.csv: 03_training in full mode, a class run (~10 min; appends)"),
)
# Not rerun by this driver, said at every run: recipe_probes.csv is the assembled record of 22
# runs of analysis/recipe_probe.py (one per recipe variant, on a lent H100), made while the tiny
# preset was chosen; its manifest entry records the backbone weights they started from.
NOT_RERUN = {"analysis/recipe_probe.py": f"{RESULTS}/recipe_probes.csv holds 22 of its runs (one per variant in "
                                         "its rows; hours on a CPU); the manifest checks the backbone they started from",
             "analysis/realism_variants.py": f"{RESULTS}/realism_variants.csv: a stage-2 training study (about 35 min "
                                             "per variant on 2 cores); its commands are in the CSV",
             "analysis/realism_quick_eval.py": "scores realism_variants.py's runs; rerun with them",
             "analysis/crop_sheet.py": "the crop sheet of realism_check.py --crops (a helper of it)",
             "analysis/cli_latency.py": "prints the command line's answer times; writes no results file",
             "analysis/package_photos.py": "writes a folder of training photos from packages for the stage-2 variants "
                                           "*_photos7* of texture_variants.csv; no results file"}


def command(step: Step, work: str) -> list[str]:
    return [sys.executable, *(a.replace("{work}", work) for a in step.argv)]


def run(steps, *, work: str, log=print) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               HF_HUB_OFFLINE="1")
    rows = []
    for i, step in enumerate(steps, 1):
        for f in step.fresh:
            (ROOT / f).unlink(missing_ok=True)
        cmd = command(step, work)
        log(f"\n[{i}/{len(steps)}] {step.name}: python {' '.join(cmd[1:])}")
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        secs = time.perf_counter() - t0
        rows.append(dict(step=step.name, rc=rc, wall_s=secs))
        log(f"[{i}/{len(steps)}] {step.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.0f} s")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cheap", action="store_true", help="inference steps only (figures and tables)")
    p.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], help="these steps, in the driver's order")
    p.add_argument("--list", action="store_true", help="print the steps and their commands, run nothing")
    args = p.parse_args(argv)
    steps = [s for s in STEPS if (not args.cheap or s.cheap) and (not args.only or s.name in args.only)]
    if args.list:
        for s in STEPS:
            print(f"{s.name:22s} {'cheap    ' if s.cheap else 'expensive'} python {' '.join(s.argv)}\n"
                  f"{'':22s} -> {s.makes}")
        for f, why in NOT_RERUN.items():
            print(f"{'(not rerun)':22s} {f}: {why}")
        return 0
    skipped = [s.name for s in STEPS if s not in steps]
    if skipped:
        print(f"not run this time ({' and '.join(o for o, on in (('--cheap', args.cheap), ('--only', args.only)) if on)}): "
              f"{', '.join(skipped)}")
    for f, why in NOT_RERUN.items():
        print(f"never rerun by this driver: {f} ({why})")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ifcsr-regenerate-") as work:  # fresh training folders
        rows = run(steps, work=work)
    print(f"\n{'step':20s} {'result':>10s} {'wall s':>8s}")
    for r in rows:
        print(f"{r['step']:20s} {'ok' if r['rc'] == 0 else 'FAILED':>10s} {r['wall_s']:8.0f}")
    print(f"{'total':20s} {'':>10s} {time.perf_counter() - t0:8.0f}")
    problems = check_manifest(ROOT)
    for path, why in stale_entries(ROOT).items():
        print(f"kept stale (expensive, reviewed): {path}: {why}")
    if problems:
        print("\nmanifest check: " + str(len(problems)) + " problem(s)\n  " + "\n  ".join(problems))
    else:
        print("\nmanifest check: every results file is recorded and made from the current checkpoints")
    return 1 if problems or any(r["rc"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
