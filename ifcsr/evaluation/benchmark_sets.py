"""Real-world test sets as the benchmark reads them: LR/HR pairs matched by name (`BenchmarkSet`),
other methods' output folders, command-line lists of gammas and folders, OSEDiff's pyiqa log, and
a cache of baseline outputs as 8-bit PNGs. Imports torch, numpy, pandas, ifcsr.errors and ifcsr.data."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ifcsr.data.images import ImageError, load_image, to_tensor
from ifcsr.errors import InputError, MissingFileError
from ifcsr.evaluation.endpoint_cache import _safe

# pyiqa log names (OSEDiff's test_metrics.py) -> ifcsr.evaluation.metrics names
LOG_METRICS = {"PSNR": "psnr", "SSIM": "ssim", "LPIPS": "lpips", "DISTS": "dists", "CLIPIQA": "clipiqa",
               "NIQE": "niqe", "MUSIQ": "musiq", "MANIQA": "maniqa-pipal", "FID": "fid"}


# ------------------------------------------------------------------------------ the images


@dataclass
class BenchmarkSet:
    """The pairs scored: dicts {"lr", "hr", "name", "hr_path"}, and where they came from."""

    name: str           # "realsr", "drealsr" or the folder's name
    root: Path
    pairs: list
    total: int          # pairs in the whole set
    selection: str      # "all 100", "every 10th by name (10 of 100)", ...

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.pairs]

    def describe(self) -> str:
        shown = ", ".join(self.names[:6]) + (", ..." if len(self.names) > 6 else "")
        lr, hr = tuple(self.pairs[0]["lr"].shape[-2:]), tuple(self.pairs[0]["hr"].shape[-2:])
        return (f"{self.name} ({self.root}): {self.selection}; LR {lr[0]}x{lr[1]} -> HR {hr[0]}x{hr[1]} "
                f"for the first pair; images: {shown}")


def load_benchmark(dataset, *, scale: int = 4, every: int = 1, limit: int | None = None,
                   names=None) -> BenchmarkSet:
    """The LR/HR pairs of a test set ("realsr", "drealsr") or of a folder with test_LR/ and
    test_HR/, paired by file name (without _LR<n>/_HR); an unpaired file or an HR that is not
    `scale` x its LR is an error. every: keep every k-th pair by name (0, k, 2k, ...);
    limit: then keep the first `limit`; names: exactly these pairs (by pair name). The
    selection is said in `selection`."""
    from ifcsr.data.datasets import DATASETS, resolve_dataset
    from ifcsr.data.folders import PairedFolder

    if every < 1 or (limit is not None and limit < 1):
        raise InputError(f"every and limit must be >= 1, got every={every}, limit={limit}")
    root = resolve_dataset(dataset)
    ds = PairedFolder(root, scale=scale, strict=True)
    idx = list(range(0, len(ds), every))[:limit]
    if names is not None:
        have = [n for n, _, _ in ds.pairs]
        unknown = [n for n in names if n not in have]
        if unknown:
            raise InputError(f"{root}: no pair named {', '.join(unknown[:5])} (names are file stems "
                             f"without _LR<n>/_HR, e.g. {have[0]})")
        idx = [i for i in idx if have[i] in set(names)]
    pairs = []
    for i in idx:
        item = ds[i]
        item["hr_path"] = ds.pairs[i][2]
        pairs.append(item)
    total = len(ds)
    if len(idx) == total:
        selection = f"all {total} pairs"
    else:
        how = [f"every {every}th pair by name"] if every > 1 else []
        how += [f"the first {limit}"] if limit is not None else []
        how += [f"the pairs named {', '.join(ds.pairs[i][0] for i in idx)}"] if names is not None else []
        selection = ", ".join(how) + f" ({len(idx)} of {total})"
    name = str(dataset).lower() if str(dataset).lower() in DATASETS else root.name
    return BenchmarkSet(name, root, pairs, total, selection)


def load_outputs(folder, bset: BenchmarkSet, *, label: str = "") -> list[torch.Tensor]:
    """Another method's outputs for the pairs of `bset`, (1, 3, H, W) each, in pair order.

    Files are matched to pairs by name without _LR<n>/_HR (OSEDiff writes Canon_001_LR4.png
    for the pair Canon_001). A pair without an output, two outputs for one pair, or an output
    whose size differs from its HR is an error; outputs of images outside `bset` are ignored
    when a subset is scored, and warned about otherwise.
    """
    from ifcsr.data.folders import IMAGE_EXTENSIONS, pair_key

    folder = Path(folder)
    what = f"--compare {label}={folder}" if label else str(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{what}: not a folder")
    by_key: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
            key = pair_key(p.stem)
            if key in by_key:
                raise ImageError(f"{what}: two outputs for {key!r}: {by_key[key].name} and {p.name}")
            by_key[key] = p
    missing = [n for n in bset.names if n not in by_key]
    if missing:
        raise ImageError(f"{what}: no output for {len(missing)} of {len(bset.names)} pairs "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
                         "outputs are matched by name without _LR<n>/_HR")
    extra = sorted(set(by_key) - set(bset.names))
    if extra and len(bset.pairs) == bset.total:
        warnings.warn(f"{what}: {len(extra)} output(s) match no pair and are ignored: {', '.join(extra[:5])}",
                      stacklevel=2)
    outs = []
    for p in bset.pairs:
        x = to_tensor(load_image(by_key[p["name"]]))
        if x.shape[-2:] != p["hr"].shape[-2:]:
            raise ImageError(f"{what}: {by_key[p['name']].name} is {x.shape[-2]}x{x.shape[-1]} but its HR is "
                             f"{p['hr'].shape[-2]}x{p['hr'].shape[-1]}")
        outs.append(x)
    return outs


def parse_compare(items) -> dict[str, Path]:
    """["osediff=DIR", ...] -> {"osediff": Path(DIR)}; names must be unique."""
    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, folder = str(item).partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--compare {item!r}: expected NAME=DIR")
        if name in out:
            raise InputError(f"--compare: {name!r} given twice")
        out[name] = Path(folder)
    return out


def parse_gammas(values) -> list[float]:
    """Gammas from numbers and START:STOP:STEP ranges ("0:1:0.05" is 21 values)."""
    out: list[float] = []
    for v in values or []:
        s = str(v)
        if ":" in s:
            try:
                a, b, step = (float(t) for t in s.split(":"))
            except ValueError:
                raise InputError(f"gamma range {s!r}: expected START:STOP:STEP") from None
            if step <= 0 or b < a:
                raise InputError(f"gamma range {s!r}: needs STOP >= START and STEP > 0")
            n = round((b - a) / step)
            if abs(a + n * step - b) > 1e-6:
                raise InputError(f"gamma range {s!r}: STEP does not divide STOP - START")
            out += [round(a + i * step, 6) for i in range(n + 1)]
        else:
            out.append(float(s))
    bad = [g for g in out if not (math.isfinite(g) and 0 <= g <= 1)]
    if bad:
        raise InputError(f"gamma values must be in [0, 1], got {bad}")
    return sorted(set(out))


# ------------------------------------------------------------------------------ OSEDiff's pyiqa log


def read_pyiqa_log(path) -> tuple[pd.DataFrame, dict]:
    """OSEDiff's `test_metrics.py` log -> (per-image values: image, metric, value; the logged
    means: metric -> value). Image names are pair names (Canon_001_LR4.png -> Canon_001)."""
    from ifcsr.data.folders import pair_key

    text = Path(path).read_text()
    rows = []
    for m in re.finditer(r"(\S+\.(?:png|jpg|jpeg|bmp|tif|tiff|webp)) \| ([^|]+)\|", text, flags=re.IGNORECASE):
        image = pair_key(Path(m.group(1)).stem)
        for name, value in re.findall(r"([A-Z]+): ([-+0-9.eE]+)", m.group(2)):
            if name in LOG_METRICS:
                rows.append(dict(image=image, metric=LOG_METRICS[name], value=float(value)))
    avg = text.split("Average Metrics", 1)
    means = {}
    if len(avg) == 2:
        for name, value in re.findall(r"([A-Z]+): ([-+0-9.eE]+)", avg[1]):
            if name in LOG_METRICS:
                means[LOG_METRICS[name]] = float(value)
    if not rows:
        raise InputError(f"{path}: no per-image lines found (expected OSEDiff's test_metrics.py log)")
    return pd.DataFrame(rows, columns=["image", "metric", "value"]), means


# ------------------------------------------------------------------------------ output cache


class OutputCache:
    """8-bit outputs of a method that is not inference-free (Real-ESRGAN, DNI), one PNG per
    (image, point) under ``folder/<method key>/``: a rerun reads them instead of re-running
    the network. key: what decides the output (weights digest, alpha). folder=None: no cache."""

    def __init__(self, folder, key: str):
        self.folder = Path(folder) / key[:24] if folder is not None else None
        self.hits = 0
        self.calls = 0

    def get(self, name: str, lr: torch.Tensor, point: str, produce) -> torch.Tensor:
        from ifcsr.data.degradations import quantize
        from ifcsr.data.images import save_image
        from ifcsr.evaluation.endpoint_cache import image_fingerprint

        path = None
        if self.folder is not None:
            path = self.folder / f"{_safe(name)}-{image_fingerprint(lr)[:12]}-{point}.png"
            if path.is_file():
                self.hits += 1
                return to_tensor(load_image(path))
        self.calls += 1
        x = quantize(produce().float().cpu())
        if path is not None:
            save_image(x, path)
        return x
