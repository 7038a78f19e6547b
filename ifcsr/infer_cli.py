"""`ifcsr infer`: infer both endpoints of LR images ONCE, save them and any blends."""

from __future__ import annotations

import argparse
from pathlib import Path

AUTO_OBJECTIVES = ("knee", "niqe", "piqe", "psnr")


def gamma_arg(text: str):
    """A --gamma value: a number in [0, 1], or "auto" / "auto:OBJECTIVE" (ifcsr.autogamma)."""
    if text == "auto" or text.startswith("auto:"):
        objective = text.partition(":")[2] or "knee"
        if objective not in AUTO_OBJECTIVES:
            raise argparse.ArgumentTypeError(f"unknown auto objective {objective!r}; use one of "
                                             f"{', '.join('auto:' + o for o in AUTO_OBJECTIVES)}")
        return "auto:" + objective
    try:
        g = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"gamma must be a number in [0, 1] or auto[:objective], got {text!r}") from None
    if not 0 <= g <= 1:
        raise argparse.ArgumentTypeError(f"gamma must be in [0, 1], got {g}")
    return g


def add_arguments(p):
    p.add_argument("images", nargs="+", help="LR image files")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled tiny one)")
    p.add_argument("--gamma", type=gamma_arg, nargs="*", default=[0.0, 0.5, 1.0],
                   help="blends to write: numbers in [0, 1], or auto[:knee|niqe|piqe|psnr] to let each image "
                        "pick its gamma from its endpoints (no extra network call; psnr needs --hr)")
    p.add_argument("--hr", nargs="*", default=None,
                   help="HR images, one per LR image in the same order (only for --gamma auto:psnr)")
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
    hrs = getattr(args, "hr", None)
    if any(g == "auto:psnr" for g in args.gamma) and (not hrs or len(hrs) != len(args.images)):
        raise SystemExit("--gamma auto:psnr needs --hr with one HR image per LR image, in the same order")
    quiet = getattr(args, "quiet", False)
    for i, f in enumerate(tqdm(args.images, desc="images", unit="image", disable=quiet or len(args.images) < 2)):
        lr = load_image(f)
        kw = {} if args.tile == "auto" else {"tile": args.tile == "on"}
        ends = model.infer(lr, progress=not quiet, **kw)
        stem = Path(f).stem
        save_image(ends.fidelity, out / f"{stem}_fidelity.png")
        save_image(ends.realism, out / f"{stem}_realism.png")
        for g in args.gamma:
            if isinstance(g, str):  # auto: chosen from the endpoints, no network call
                objective = g.partition(":")[2]
                hr = load_image(hrs[i]) if objective == "psnr" else None
                choice = ends.auto_gamma(objective, hr=None if hr is None else _tensor(hr))
                save_image(ends.blend(choice.gamma), out / f"{stem}_auto-{objective}_gamma{choice.gamma:.2f}.png")
                print(f"{f}: auto:{objective} chose gamma {choice.gamma:.3f} ({choice.method})")
                continue
            save_image(ends.blend(g), out / f"{stem}_gamma{g:.2f}.png")
        print(f"{f}: endpoints and {len(args.gamma)} blends -> {out}")
    return 0


def _tensor(image):
    from .images import to_tensor

    return to_tensor(image)
