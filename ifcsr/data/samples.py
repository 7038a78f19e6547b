"""The sample photos that ship inside scikit-image (offline; DESIGN.md section 3): names, the
train / held-out split, loaders. Imports numpy, scikit-image (lazily) and ifcsr.errors only."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from ..errors import UnknownNameError

# --------------------------------------------------------------------------------------
# Sample photos that ship inside scikit-image (offline; DESIGN.md section 3)
# --------------------------------------------------------------------------------------

# Natural RGB photos only: grey (camera, moon...), synthetic (color, logo) and
# medical/microscopy (retina, ihc) images are left out on purpose. Fixed order.
SAMPLE_NAMES = ("astronaut", "rocket", "hubble_deep_field", "motorcycle", "chelsea", "coffee")
HELD_OUT = ("chelsea", "coffee")  # evaluation photos (DESIGN.md section 6)
TRAIN_NAMES = tuple(n for n in SAMPLE_NAMES if n not in HELD_OUT)

# Three more training photos from registry packages (issue 13: four photos were too few for the
# realism stage): matplotlib's grace_hopper (read from matplotlib's own sample data) and
# scikit-learn's china and flower (CC BY 2.0; copied into ifcsr/assets/photos with their
# attribution, see ifcsr/assets/NOTICE.md, since scikit-learn is not a dependency). Training only:
# never used for evaluation. PHOTO_NAMES, the "package-photos" training set, is sorted as a folder
# of these photos lists its files, so ImageFolder on `analysis/package_photos.py`'s output and
# PhotoDataset draw the same crops.
EXTRA_NAMES = ("grace_hopper", "china", "flower")
PHOTO_NAMES = tuple(sorted(TRAIN_NAMES + EXTRA_NAMES))
# The validation split of the generator preset (issue 28: every recipe is chosen on named
# validation images, never on the images it is reported on as held out). Two package photos kept
# out of that preset's training set, "package-photos-train"; chelsea, coffee and RealSR stay test
# images. (The tiny preset, older, trains on all seven: for it these two are training photos.)
VALIDATION_NAMES = ("flower", "grace_hopper")
GENERATOR_TRAIN_NAMES = tuple(n for n in PHOTO_NAMES if n not in VALIDATION_NAMES)
_ASSET_PHOTOS = Path(__file__).resolve().parents[1] / "assets" / "photos"


@cache
def _read_sample(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]  # left view of the stereo pair
    else:
        image = getattr(skimage.data, name)()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.flags.writeable = False  # the cache is shared; callers get copies
    return image


def load_sample(name: str) -> np.ndarray:
    """One bundled photo as an HxWx3 uint8 array (a fresh copy)."""
    if name not in SAMPLE_NAMES:
        raise UnknownNameError(f"unknown sample image {name!r}; valid names: {', '.join(SAMPLE_NAMES)}")
    return _read_sample(name).copy()


@cache
def _read_extra(name: str) -> np.ndarray:
    from PIL import Image

    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            image = np.asarray(im.convert("RGB"))
    else:
        path = _ASSET_PHOTOS / f"{name}.jpg"
        if not path.is_file():
            from ..errors import MissingFileError

            raise MissingFileError(f"{path}: the bundled photo is missing (reinstall ifcsr)")
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.flags.writeable = False
    return image


def load_photo(name: str) -> np.ndarray:
    """One training photo of PHOTO_NAMES (a scikit-image sample or one of EXTRA_NAMES) as an
    HxWx3 uint8 array (a fresh copy)."""
    if name in TRAIN_NAMES:
        return load_sample(name)
    if name not in EXTRA_NAMES:
        raise UnknownNameError(f"unknown training photo {name!r}; valid names: {', '.join(PHOTO_NAMES)}")
    return _read_extra(name).copy()


def sample_images() -> dict[str, np.ndarray]:
    """All bundled photos, name -> HxWx3 uint8, in the order of SAMPLE_NAMES."""
    return {name: load_sample(name) for name in SAMPLE_NAMES}


def train_images() -> dict[str, np.ndarray]:
    """The bundled photos used for training (TRAIN_NAMES)."""
    return {name: load_sample(name) for name in TRAIN_NAMES}


def held_out_images() -> dict[str, np.ndarray]:
    """The bundled photos kept for evaluation (HELD_OUT)."""
    return {name: load_sample(name) for name in HELD_OUT}
