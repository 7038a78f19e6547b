"""Write a folder of training photos that ship inside registry packages (issue 13's "more photos").

The four training photos of the tiny preset (scikit-image: astronaut, rocket, hubble_deep_field,
motorcycle's left view) plus matplotlib's grace_hopper and scikit-learn's china and flower. The
held-out photos (chelsea, coffee) are never written. scikit-learn is not a dependency of ifcsr:
without it installed, pass --sklearn-wheel with a wheel fetched by
`pip download scikit-learn --no-deps -d DIR` (its two JPEGs are read from the zip, nothing is
installed). Used by the stage-2 variants `*_photos7*` in analysis/results/texture_variants.csv:

    python analysis/package_photos.py OUT [--sklearn-wheel WHEEL]
    ifcsr train --preset tiny --fidelity-from ifcsr/assets/tiny --data OUT ...

The tiny preset itself no longer needs this folder: china and flower now ship in
ifcsr/assets/photos, and its stage 2 trains on the same seven photos in memory
(`StageConfig.data="package-photos"`, `ifcsr.data.PhotoDataset`, which draws the same crops as
an ImageFolder over this script's output).
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

from ifcsr.data import HELD_OUT, TRAIN_NAMES
from ifcsr.data.samples import load_sample

SKLEARN = ("china.jpg", "flower.jpg")


def sklearn_images(wheel: str | None) -> dict[str, Image.Image]:
    if wheel is None:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:
            sys.exit("scikit-learn is not installed: pass --sklearn-wheel (pip download scikit-learn --no-deps)")
        return {n: Image.fromarray(load_sample_image(n)) for n in SKLEARN}
    with zipfile.ZipFile(wheel) as z:
        return {n: Image.open(io.BytesIO(z.read(f"sklearn/datasets/images/{n}"))).convert("RGB") for n in SKLEARN}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--sklearn-wheel", default=None, help="a scikit-learn wheel to read china / flower from")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from matplotlib import cbook

    images = {n: Image.fromarray(load_sample(n)) for n in TRAIN_NAMES}  # HxWx3 uint8
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        images["grace_hopper"] = Image.open(f).convert("RGB")
    images.update({Path(n).stem: im for n, im in sklearn_images(args.sklearn_wheel).items()})
    assert not set(images) & set(HELD_OUT)
    for name, im in images.items():
        im.save(args.out / f"{name}.png")
        print(f"{args.out / name}.png {im.size[0]}x{im.size[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
