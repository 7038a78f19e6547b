"""Training and evaluation datasets: image folders with random crops, the sample photos as a
dataset, mixtures, paired LR/HR folders. Imports torch, ifcsr.errors and ifcsr.data's images,
samples and degradations."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ifcsr.data.degradations import BicubicDegradation
from ifcsr.data.images import ImageError, load_image, to_tensor
from ifcsr.data.samples import HELD_OUT, PHOTO_NAMES, TRAIN_NAMES, load_photo, load_sample
from ifcsr.errors import InputError, InputTypeError, MissingFileError

# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")


def _crop_item(image: np.ndarray, rng: np.random.Generator, *, crop_size: int, degradation,
               name: str, vflip: bool) -> dict:
    """Random crop + flips of an HxWx3 uint8 image, then degrade it into an LR/HR pair."""
    h, w = image.shape[:2]
    top, left = int(rng.integers(h - crop_size + 1)), int(rng.integers(w - crop_size + 1))
    patch = image[top : top + crop_size, left : left + crop_size]
    # Horizontal flips only by default, as Real-ESRGAN (use_hflip) and OSEDiff: photos
    # upside down are not natural images and a diffusion prior knows it.
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    if vflip and rng.uniform() < 0.5:
        patch = patch[::-1]
    hr = to_tensor(np.ascontiguousarray(patch))[0]
    lr = degradation(hr, seed=rng)
    return {"hr": hr, "lr": lr, "name": name}


def _check_crop(crop_size: int, scale: int) -> None:
    if crop_size < scale or crop_size % scale:
        raise InputError(f"crop_size {crop_size} must be a positive multiple of scale {scale}")


def _check_degradation(degradation, scale: int):
    degradation = BicubicDegradation(scale) if degradation is None else degradation
    if getattr(degradation, "scale", scale) != scale:
        raise InputError(f"degradation scale {degradation.scale} differs from dataset scale {scale}")
    return degradation


def _list_images(root: Path, extensions: Sequence[str], recursive: bool = True) -> list[Path]:
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in exts)


def _image_size(path: Path, decode: bool) -> tuple[int, int]:
    """(H, W) of an image file; decode=True reads every pixel so truncation shows now."""
    if decode:
        return load_image(path).shape[:2]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it)") from err
    except OSError as err:
        raise ImageError(f"{path}: unreadable image ({err})") from err


def _warn_skipped(skipped: list[str], what: str, stacklevel: int = 3) -> None:
    if not skipped:
        return
    shown = "\n  ".join(skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    warnings.warn(f"{what}: skipped {len(skipped)} file(s):\n  {shown}{more}", stacklevel=stacklevel)


class ImageFolder(Dataset):
    """Random HR crops from every image under ``root`` (recursive) and their degraded LR.

    Items: {"hr": (3, crop, crop), "lr": (3, crop/scale, crop/scale), "name": path
    relative to root}. Crop, flips and degradation are drawn from (seed, epoch, index):
    `set_epoch(e)` gives every file a fresh crop and degradation each epoch, as Real-ESRGAN
    training does, and a resumed run that sets the same epoch sees the same items.
    ``limit`` keeps the first N files in sorted order (the paper: the first 10k of FFHQ).

    Unreadable, truncated, non-image and too-small files are skipped with one warning at
    init (``strict=True`` raises instead). ``verify=False`` reads headers only, which is
    fast for huge folders; truncated files are then caught (and skipped) when first read.
    A file that becomes unreadable during training is skipped with a warning too, never
    crashing a long run. ``length`` sets an epoch's size (default: one crop per file).
    """

    def __init__(self, root, *, crop_size: int = 128, scale: int = 4, degradation=None,
                 min_size: int | None = None, strict: bool = False, seed: int = 0,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, length: int | None = None,
                 vflip: bool = False, verify: bool = True, limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(f"{self.root}: no such folder")
        _check_crop(crop_size, scale)
        self.crop_size, self.scale, self.seed, self.vflip = crop_size, scale, seed, vflip
        self.degradation = _check_degradation(degradation, scale)
        self.min_size = crop_size if min_size is None else min_size
        if self.min_size < crop_size:
            raise InputError(f"min_size {self.min_size} is below crop_size {crop_size}: crops would not fit")

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive (or None for every file), got {limit}")
        self.files: list[Path] = []
        skipped = []
        for path in _list_images(self.root, extensions)[:limit]:
            try:
                h, w = _image_size(path, decode=verify)
                if min(h, w) < self.min_size:
                    raise ImageError(f"{path}: {h}x{w} is smaller than min_size {self.min_size}")
            except ImageError as err:
                if strict:
                    raise
                skipped.append(str(err))
                continue
            self.files.append(path)
        _warn_skipped(skipped, f"ImageFolder({self.root})")
        if not self.files:
            raise ImageError(
                f"{self.root}: no usable images (extensions {', '.join(extensions)}, "
                f"min size {self.min_size}px, {len(skipped)} skipped)"
            )
        if length is not None and length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.length = len(self.files) if length is None else int(length)
        self.epoch = 0
        self._bad: set[Path] = set()

    def set_epoch(self, epoch: int) -> None:
        """Draw crops and degradations of epoch `epoch` (DataLoader workers copy the dataset when
        an epoch's iterator starts, so set it before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for ImageFolder of length {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = len(self.files)
        start = index % n
        # On failure, try every other file once, in an order fixed by (seed, index).
        order = [start] + [int(i) for i in rng.permutation(n) if i != start]
        for i in order:
            path = self.files[i]
            if path in self._bad:
                continue
            try:
                image = load_image(path)
                h, w = image.shape[:2]
                if min(h, w) < self.crop_size:
                    raise ImageError(f"{path}: {h}x{w} is smaller than crop_size {self.crop_size}")
            except ImageError as err:
                self._bad.add(path)
                warnings.warn(f"ImageFolder: skipping {err}", stacklevel=2)
                continue
            name = path.relative_to(self.root).with_suffix("").as_posix()
            return _crop_item(image, rng, crop_size=self.crop_size, degradation=self.degradation,
                              name=name, vflip=self.vflip)
        raise ImageError(f"{self.root}: every image became unreadable ({len(self._bad)} skipped)")


class SampleDataset(Dataset):
    """Random crops of the bundled scikit-image photos (held in memory); items as ImageFolder.

    ``length`` defaults to 64 crops per photo; `set_epoch` as ImageFolder.
    """

    def __init__(self, names: Sequence[str] = TRAIN_NAMES, *, crop_size: int = 128, scale: int = 4,
                 degradation=None, seed: int = 0, length: int | None = None, vflip: bool = False):
        _check_crop(crop_size, scale)
        if isinstance(names, str):
            raise InputTypeError(f"names must be a sequence of names, got the string {names!r}")
        if not names:
            raise InputError("names is empty")
        self.names = tuple(names)
        self.images = [load_sample(n) for n in self.names]  # KeyError lists valid names
        small = [f"{n} {im.shape[0]}x{im.shape[1]}"
                 for n, im in zip(self.names, self.images) if min(im.shape[:2]) < crop_size]
        if small:
            raise ImageError(f"sample images smaller than crop_size {crop_size}: {', '.join(small)}")
        self.crop_size, self.scale, self.seed, self.vflip = crop_size, scale, seed, vflip
        self.degradation = _check_degradation(degradation, scale)
        self.length = 64 * len(self.names) if length is None else int(length)
        if self.length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for SampleDataset of length {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        i = index % len(self.names)
        return _crop_item(self.images[i], rng, crop_size=self.crop_size, degradation=self.degradation,
                          name=self.names[i], vflip=self.vflip)


class PhotoDataset(Dataset):
    """The "package-photos" training set: random crops of PHOTO_NAMES (the four scikit-image
    training photos, matplotlib's grace_hopper, scikit-learn's china and flower), in memory.

    Items and `set_epoch` as ImageFolder, and drawn exactly as ImageFolder draws them from a
    folder holding these photos as files (`analysis/package_photos.py OUT`): one crop per photo
    per epoch by default, from the random stream (seed, epoch, index), with ImageFolder's
    fallback permutation drawn first. So `--data OUT` and the preset's "package-photos" train
    the same crops.
    """

    def __init__(self, names: Sequence[str] = PHOTO_NAMES, *, crop_size: int = 128, scale: int = 4,
                 degradation=None, seed: int = 0, length: int | None = None, vflip: bool = False):
        _check_crop(crop_size, scale)
        if isinstance(names, str):
            raise InputTypeError(f"names must be a sequence of names, got the string {names!r}")
        if not names:
            raise InputError("names is empty")
        held = sorted(set(names) & set(HELD_OUT))
        if held:
            raise InputError(f"{', '.join(held)}: held-out evaluation photos are never training data")
        self.names = tuple(names)
        self.images = [load_photo(n) for n in self.names]
        small = [f"{n} {im.shape[0]}x{im.shape[1]}"
                 for n, im in zip(self.names, self.images) if min(im.shape[:2]) < crop_size]
        if small:
            raise ImageError(f"training photos smaller than crop_size {crop_size}: {', '.join(small)}")
        self.crop_size, self.scale, self.seed, self.vflip = crop_size, scale, seed, vflip
        self.degradation = _check_degradation(degradation, scale)
        self.length = len(self.names) if length is None else int(length)
        if self.length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for PhotoDataset of length {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = len(self.names)
        i = index % n
        rng.permutation(n)  # ImageFolder's fallback order: drawn so the crops below are the same
        return _crop_item(self.images[i], rng, crop_size=self.crop_size, degradation=self.degradation,
                          name=self.names[i], vflip=self.vflip)


class MixedDataset(Dataset):
    """Several datasets mixed by a ratio, one epoch at a time: the paper's LSDIR + FFHQ layout.

    ``ratios=None`` gives each dataset its own length's share, which is what concatenating the
    folders does (OSEDiff and PiSA-SR list LSDIR and the first 10k FFHQ faces in one file).
    With ratios, an epoch of ``length`` items (default: the sum of the lengths) holds
    round(ratio_i * length) items of dataset i, largest remainders first; within dataset i
    they are the first ones of a permutation drawn from (seed, epoch, i), cycled when the
    share exceeds its size. `set_epoch` reaches every part, so crops, degradations and the
    choice of files are fresh each epoch and the same for the same epoch.
    """

    def __init__(self, datasets: Sequence[Dataset], ratios: Sequence[float] | None = None, *,
                 length: int | None = None, seed: int = 0):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        sizes = [len(d) for d in self.datasets]
        if min(sizes) < 1:
            raise ValueError(f"MixedDataset: a dataset is empty (sizes {sizes})")
        weights = np.asarray(sizes if ratios is None else list(ratios), dtype=np.float64)
        if len(weights) != len(self.datasets) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"ratios must give one non-negative share per dataset ({len(self.datasets)}), "
                             f"not all zero; got {None if ratios is None else list(ratios)}")
        self.length = sum(sizes) if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be positive, got {length}")
        share = weights / weights.sum() * self.length
        counts = np.floor(share).astype(int)
        for i in np.argsort(-(share - counts), kind="stable")[: self.length - counts.sum()]:
            counts[i] += 1  # largest remainders
        self.counts = [int(c) for c in counts]
        self.offsets = np.cumsum([0] + self.counts)
        self.seed, self.epoch = seed, 0
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for MixedDataset of length {self.length}")
        i = int(np.searchsorted(self.offsets, index, side="right")) - 1
        j = index - int(self.offsets[i])
        key = (self.epoch, i)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] == self.epoch}
            self._perms[key] = np.random.default_rng([self.seed, self.epoch, i]).permutation(len(self.datasets[i]))
        perm = self._perms[key]
        return self.datasets[i][int(perm[j % len(perm)])]


# RealSR names pairs Canon_001_LR4.png / Canon_001_HR.png; the StableSR/OSEDiff test sets use
# the same name in test_LR and test_HR (RealSR: Canon_001_LR4.png in both; DRealSR:
# DSC_1454_x1.png in both). Either way the key is the stem without an _LR<n>/_HR suffix.
_LR_SUFFIX = re.compile(r"_LR\d*$", re.IGNORECASE)
_HR_SUFFIX = re.compile(r"_HR$", re.IGNORECASE)
_ANY_SUFFIX = re.compile(r"_(LR\d*|HR)$", re.IGNORECASE)


def pair_key(stem: str) -> str:
    """The name an LR, HR or output file is paired by: its stem without _LR<n> / _HR."""
    return _ANY_SUFFIX.sub("", stem)


class PairedFolder(Dataset):
    """LR/HR test pairs laid out as RealSR/DRealSR: ``root/lr_dir`` and ``root/hr_dir``.

    Files are matched by stem after stripping ``_LR<n>``/``_HR`` suffixes (``pair_key``);
    unmatched files are reported with one warning, or raise ``ImageError`` with strict=True
    (a benchmark must score every image it claims to). Each HR must be exactly ``scale`` times its LR.
    Items: {"lr": (3, h, w), "hr": (3, scale*h, scale*w), "name": str}.
    """

    def __init__(self, root, *, scale: int = 4, lr_dir: str = "test_LR", hr_dir: str = "test_HR",
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, strict: bool = False):
        self.root, self.scale = Path(root), scale
        lr_root, hr_root = self.root / lr_dir, self.root / hr_dir
        for d in (lr_root, hr_root):
            if not d.is_dir():
                raise MissingFileError(
                    f"{d}: no such folder (expected {lr_dir}/ and {hr_dir}/ under {self.root})"
                )
        lr_files, hr_files = _list_images(lr_root, extensions, False), _list_images(hr_root, extensions, False)
        if lr_root.resolve() == hr_root.resolve():
            # One folder holding both (RealSR's own layout): the suffix says which is which.
            lr_files = [p for p in lr_files if _LR_SUFFIX.search(p.stem)]
            hr_files = [p for p in hr_files if _HR_SUFFIX.search(p.stem)]
        lr_by_key = self._by_key(lr_files)
        hr_by_key = self._by_key(hr_files)
        keys = sorted(lr_by_key.keys() & hr_by_key.keys())
        unmatched = [str(lr_by_key[k]) for k in sorted(lr_by_key.keys() - hr_by_key.keys())]
        unmatched += [str(hr_by_key[k]) for k in sorted(hr_by_key.keys() - lr_by_key.keys())]
        if unmatched and strict:
            raise ImageError(f"{self.root}: {len(unmatched)} file(s) without a partner in {lr_dir}/ and "
                             f"{hr_dir}/ (paired by name without _LR<n>/_HR): {', '.join(unmatched[:5])}"
                             + (", ..." if len(unmatched) > 5 else ""))
        _warn_skipped([f"{u} (no partner)" for u in unmatched], f"PairedFolder({self.root})")
        if not keys:
            raise ImageError(f"{self.root}: no LR/HR pairs matched by name in {lr_dir}/ and {hr_dir}/")
        self.pairs = [(k, lr_by_key[k], hr_by_key[k]) for k in keys]
        for name, lr_path, hr_path in self.pairs:
            (lh, lw), (hh, hw) = _image_size(lr_path, False), _image_size(hr_path, False)
            if (hh, hw) != (lh * scale, lw * scale):
                hint = " (LR already upsampled to HR size? downsample it first)" if (lh, lw) == (hh, hw) else ""
                raise ImageError(
                    f"pair {name!r}: HR {hr_path.name} is {hh}x{hw} but LR {lr_path.name} is {lh}x{lw}; "
                    f"expected HR = {scale} x LR = {lh * scale}x{lw * scale}{hint}"
                )

    @staticmethod
    def _by_key(files: list[Path]) -> dict[str, Path]:
        by_key: dict[str, Path] = {}
        for p in files:
            key = pair_key(p.stem)
            if key in by_key:
                raise ImageError(f"two files match the name {key!r}: {by_key[key]} and {p}")
            by_key[key] = p
        return by_key

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        name, lr_path, hr_path = self.pairs[index]
        return {"lr": to_tensor(load_image(lr_path))[0], "hr": to_tensor(load_image(hr_path))[0], "name": name}


def pairs_from_samples(names: Sequence[str] = HELD_OUT, degradation=None, crop: int | None = None,
                       *, seed: int = 0) -> list[dict]:
    """LR/HR pairs from the bundled photos, as PairedFolder items (for demos and analysis).

    degradation: default BicubicDegradation(4). crop: None keeps the whole photo (cut at
    the bottom/right to a multiple of the scale); an int takes a centred crop x crop.
    seed: sample i is degraded with seed + i.
    """
    degradation = BicubicDegradation(4) if degradation is None else degradation
    scale = degradation.scale
    if crop is not None:
        _check_crop(crop, scale)
    pairs = []
    for i, name in enumerate(names):
        image = load_sample(name)
        h, w = image.shape[:2]
        if crop is None:
            image = image[: h - h % scale, : w - w % scale]
        else:
            if min(h, w) < crop:
                raise ImageError(f"sample {name!r} is {h}x{w}, smaller than crop {crop}")
            top, left = (h - crop) // 2, (w - crop) // 2
            image = image[top : top + crop, left : left + crop]
        hr = to_tensor(np.ascontiguousarray(image))[0]
        pairs.append({"lr": degradation(hr, seed=seed + i), "hr": hr, "name": name})
    return pairs
