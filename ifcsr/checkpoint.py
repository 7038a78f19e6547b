"""Checkpoints on disk: the trainer state without code, sha256 records, atomic folder swaps, run locks.
Imports torch (safetensors) and ifcsr.errors only.

Trainer state: tensors in safetensors, structure in JSON.

A trainer state is a nested tree of dicts, lists and tuples whose leaves are tensors or JSON
scalars: the stage and step, the RNG state (a uint8 tensor), and any number of named
`state_dict()`s (the optimizer; a discriminator and its optimizer when a stage has them).

    trainer_state.safetensors   every tensor of the tree, keyed by its path ("objects/optimizer/state/0/exp_avg")
    trainer_state.json          the tree with {"__tensor__": key} in place of each tensor, plus the
                                sha256 of the safetensors file

Nothing here can run code when read: no unpickling (a state from an older ifcsr,
trainer_state.pt, is read with `torch.load(weights_only=True)` only, which refuses anything
but tensors and plain containers).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import torch

from .errors import CheckpointError, RunLockedError

STATE_TENSORS = "trainer_state.safetensors"
STATE_INDEX = "trainer_state.json"
LEGACY_STATE = "trainer_state.pt"
STATE_FORMAT = 1


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- tree <-> JSON + tensors


def _encode(obj, path: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = path or "root"
        while key in tensors:  # str(1) and "1" would collide; keep both
            key += "#"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        # non-string keys (an optimizer's state is keyed by parameter index): keep the key type
        return {"__items__": [[_encode(k, f"{path}/key", {}), _encode(v, f"{path}/{k}", tensors)]
                              for k, v in obj.items()]}
    raise CheckpointError(f"trainer state: cannot store a {type(obj).__name__} at {path or 'the root'!r} "
                          "(only tensors, numbers, strings, None and lists/tuples/dicts of them)")


def _decode(node, tensors: dict, where: str):
    if isinstance(node, list):
        return [_decode(v, tensors, where) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        key = node["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"{where}: tensor {key!r} is listed in the index but missing from "
                                  f"{STATE_TENSORS} (incomplete or mixed checkpoint)")
        return tensors[key]
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_decode(v, tensors, where) for v in node["__tuple__"])
    if "__items__" in node:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in node["__items__"]}
    return {k: _decode(v, tensors, where) for k, v in node.items()}


def save_state(folder, tree: dict) -> None:
    """Write `tree` into `folder` as trainer_state.safetensors + trainer_state.json."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    index = _encode(tree, "", tensors)
    save_file(tensors, folder / STATE_TENSORS)
    os.chmod(folder / STATE_TENSORS, 0o666 & ~current_umask())  # safetensors writes 0600
    doc = {"format": STATE_FORMAT, "sha256": sha256_file(folder / STATE_TENSORS), "tree": index}
    (folder / STATE_INDEX).write_text(json.dumps(doc, indent=1))


def has_state(folder) -> bool:
    folder = Path(folder)
    return (folder / STATE_INDEX).is_file() or (folder / LEGACY_STATE).is_file()


def load_state(folder) -> dict | None:
    """Read the trainer state of `folder` (None when there is none). Raises CheckpointError for
    a state that is incomplete, corrupt, or (old format) holds anything but tensors."""
    folder = Path(folder)
    index_file = folder / STATE_INDEX
    if index_file.is_file():
        return _load_new(folder, index_file)
    if (folder / LEGACY_STATE).is_file():
        return _load_legacy(folder / LEGACY_STATE)
    return None


def _load_new(folder: Path, index_file: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        doc = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{index_file}: not valid JSON ({type(err).__name__}: {str(err)[:120]}); the trainer "
                              "state is corrupt: start over with `--no-resume` (or resume=False)") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or "tree" not in doc:
        raise CheckpointError(f"{index_file}: not an ifcsr trainer state of format {STATE_FORMAT}")
    tensor_file = folder / STATE_TENSORS
    if not tensor_file.is_file():
        raise CheckpointError(f"{tensor_file} is missing next to {index_file.name}: incomplete checkpoint; "
                              "start over with `--no-resume` (or resume=False)")
    if sha256_file(tensor_file) != doc.get("sha256"):
        raise CheckpointError(f"{tensor_file}: sha256 differs from the one recorded in {index_file.name} "
                              "(corrupt or replaced file); start over with `--no-resume` (or resume=False)")
    try:
        tensors = load_file(tensor_file)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{tensor_file}: unreadable ({err})") from err
    try:
        tree = _decode(doc["tree"], tensors, str(index_file))
    except RecursionError:
        raise CheckpointError(f"{index_file}: nested more deeply than any trainer state; the file is corrupt or "
                              "crafted: start over with `--no-resume` (or resume=False)") from None
    except (TypeError, ValueError, AttributeError) as err:  # e.g. {"__items__": 3}, {"__float__": "x"}
        raise CheckpointError(f"{index_file}: not an ifcsr trainer state ({type(err).__name__}: {str(err)[:120]}); "
                              "start over with `--no-resume` (or resume=False)") from None
    if not isinstance(tree, dict) or not {"stage", "step"} <= set(tree):
        raise CheckpointError(f"{index_file}: the state has no stage/step")
    check_stage_step(tree["stage"], tree["step"], index_file)
    return tree


STATE_STAGES = (1, 2)  # the stages that write a trainer state (stage 0 writes its backbone only)
MAX_STATE_STEP = 10_000_000  # = ifcsr.config.MAX_STEPS: no stage has more steps


def check_stage_step(stage, step, where) -> tuple[int, int]:
    """A trainer state's stage (1 or 2) and step (an integer in 0..10^7), or a CheckpointError naming the
    file: a resume reads them as indices (the stage's config, the data order), so a stage 7 or a
    step "abc" or -5 must stop here, not as a KeyError or an error deep inside the sampler."""
    def as_int(v):
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point() and v.dtype != torch.bool:
            v = v.item()  # an old trainer_state.pt may hold them as 0-d tensors
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    st, sp = as_int(stage), as_int(step)
    if st not in STATE_STAGES:
        raise CheckpointError(f"{where}: the trainer state names stage {_short(stage)}; only stages "
                              f"{' and '.join(map(str, STATE_STAGES))} are resumable. The state is corrupt or from "
                              "another program: start over with `--no-resume` (or resume=False)")
    if sp is None or not 0 <= sp <= MAX_STATE_STEP:
        raise CheckpointError(f"{where}: the trainer state's step is {_short(step)}, not an integer in "
                              f"0..{MAX_STATE_STEP}. The state is corrupt: start over with `--no-resume` (or resume=False)")
    return st, sp


def _short(v) -> str:
    if isinstance(v, int) and v.bit_length() > 128:
        return "a huge integer"  # repr refuses more than 4300 digits
    text = repr(v) if not isinstance(v, (list, dict, tuple)) else f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _load_legacy(path: Path) -> dict:
    """A trainer_state.pt of ifcsr <= 0.x: read with weights_only=True, so a file that holds
    anything but tensors and plain containers is refused, never executed."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the restricted unpickler raises for any class or callable in the file
        raise CheckpointError(
            f"{path}: refused to load this old-format trainer state: it holds more than tensors and plain "
            f"values (it may contain code), or it is corrupt ({type(err).__name__}). Nothing in it was run. "
            "Delete it or start over with `--no-resume` (or resume=False)") from None
    if not isinstance(st, dict) or not {"stage", "step"} <= set(st):
        raise CheckpointError(f"{path}: not an ifcsr trainer state (no stage/step)")
    stage, step = check_stage_step(st["stage"], st["step"], path)
    objects = {"optimizer": st["optimizer"]} if st.get("optimizer") is not None else {}
    rng = {"torch": st["torch_rng"]} if isinstance(st.get("torch_rng"), torch.Tensor) else {}
    return {"stage": stage, "step": step, "rng": rng, "objects": objects}



# --------------------------------------------------------------------------- checkpoint folders
#
# A checkpoint folder is complete when it holds its manifest (checksums.json: the sha256 of every
# other file), which IFCSR.save writes last. It is written as a temporary sibling
# `.NAME.tmp-PID-XXXX` and swapped in with two renames (NAME -> .NAME.old, tmp -> NAME). A kill
# can leave: an incomplete tmp (ignored), a complete tmp with NAME gone (between the two renames:
# the tmp is the newest complete state), or a stale .NAME.old. `recover_folder` settles each case
# before a checkpoint is read or written.

MANIFEST = "checksums.json"
MANIFEST_FORMAT = 1


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(folder) -> None:
    """Give `folder` and everything in it the permissions the user's umask gives new files
    (e.g. 0644 / 0755 with umask 022). safetensors writes its files 0600 (and tempfile.mkdtemp
    makes folders 0700), so a checkpoint could not be shared with a class."""
    mask = current_umask()
    folder = Path(folder)
    os.chmod(folder, 0o777 & ~mask)
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_manifest(folder) -> Path:
    """Record the sha256 of every file in `folder` (recursively) in folder/checksums.json.
    IFCSR.save calls it last; call it yourself after editing a checkpoint's files on purpose."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    out = folder / MANIFEST
    out.write_text(json.dumps({"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}, indent=1))
    return out


# The files a checkpoint's readers open (IFCSR.load, GeneratorIFCSR.load_checkpoint, the trainer's
# resume), and the folder of an embedded backbone, whose every file diffusers may read. Each one
# present must be listed in the manifest: a list that checks only what it names would let a
# changed config.json through by dropping its line.
READ_FILES = ("config.json", "ifcsr.json", "history.json", "fidelity.safetensors", "realism.safetensors",
              "empty_prompt.safetensors", STATE_INDEX, STATE_TENSORS)
READ_FOLDERS = ("backbone",)


def read_files(folder) -> list[str]:
    """The files of `folder` (relative, posix) that a loader reads: READ_FILES and every file
    under READ_FOLDERS, those present."""
    folder = Path(folder)
    out = [name for name in READ_FILES if (folder / name).is_file()]
    for sub in READ_FOLDERS:
        if (folder / sub).is_dir():
            out += sorted(p.relative_to(folder).as_posix() for p in (folder / sub).rglob("*") if p.is_file())
    return out


def _inside(folder: Path, rel, manifest: Path) -> Path:
    """folder/rel for a manifest entry that names a file inside `folder`; a CheckpointError for
    anything else (an absolute path, "..", a symlink out of the folder): the manifest must never
    make ifcsr open, or hash, a file outside the checkpoint."""
    from pathlib import PurePosixPath, PureWindowsPath

    bad = None
    if not isinstance(rel, str) or not rel or "\0" in rel:
        bad = "not a file name"
    elif PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        bad = "an absolute path"
    elif ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        bad = "a path that leaves the folder"
    else:
        p = folder / rel
        try:
            inside = p.resolve().is_relative_to(folder.resolve())
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            bad = "a link that leads out of the folder"
    if bad:
        shown = rel if isinstance(rel, str) and len(rel) <= 200 else type(rel).__name__
        raise CheckpointError(f"{manifest}: the entry {shown!r} is {bad}; a checkpoint's checksums name only files "
                              "inside its folder. The checkpoint is corrupt or crafted: copy it again from its source")
    return p


def verify_manifest(folder) -> None:
    """Check every file recorded in folder/checksums.json against its sha256, and that the record
    covers every file a loader reads (`read_files`). CheckpointError names the first file that is
    missing, unlisted, outside the folder, truncated or changed, and what to do."""
    folder = Path(folder)
    f = folder / MANIFEST
    if not f.is_file():
        raise CheckpointError(
            f"{folder}: no {MANIFEST} (the sha256 of each file): the checkpoint is incomplete or was made by an "
            f"older ifcsr. If you trust it, record its checksums with `python -m ifcsr.checkpoint {folder}`")
    try:
        doc = json.loads(f.read_text())
        files = doc["files"]
        if not isinstance(files, dict) or not files:
            raise KeyError("files")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as err:
        raise CheckpointError(f"{f}: not a valid checksum record ({type(err).__name__}); the checkpoint is "
                              "corrupt: copy it again or retrain") from None
    paths = {rel: _inside(folder, rel, f) for rel in files}  # every entry checked before any is read
    unlisted = [rel for rel in read_files(folder) if rel not in files]
    if unlisted:
        raise CheckpointError(
            f"{folder / unlisted[0]}: not listed in {MANIFEST}"
            f"{f' (nor are {len(unlisted) - 1} more)' if len(unlisted) > 1 else ''}, but ifcsr reads it: it was "
            "added or its checksum removed after saving, so nothing vouches for it. Copy the checkpoint again or "
            f"retrain; if you changed it on purpose, re-record with `python -m ifcsr.checkpoint {folder}`")
    for rel, want in files.items():
        p = paths[rel]
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (listed in {MANIFEST}); the checkpoint is incomplete: "
                                  "copy it again or retrain")
        if sha256_file(p) != want:
            raise CheckpointError(
                f"{p}: its sha256 differs from the one recorded in {MANIFEST}: the file is corrupt or was "
                "changed after saving. Copy the checkpoint again or retrain; if you changed it on purpose, "
                f"re-record with `python -m ifcsr.checkpoint {folder}`")


def is_complete(folder) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def _temp_pid(p: Path) -> int | None:
    try:
        return int(p.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def new_temp_folder(path) -> Path:
    """A fresh temporary sibling of `path`, created with the user's umask (tempfile.mkdtemp would
    make it 0700, and the renamed checkpoint could then not be shared)."""
    import secrets

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder next to {path}")


def swap_in(tmp: Path, path: Path) -> None:
    """Replace `path` with the complete folder `tmp` (see the comment above on kill windows)."""
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _as_os_error(err: BaseException) -> OSError | None:
    """The OSError behind a failed write, or None. safetensors (Rust) reports its I/O errors as a
    SafetensorError whose text carries the OS's: "I/O error: No space left on device (os error 28)"."""
    import errno
    import re

    if isinstance(err, OSError):
        return err
    if type(err).__name__ != "SafetensorError":
        return None
    text = str(err)
    m = re.search(r"\(os error (\d+)\)", text)
    code = int(m.group(1)) if m else (errno.ENOSPC if "No space left on device" in text else None)
    return None if code is None else OSError(code, os.strerror(code))


def write_folder(path, write) -> Path:
    """Write a checkpoint folder atomically: `write(tmp)` fills a temporary sibling, which gets
    the user's umask and its checksums.json (last: a folder with its manifest is complete), then
    replaces `path`. An interrupted or failed write leaves the previous folder in place; an
    OSError (full disk, no permission), also one safetensors reports as a SafetensorError,
    becomes an OutputError naming the folder."""
    from .errors import OutputError, describe_os_error

    def failed(os_err: OSError) -> OutputError:
        kept = f"; the previous checkpoint in {path} is unchanged" if path.exists() else ""
        return OutputError(describe_os_error(os_err, str(path)) + kept)

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        tmp = new_temp_folder(path)
    except OSError as err:
        raise OutputError(describe_os_error(err, str(path))) from err
    try:
        write(tmp)
        apply_umask(tmp)  # shareable: safetensors writes 0600
        write_manifest(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        os_err = _as_os_error(err)
        if os_err is not None:
            raise failed(os_err) from err
        raise
    try:
        swap_in(tmp, path)  # interrupted here, recover_folder finishes it on the next read or save
    except OSError as err:
        raise OutputError(describe_os_error(err, str(path))) from err
    return path


def recover_folder(path) -> str | None:
    """Settle what an interrupted save left next to `path`; returns what it did (or None).

    - `path` present: leftovers (.old, temporary folders of dead processes) are removed.
    - `path` missing: the newest COMPLETE temporary folder (killed between the two renames), else
      a complete .old, becomes `path`.
    Temporary folders of live processes (another save in progress) are left alone."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return None
    old = path.with_name(f".{path.name}.old")
    temps = []
    for p in parent.glob(f".{path.name}.tmp-*"):
        pid = _temp_pid(p)
        if p.is_dir() and (pid is None or pid == os.getpid() or not _pid_alive(pid)):
            temps.append(p)
    did = None
    if not path.exists():
        complete = sorted((p for p in temps if is_complete(p)), key=lambda p: (p / MANIFEST).stat().st_mtime)
        if complete:
            os.replace(complete[-1], path)
            temps.remove(complete[-1])
            did = f"recovered {path} from the unfinished swap {complete[-1].name}"
        elif old.is_dir() and is_complete(old):
            os.replace(old, path)
            did = f"recovered {path} from {old.name}"
    for p in temps:
        shutil.rmtree(p, ignore_errors=True)
    if path.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return did


# --------------------------------------------------------------------------- run lock

LOCK_FILE = ".ifcsr.lock"
_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


class RunLock:
    """Refuse a second run writing into the same folder: `with RunLock(out): ...`.

    The lock file (OUT/.ifcsr.lock) holds the owner's pid and host. A lock left by a process that
    no longer exists on this host is stale and taken over; one from another host cannot be checked
    and is refused with its path, so it can be removed by hand. Re-entrant within a process."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.file = self.folder / LOCK_FILE
        self.stale = None  # the stale owner taken over, if any

    def __enter__(self):
        import socket

        key = str(self.file.resolve()) if self.file.parent.exists() else str(self.file.absolute())
        if key in _HELD:
            _HELD[key] += 1
            self._key = key
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.file.resolve())
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                try:
                    owner = json.loads(self.file.read_text())
                    pid, host = int(owner["pid"]), str(owner["host"])
                except FileNotFoundError:
                    continue  # released meanwhile
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    owner, pid, host = None, None, me["host"]  # unreadable: a writer killed mid-write
                if pid is not None and (host != me["host"] or _pid_alive(pid)):
                    where = "" if host == me["host"] else f" on host {host!r}"
                    raise RunLockedError(
                        f"{self.folder} is in use by another ifcsr run (pid {pid}{where}, lock file {self.file}). "
                        "Wait for it to finish or choose another --out; if no such run exists any more, "
                        f"delete {self.file}") from None
                self.stale = owner
                try:
                    self.file.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            _HELD[key] = 1
            self._key = key
            return self
        raise RunLockedError(f"could not take the lock {self.file}; another run keeps taking it")

    def __exit__(self, *exc):
        _HELD[self._key] -= 1
        if _HELD[self._key] == 0:
            del _HELD[self._key]
            try:
                self.file.unlink()
            except FileNotFoundError:
                pass
        return False


def main(argv=None) -> int:
    """`python -m ifcsr.checkpoint FOLDER...`: record the sha256 of each file of a checkpoint you
    trust (one made by an older ifcsr, or edited by hand)."""
    import sys

    folders = sys.argv[1:] if argv is None else argv
    if not folders:
        print(main.__doc__)
        return 2
    for folder in folders:
        if not (Path(folder) / "config.json").is_file():
            print(f"{folder}: not an ifcsr checkpoint (no config.json)", file=sys.stderr)
            return 2
        print(write_manifest(folder))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
