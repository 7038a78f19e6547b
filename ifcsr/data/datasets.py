"""Real-world test sets (RealSR, DRealSR as the StableSR/OSEDiff crops): where they are, how to get them.
Imports the standard library, ifcsr.errors, ifcsr.provenance and ifcsr.weights (no torch).

`ifcsr fetch-data` answers fast: no torch here (tqdm only inside `fetch_dataset`).

    ifcsr fetch-data realsr            # -> <cache>/datasets/realsr/{test_LR,test_HR,results_osediff}
    resolve_dataset("realsr")          # $IFCSR_REALSR, else the fetch cache, else a clear error
    resolve_dataset("path/to/DIR")     # any folder with test_LR/ and test_HR/

Source: the OSEDiff repository (cswry/OSEDiff, Apache-2.0) at a pinned commit ships both test
sets as `preset/datasets/benchmark_{realsr,drealsr}/`: `test_LR/` (128x128), `test_HR/`
(512x512) -- copied from the StableSR test sets (Iceclear/StableSR-TestSets) -- plus
OSEDiff's own outputs (`results_osediff/`) and its pyiqa log (`results_osediff/metrics/`).
Files are fetched one by one from raw.githubusercontent.com and checked against the sha256 in
`ifcsr/assets/datasets/<name>.json`. RealSR's hashes were computed from a copy of that commit;
DRealSR's were not available offline, so the first download that passes the structural check
pins them in the cache (`.sha256-pinned.json`, trust on first use) and later checks use the pin.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ifcsr.errors import IFCSRError, InputError, MissingFileError
from ifcsr.provenance import file_sha256
from ifcsr.weights.download import install_verified, offline_flag

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "DatasetDownloadError",
    "DatasetPinError",
    "DatasetSpec",
    "cache_root",
    "dataset_cache_dir",
    "fetch_dataset",
    "resolve_dataset",
    "verify_dataset",
]

_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "datasets"
PIN_FILE = ".sha256-pinned.json"


class DatasetNotFoundError(MissingFileError):
    """A named test set is not on disk; the message says how to get it."""


class DatasetDownloadError(IFCSRError, RuntimeError):
    """A download failed or a file did not match its sha256; the message says what to do."""


class DatasetPinError(IFCSRError, ValueError):
    """The cache's record of pinned sha256 (`.sha256-pinned.json`) is unreadable or malformed."""


@dataclass(frozen=True)
class DatasetSpec:
    """One test set: its files (relative path -> sha256 or None) and where they come from."""

    name: str
    title: str
    env: str  # environment variable naming a local copy
    manifest: dict  # the JSON in ifcsr/assets/datasets/<name>.json (or a test's own)

    @property
    def files(self) -> dict:
        return self.manifest["files"]

    def url(self, rel: str) -> str:
        m = self.manifest
        return m["url"].format(commit=m["commit"], folder=m["folder"], file=rel)

    def describe_source(self) -> str:
        m = self.manifest
        return f"{m['repository']} @ {m['commit'][:12]}, {m['folder']}/"


def _load_spec(name: str, title: str, env: str) -> DatasetSpec:
    return DatasetSpec(name, title, env, json.loads((_ASSETS / f"{name}.json").read_text()))


DATASETS = {
    "realsr": _load_spec("realsr", "RealSR x4 (StableSR/OSEDiff crops: 100 pairs, LR 128 px, HR 512 px)",
                         "IFCSR_REALSR"),
    "drealsr": _load_spec("drealsr", "DRealSR x4 (StableSR/OSEDiff crops: 93 pairs, LR 128 px, HR 512 px)",
                          "IFCSR_DREALSR"),
}


def cache_root() -> Path:
    """ifcsr's cache (`ifcsr.weights.cache.ifcsr_cache_dir`): $IFCSR_CACHE, else $XDG_CACHE_HOME/ifcsr,
    else ~/.cache/ifcsr."""
    from ifcsr.weights.cache import ifcsr_cache_dir

    return ifcsr_cache_dir()


def dataset_cache_dir(name: str) -> Path:
    """Where `ifcsr fetch-data NAME` puts a test set: <cache_root()>/datasets/NAME."""
    return cache_root() / "datasets" / name


def _spec(name) -> DatasetSpec:
    if isinstance(name, DatasetSpec):
        return name
    try:
        return DATASETS[str(name).lower()]
    except KeyError:
        raise InputError(f"unknown test set {name!r}; known: {', '.join(DATASETS)}") from None


def _is_pair_folder(path: Path) -> bool:
    return (path / "test_LR").is_dir() and (path / "test_HR").is_dir()


def resolve_dataset(dataset) -> Path:
    """The folder holding test_LR/ and test_HR/ for a name ("realsr", "drealsr") or a path.

    A name resolves, in order, to: the folder in its environment variable (IFCSR_REALSR,
    IFCSR_DREALSR), then the fetch cache (`dataset_cache_dir`). Anything else is a folder.
    Raises DatasetNotFoundError saying how to get the data.
    """
    key = str(dataset).lower()
    if key in DATASETS:
        spec = DATASETS[key]
        env = os.environ.get(spec.env)
        if env:
            if not _is_pair_folder(Path(env)):
                raise DatasetNotFoundError(
                    f"{spec.env}={env}: no test_LR/ and test_HR/ there; point it at the {spec.name} folder")
            return Path(env)
        cached = dataset_cache_dir(spec.name)
        if _is_pair_folder(cached):
            return cached
        raise DatasetNotFoundError(f"{spec.title} not found. {how_to_get(spec)}")
    path = Path(dataset)
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"--dataset {dataset}: neither a known test set ({', '.join(DATASETS)}) nor a folder")
    if not _is_pair_folder(path):
        raise DatasetNotFoundError(f"{path}: expected test_LR/ and test_HR/ inside (RealSR/DRealSR layout)")
    return path


def how_to_get(spec) -> str:
    spec = _spec(spec)
    n = sum(1 for f in spec.files if f.startswith(("test_LR/", "test_HR/")))
    return (f"Run `ifcsr fetch-data {spec.name}` on a connected machine ({n} images plus OSEDiff's outputs, "
            f"from {spec.describe_source()}, into {dataset_cache_dir(spec.name)}); or put a copy with "
            f"test_LR/ and test_HR/ anywhere and set {spec.env}=DIR (or pass --dataset DIR). "
            f"Files: {spec.url('test_LR/<name>.png')} etc.; the list is ifcsr/assets/datasets/{spec.name}.json.")


# ------------------------------------------------------------------------------ verification




def _pins(folder: Path) -> dict:
    """The sha256 pinned at the first verified download ({} when none): {relative path: hex digest}."""
    import re

    p = folder / PIN_FILE
    if not p.is_file():
        return {}
    try:
        pins = json.loads(p.read_text())
        why = None if isinstance(pins, dict) else f"a JSON {type(pins).__name__}, not an object"
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        pins, why = None, f"not valid JSON ({type(err).__name__})"
    if why is None:
        bad = next((k for k, v in pins.items() if not (isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v))), None)
        why = None if bad is None else f"the entry {bad[:80]!r} is not a sha256 hex digest"
    if why is not None:
        # The pins are what later checks trust: never guess around a broken record.
        raise DatasetPinError(
            f"{p}: {why}. It records the sha256 of each file pinned at the first download (trust on first use). "
            f"Delete it and run `ifcsr fetch-data` again to pin the files present now (only if you trust this copy), "
            f"or delete {folder} to download the test set afresh")
    return pins


def expectedfile_sha256(spec, folder: Path, rel: str) -> str | None:
    """The manifest's sha256, else the one pinned by the first verified download, else None."""
    return _spec(spec).files.get(rel) or _pins(folder).get(rel)


def _structural_problems(spec: DatasetSpec, folder: Path) -> list[str]:
    """Every listed file present; LR, HR and output PNGs of the manifest's sizes."""
    from PIL import Image, UnidentifiedImageError

    m, problems = spec.manifest, []
    sizes = {"test_LR/": m.get("lr_size"), "test_HR/": m.get("hr_size"), "results_osediff/": m.get("hr_size")}
    for rel in spec.files:
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        want = next((s for prefix, s in sizes.items() if rel.startswith(prefix) and rel.endswith(".png")), None)
        if want is None:
            continue
        try:
            with Image.open(path) as im:
                size = im.size
        except (UnidentifiedImageError, OSError) as err:
            problems.append(f"{rel}: unreadable image ({err})")
            continue
        if size != (want, want):
            problems.append(f"{rel}: {size[0]}x{size[1]}, expected {want}x{want}")
    return problems


def verify_dataset(spec, folder=None) -> list[str]:
    """Problems with a local copy (missing files, wrong sizes, sha256 mismatches); [] when good."""
    spec = _spec(spec)
    folder = Path(folder) if folder is not None else dataset_cache_dir(spec.name)
    problems = _structural_problems(spec, folder)
    for rel in spec.files:
        want = expectedfile_sha256(spec, folder, rel)
        if want and (folder / rel).is_file() and file_sha256(folder / rel) != want:
            problems.append(f"{rel}: sha256 differs from {'the manifest' if spec.files.get(rel) else 'the pin'}")
    return problems


# ------------------------------------------------------------------------------ download


def _download(url: str, dest: Path, want: str | None, *, opener, bar) -> None:
    """url -> dest, sha256-checked before the rename (ifcsr.weights.download)."""
    with opener(url) as resp:
        install_verified(resp, dest, want, on_chunk=bar.update, on_mismatch=lambda actual: DatasetDownloadError(
            f"{url}: sha256 {actual}, expected {want}; not installed (a changed upstream file or a broken transfer)"))


def _default_opener(url: str):
    return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "ifcsr"}), timeout=60)


def fetch_dataset(name, *, folder=None, opener=None, progress: bool = True) -> Path:
    """Download a test set into `folder` (default `dataset_cache_dir(name)`) and return it.

    Files already present with the right sha256 are kept; others are downloaded and checked
    before they are moved into place (a failed check installs nothing). Offline
    (IFCSR_OFFLINE / HF_HUB_OFFLINE, or no connection) it raises DatasetDownloadError saying
    what to download and where to put it. `opener(url)` returns a file-like response (tests
    pass a fake one; default urllib). Files without a sha256 in the manifest are pinned after
    the whole set passes the structural check (see the module docstring).
    """
    from tqdm.auto import tqdm

    spec = _spec(name)
    folder = Path(folder) if folder is not None else dataset_cache_dir(spec.name)
    todo = [rel for rel in spec.files if not (folder / rel).is_file()
            or (expectedfile_sha256(spec, folder, rel) and file_sha256(folder / rel) != expectedfile_sha256(spec, folder, rel))]
    if todo:
        why = offline_flag()
        if why and opener is None:
            raise DatasetDownloadError(f"{len(todo)} file(s) of {spec.name} missing and downloads are off ({why}). "
                                       + how_to_get(spec))
        opener = opener or _default_opener
        with tqdm(total=None, unit="B", unit_scale=True, desc=f"fetch {spec.name}", disable=not progress) as bar:
            for i, rel in enumerate(todo):
                bar.set_postfix_str(f"file {i + 1}/{len(todo)}")
                url = spec.url(rel)
                try:
                    _download(url, folder / rel, expectedfile_sha256(spec, folder, rel), opener=opener, bar=bar)
                except (urllib.error.URLError, OSError) as err:
                    raise DatasetDownloadError(f"{url}: {err}. {how_to_get(spec)}") from err
    problems = _structural_problems(spec, folder)
    if problems:
        raise DatasetDownloadError(f"{folder}: {len(problems)} problem(s) after download: "
                                   + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
    unpinned = {rel: file_sha256(folder / rel) for rel in spec.files if not expectedfile_sha256(spec, folder, rel)}
    if unpinned:
        pins = {**_pins(folder), **unpinned}
        (folder / PIN_FILE).write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    return folder
