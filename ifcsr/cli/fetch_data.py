"""`ifcsr fetch-data`: download the RealSR / DRealSR test sets (sha256-checked) into the cache.
Imports the standard library, ifcsr.errors and ifcsr.data.datasets (which needs no torch)."""

from __future__ import annotations

from pathlib import Path

from ifcsr.data.datasets import DATASETS, cache_root, dataset_cache_dir, fetch_dataset, verify_dataset
from ifcsr.errors import InputError


def add_arguments(p):
    p.add_argument("names", nargs="+", choices=sorted(DATASETS), help="test sets to download")
    p.add_argument("--dir", default=None, help="destination folder (default: the cache, see `ifcsr fetch-data -h`)")
    p.add_argument("--verify", action="store_true", help="only check an existing copy (sizes, sha256)")
    p.epilog = (f"Cache: {cache_root()}/datasets/NAME ($IFCSR_CACHE, else $XDG_CACHE_HOME/ifcsr, else "
                "~/.cache/ifcsr). Source: the OSEDiff repository's copy of the StableSR test sets.")


def main(args) -> int:
    if args.dir is not None and len(args.names) > 1:
        raise InputError("--dir takes one test set at a time")
    for name in args.names:
        folder = Path(args.dir) if args.dir else dataset_cache_dir(name)
        if args.verify:
            problems = verify_dataset(name, folder)
            print(f"{name}: {folder}: " + ("ok" if not problems else f"{len(problems)} problem(s): "
                                           + "; ".join(problems[:10])))
            if problems:
                return 1
            continue
        path = fetch_dataset(name, folder=folder)
        print(f"{name}: {path} (set {DATASETS[name].env}={path} to use it from elsewhere)")
    return 0
