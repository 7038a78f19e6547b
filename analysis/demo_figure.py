"""The README's demo figure, docs/demo.png, made by `ifcsr demo` with the bundled checkpoint.

Runs the demo (held-out chelsea, x4 bicubic, both endpoints inferred once, blends at gamma
0, 0.25, ..., 1) into a temporary folder, copies its demo.png to docs/demo.png and records it
in analysis/results/MANIFEST.json.

    python analysis/demo_figure.py [--checkpoint DIR] [--photo chelsea]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ifcsr.cli.demo import run_demo
from ifcsr.models import BUNDLED_CHECKPOINT
from ifcsr.provenance import command_line, record

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled tiny checkpoint")
    p.add_argument("--photo", default="chelsea")
    p.add_argument("--out", default=str(DOCS / "demo.png"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ifcsr-demo-") as tmp:
        res = run_demo(photo=args.photo, checkpoint=args.checkpoint, out=tmp)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res["files"]["figure"], out)
    demo = "ifcsr demo" + (f" --photo {args.photo}" if args.photo != "chelsea" else "") + (
        f" --checkpoint {args.checkpoint}" if args.checkpoint else "")
    record(out, inputs=[args.checkpoint or BUNDLED_CHECKPOINT],
           command=f"{command_line()}  (= {demo}, then its demo.png copied here)")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
