"""The sample photos that ship inside scikit-image (offline; DESIGN.md section 3): names, the
train / held-out split, loaders. Imports numpy, scikit-image (lazily) and ifcsr.errors only."""

from __future__ import annotations

from functools import cache

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


def sample_images() -> dict[str, np.ndarray]:
    """All bundled photos, name -> HxWx3 uint8, in the order of SAMPLE_NAMES."""
    return {name: load_sample(name) for name in SAMPLE_NAMES}


def train_images() -> dict[str, np.ndarray]:
    """The bundled photos used for training (TRAIN_NAMES)."""
    return {name: load_sample(name) for name in TRAIN_NAMES}


def held_out_images() -> dict[str, np.ndarray]:
    """The bundled photos kept for evaluation (HELD_OUT)."""
    return {name: load_sample(name) for name in HELD_OUT}
