"""`ifcsr infer`: infer both endpoints of LR images ONCE, save them and any blends."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p):
    p.add_argument("images", nargs="+", help="LR image files")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled tiny one)")
    p.add_argument("--gamma", type=float, nargs="*", default=[0.0, 0.5, 1.0], help="blends to write")
    p.add_argument("--out", default="ifcsr-out", help="output folder")
    p.add_argument("--device", default=None)
    p.add_argument("--tile", choices=["auto", "on", "off"], default="auto", help="tiled inference for large images")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args) -> int:
    import torch

    from .images import load_image, save_image
    from .models import IFCSR

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = IFCSR.load(args.checkpoint, device=device)
    from tqdm.auto import tqdm

    out = Path(args.out)
    quiet = getattr(args, "quiet", False)
    for f in tqdm(args.images, desc="images", unit="image", disable=quiet or len(args.images) < 2):
        lr = load_image(f)
        kw = {} if args.tile == "auto" else {"tile": args.tile == "on"}
        ends = model.infer(lr, progress=not quiet, **kw)
        stem = Path(f).stem
        save_image(ends.fidelity, out / f"{stem}_fidelity.png")
        save_image(ends.realism, out / f"{stem}_realism.png")
        for g in args.gamma:
            save_image(ends.blend(g), out / f"{stem}_gamma{g:.2f}.png")
        print(f"{f}: endpoints and {len(args.gamma)} blends -> {out}")
    return 0
