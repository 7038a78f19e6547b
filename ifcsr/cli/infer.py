"""`ifcsr infer`: infer both endpoints of LR images ONCE, save them and any blends.
Imports the standard library and ifcsr.errors; the model, images and auto-gamma inside `main`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ifcsr.errors import InputError

AUTO_OBJECTIVES = ("knee", "niqe", "piqe", "psnr")


def gamma_arg(text: str):
    """A --gamma value: a number in [0, 1], or "auto" / "auto:OBJECTIVE" (ifcsr.evaluation.autogamma)."""
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
    return g  # the range is checked by check_gammas (an InputError naming it)


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
    p.add_argument("--force-large", action="store_true",
                   help="proceed with images whose output exceeds 4096x4096 pixels (the time and memory "
                        "estimate is printed first)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def gamma_label(g: float) -> str:
    """The shortest decimal of at least two places that reads back as g: 0.5 -> '0.50',
    0.121 -> '0.121' (two places would write 0.121 and 0.124 to one file)."""
    for places in range(2, 18):
        text = f"{g:.{places}f}"
        if float(text) == g:
            return text
    return repr(float(g))


def check_gammas(gammas) -> list[float]:
    out = []
    for g in gammas:
        if isinstance(g, str):  # "auto:OBJECTIVE", validated by gamma_arg
            if g not in out:
                out.append(g)
            continue
        if not math.isfinite(g) or not 0.0 <= g <= 1.0:
            raise InputError(f"--gamma {g}: every gamma must be a number in [0, 1]")
        if g not in out:
            out.append(g)
    return out


def output_stems(files) -> list[str]:
    """One output stem per input, unique: inputs sharing a stem (a/x.png, b/x.png, x.jpg) get the
    folder and/or suffix added, never overwrite each other."""
    paths = [Path(f) for f in files]
    original = [p.stem for p in paths]
    stems = list(original)
    for i, p in enumerate(paths):
        if original.count(p.stem) > 1:
            same_suffix = sum(1 for q in paths if q.stem == p.stem and q.suffix == p.suffix) > 1
            stems[i] = f"{p.parent.name}_{p.stem}" if same_suffix and p.parent.name else p.stem
            if not same_suffix:
                stems[i] = f"{p.stem}_{p.suffix.lstrip('.')}"
    seen: dict[str, int] = {}
    for i, s in enumerate(stems):  # whatever still collides (same folder name): number it
        if stems.count(s) > 1:
            seen[s] = seen.get(s, 0) + 1
            stems[i] = f"{s}_{seen[s]}"
    return stems


def main(args) -> int:
    from ifcsr.data.images import load_image, save_image
    from ifcsr.evaluation.autogamma import auto_gamma
    from ifcsr.models import IFCSR, check_device
    from ifcsr.tiling import check_large, describe_cost

    gammas = check_gammas(args.gamma)
    hrs = getattr(args, "hr", None)
    if "auto:psnr" in gammas and (not hrs or len(hrs) != len(args.images)):
        raise InputError("--gamma auto:psnr needs --hr with one HR image per LR image, in the same order")
    if args.force_large:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # the user vouched for the file's size
    device = check_device(args.device)
    model = IFCSR.load(args.checkpoint, device=device)
    if "auto:psnr" in gammas:
        check_hr_sizes(args.images, hrs, model.scale)
    from tqdm.auto import tqdm

    out = Path(args.out)
    quiet = getattr(args, "quiet", False)
    stems = output_stems(args.images)
    pairs = list(zip(args.images, stems))
    for i, (f, stem) in enumerate(tqdm(pairs, desc="images", unit="image", disable=quiet or len(pairs) < 2)):
        lr = load_image(f)
        cost = check_large(model, lr.shape[:2], force=args.force_large, what=str(f), device=device)
        if cost["hr_pixels"] > 2048 * 2048:
            print(f"{f}: {describe_cost(cost)}")
        kw = {} if args.tile == "auto" else {"tile": args.tile == "on"}
        ends = model.infer(lr, progress=not quiet, **kw)
        save_image(ends.fidelity, out / f"{stem}_fidelity.png")
        save_image(ends.realism, out / f"{stem}_realism.png")
        for g in gammas:
            if isinstance(g, str):  # auto: chosen from the endpoints, no network call
                objective = g.partition(":")[2]
                hr = load_image(hrs[i]) if objective == "psnr" else None
                choice = auto_gamma(ends.fidelity, ends.realism, objective, hr=None if hr is None else _tensor(hr))
                save_image(ends.blend(choice.gamma), out / f"{stem}_auto-{objective}_gamma{gamma_label(choice.gamma)}.png")
                print(f"{f}: auto:{objective} chose gamma {choice.gamma:.3f} ({choice.method})")
                continue
            save_image(ends.blend(g), out / f"{stem}_gamma{gamma_label(g)}.png")
        print(f"{f}: endpoints and {len(gammas)} blends -> {out}/{stem}_*.png")
    return 0


def check_hr_sizes(images, hrs, scale: int) -> None:
    """Every HR image is its LR image's size times `scale`: checked for all pairs before anything is
    inferred or written, so a wrong --hr fails at once, not after the endpoints of the images
    before it (or its own) are on disk."""
    from ifcsr.data.images import load_image

    for lr_file, hr_file in zip(images, hrs):
        h, w = load_image(lr_file).shape[:2]
        H, W = load_image(hr_file).shape[:2]
        if (H, W) != (h * scale, w * scale):
            raise InputError(f"--hr {hr_file}: {W}x{H} pixels, but {lr_file} is {w}x{h} and the model upscales x{scale}, "
                             f"so auto:psnr needs an HR image of {w * scale}x{h * scale}; pass the HR image of that LR "
                             "image, in the order of the LR images")


def _tensor(image):
    from ifcsr.data.images import to_tensor

    return to_tensor(image)
