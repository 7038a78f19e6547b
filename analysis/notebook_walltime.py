"""Wall time of a notebook executed top to bottom, in small (CI) or full (classroom) mode.

Executes notebooks/<name>.ipynb with nbclient in a fresh kernel, offline, and prints the
total and the five slowest cells. Appends a row to analysis/results/notebook_walltime.csv.

    python analysis/notebook_walltime.py 03_training            # full mode (a class run)
    python analysis/notebook_walltime.py 03_training --small    # CI's small mode
    python analysis/notebook_walltime.py --small 01_quickstart 02_method   # several, one row each
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", help="names under notebooks/, e.g. 03_training")
    p.add_argument("--small", action="store_true", help="IFCSR_SMALL=1 (CI mode)")
    p.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    args = p.parse_args(argv)
    paths = [ROOT / "notebooks" / (n.removesuffix(".ipynb") + ".ipynb") for n in args.notebooks]
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"no notebook {path}")
    return sum(walltime(path, small=args.small, timeout=args.timeout) for path in paths)


def walltime(path: Path, *, small: bool, timeout: int) -> float:
    os.environ["HF_HUB_OFFLINE"] = "1"
    if small:
        os.environ["IFCSR_SMALL"] = "1"
    else:
        os.environ.pop("IFCSR_SMALL", None)
    nb = nbformat.read(path, as_version=4)
    times: list[tuple[float, int, str]] = []
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            c0 = time.perf_counter()
            client.execute_cell(cell, i)
            times.append((time.perf_counter() - c0, i, cell.source.splitlines()[0][:60] if cell.source else ""))
    total = time.perf_counter() - t0
    mode = "small" if small else "full"
    print(f"{path.name}: {mode} mode, {total:.0f} s wall ({os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    for dt, i, head in sorted(times, reverse=True)[:5]:
        print(f"  cell {i:3d}: {dt:7.1f} s  {head}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    row = pd.DataFrame([dict(notebook=path.name, mode=mode, wall_s=round(total, 1), cpus=os.cpu_count(),
                             omp_threads=os.environ.get("OMP_NUM_THREADS", ""), machine=platform.machine(),
                             date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"))])
    out = RESULTS / "notebook_walltime.csv"
    row.to_csv(out, mode="a", header=not out.is_file(), index=False)
    from ifcsr.provenance import BUNDLE, record

    # The notebooks run the bundled checkpoint and (04, 05) the ablations next to it.
    checkpoints = sorted(p for p in (ROOT / "analysis" / "checkpoints").iterdir() if p.is_dir())
    record(out, inputs=[BUNDLE, *checkpoints], expensive=True,
           note="one row per run, appended; each row has its date")
    return total


if __name__ == "__main__":
    main()
