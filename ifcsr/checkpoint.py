"""Trainer state on disk without code: tensors in safetensors, structure in JSON.

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
from pathlib import Path

import torch

from .errors import CheckpointError

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
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{index_file}: not valid JSON ({err}); the trainer state is corrupt: "
                              "start over with `--no-resume` (or resume=False)") from err
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
    tree = _decode(doc["tree"], tensors, str(index_file))
    if not isinstance(tree, dict) or not {"stage", "step"} <= set(tree):
        raise CheckpointError(f"{index_file}: the state has no stage/step")
    return tree


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
    objects = {"optimizer": st["optimizer"]} if st.get("optimizer") is not None else {}
    rng = {"torch": st["torch_rng"]} if isinstance(st.get("torch_rng"), torch.Tensor) else {}
    return {"stage": int(st["stage"]), "step": int(st["step"]), "rng": rng, "objects": objects}

