"""`ifcsr bench`: what control, inference, training and large images cost, measured in one run.
Imports torch and ifcsr.evaluation.bench_common/bench_cpu/bench_sd (the parts).

Parts (each a list of rows in one table and one CSV):
  a  the cost of ONE change of the control, on one model, at two output sizes:
     IFCSR's pixel blend of the cached endpoints (torch float32, numpy uint8 for display),
     next to a plain copy of the output array; latent-space control as PiSA-SR does it (two
     UNet passes + a VAE decode per change); weight interpolation as ESRGAN's DNI does it
     (merge the LoRA weights, then one UNet pass + a decode per change).
  b  the first inference of both endpoints (batched in one UNet pass, and sequential) vs one
     single-branch inference.
  c  a training step of stage 1 and stage 2 (tiny backbone, CPU): time and peak memory.
  d  large images: time and peak RSS with and without tiling, each in a fresh subprocess.
  e  (`--parts sd`) on a GPU: a backbone with SD 2.1-base's exact configuration (random
     weights, no download): at 512x512 fp16, one branch vs both endpoints batched and
     sequential, the blend, the peers' control; a training step of stages 1 and 2 at batch 4,
     512 px crops, bf16 autocast, with and without gradient checkpointing: time and peak GPU
     memory. Without a GPU it prints what it would measure (`sd_plan`) and that none is present.

Every time is the median of `repeats` runs after a warm-up; the machine, the thread count
and the load average at the start are recorded in every row. Parts a-d run on the CPU.
"""


from __future__ import annotations

import csv
import time
from pathlib import Path

import torch

from ifcsr.errors import InputError
from ifcsr.evaluation.bench_common import COLUMNS, BenchConfig, load_model, machine_info
from ifcsr.evaluation.bench_cpu import part_a, part_b, part_c, part_d
from ifcsr.evaluation.bench_sd import part_e

# --------------------------------------------------------------------------- run, table, CLI


def run(bc: BenchConfig, log=print, csv_path=None) -> list[dict]:
    """Run the selected parts; every row carries the machine, threads and weights. With
    csv_path, the CSV is rewritten after every part (an interrupted run keeps what it has)."""
    if bc.threads:
        torch.set_num_threads(bc.threads)
    info = machine_info()
    parts = {"e" if p == "sd" else p for p in bc.parts}  # "sd": the SD 2.1-base-sized GPU part
    unknown = parts - set("abcde")
    if unknown:
        raise InputError(f"unknown parts {sorted(unknown)}; choose from a, b, c, d, e (sd = e)")
    model = weights = None
    if parts & {"a", "b", "c", "d"}:
        model, weights = load_model(bc.checkpoint)
        log(f"model: {weights}; {info['machine']}; {info['threads']} threads; load average {info['load']}")
    rows = []
    for part in sorted(parts):
        t0 = time.perf_counter()
        if part == "a":
            new = part_a(model, bc, log)
        elif part == "b":
            new = part_b(model, bc, log)
        elif part == "c":
            new = part_c(bc, log)
        elif part == "d":
            new = part_d(model, bc, log)
        else:
            new = part_e(bc, log)
        for r in new:
            gpu = part == "e" and torch.cuda.is_available()
            r.update(weights="random weights (SD 2.1-base config)" if part == "e" else weights,
                     device="cuda" if gpu else "cpu", **info)
        rows += new
        log(f"part {part}: {time.perf_counter() - t0:.0f} s")
        if csv_path is not None:
            write_csv(rows, csv_path)
    return rows


def write_csv(rows: list[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return path


def _fmt_time(s) -> str:
    if s is None or s == "":
        return ""
    s = float(s)
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def format_table(rows: list[dict]) -> str:
    """A plain-text table: part, measure, size, median time, peak MB, ratio, target, met."""
    head = ["part", "measure", "size", "time", "peak MB", "ratio", "target", "met"]
    body = []
    for r in rows:
        ratio = r.get("ratio")
        ratio_s = "" if ratio is None else (f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2f}")
        if ratio_s and r.get("ratio_of"):
            ratio_s += f" ({r['ratio_of']})"
        body.append([r["part"], r["measure"], "" if r.get("size") is None else str(r["size"]),
                     _fmt_time(r.get("seconds")), "" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}",
                     ratio_s, r.get("target") or "", r.get("met") or ""])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    notes = [f"  {r['part']} {r['measure']} @{r.get('size')}: {r['note']}" for r in rows if r.get("note")]
    if rows:
        r0 = rows[0]
        out.insert(0, f"machine: {r0['machine']}; {r0['threads']} threads; load average at start {r0['load']}; "
                      f"parts a-d on CPU; weights: {r0['weights']}")
    return "\n".join(out + (["notes:"] + notes if notes else []))
