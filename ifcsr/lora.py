"""The two LoRA adapters on any frozen network: their parameters, their files, per-sample mixing.
Imports torch, peft, safetensors and ifcsr.errors only; every backbone kind (ifcsr.models for the
diffusion UNets, ifcsr.generator for pretrained SR generators) builds on it.

The adapters are peft's, as diffusers' own LoRA training uses them: "fidelity" (f_theta) and
"realism" (f_phi) on one frozen host module, saved with `get_peft_model_state_dict` to safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

ADAPTERS = ("fidelity", "realism")


def set_active_adapter(host: nn.Module, adapter: str) -> None:
    """Make `adapter` the active one in every LoRA layer of `host` (diffusers' `set_adapter` for a
    module that is not a diffusers model). peft marks the active adapter's parameters trainable and
    the others frozen; the trainer sets requires_grad for its stage afterwards."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in host.modules():
        if isinstance(m, BaseTunerLayer):
            m.set_adapter(adapter)


def lora_parameters(host: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """The LoRA parameters of one adapter, by name."""
    return {n: p for n, p in host.named_parameters() if "lora_" in n and f".{adapter}." in n + "."}


def adapter_state_dict(host: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(host, adapter_name=adapter).items()}


def load_adapter_state_dict(host: nn.Module, adapter: str, state: dict, *, source=None) -> None:
    """Load one adapter's LoRA weights. Every key the adapter has must be present with its shape
    and finite values: a partial, other-rank or corrupt adapter is a CheckpointError, never a
    silent half-load."""
    from peft.utils import set_peft_model_state_dict

    where = f"{source}" if source is not None else f"adapter {adapter!r}"
    want = {k: v.shape for k, v in adapter_state_dict(host, adapter).items()}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: adapter {adapter!r} does not match this model: {len(missing)} of {len(want)} keys missing"
            f"{' (e.g. ' + missing[0] + ')' if missing else ''}, {len(unexpected)} unexpected"
            f"{' (e.g. ' + unexpected[0] + ')' if unexpected else ''}; the file is incomplete or from another "
            "model (target modules, backbone): use the checkpoint's own config.json")
    for k, shape in want.items():
        if tuple(state[k].shape) != tuple(shape):
            got, exp = tuple(state[k].shape), tuple(shape)
            raise CheckpointError(
                f"{where}: {k} has shape {got}, this model expects {exp}: the adapter was trained with another "
                "LoRA rank or backbone than config.json says (ModelConfig.lora_rank); use the config it was saved with")
        if state[k].is_floating_point() and not torch.isfinite(state[k]).all():
            raise CheckpointError(f"{where}: {k} holds NaN or infinite values: the adapter is corrupt; "
                                  "copy the checkpoint again or retrain")
        if state[k].is_floating_point() and state[k].numel() and state[k].abs().max() > 1e6:
            # trained LoRA factors are O(1) (the bundle's largest is below 1); 1e6 is overwritten bytes
            raise CheckpointError(f"{where}: {k} holds values up to {state[k].abs().max().item():.3g}, far beyond any "
                                  "trained adapter: the file is corrupt; copy the checkpoint again or retrain")
    set_peft_model_state_dict(host, state, adapter_name=adapter)


def load_safetensors(path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}); it is truncated or corrupt: "
                              "copy the checkpoint again or retrain") from err


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); the checkpoint is corrupt: copy it again "
                              "or retrain") from err
    except RecursionError:  # json recurses on nested lists: a crafted file can exhaust the stack
        raise CheckpointError(f"{path}: nested more deeply than Python's JSON reader allows; the checkpoint is "
                              "corrupt or crafted: copy it again or retrain") from None


def adapter_metadata(cfg) -> dict:
    """What an adapter file records about how it was built (strings, as safetensors metadata must
    be): rank, alpha (the scale alpha / rank multiplies its output by) and the modules it sits on,
    from a ModelConfig. Backbone kinds may add their own keys (ifcsr.generator: lora_blocks)."""
    return {"lora_rank": str(cfg.lora_rank), "lora_alpha": repr(float(cfg.lora_alpha)),
            "target_modules": ",".join(cfg.target_modules)}


def check_adapter_metadata(f, name: str, want: dict) -> None:
    """An adapter file records its role ("adapter": "fidelity" or "realism") and how it was
    built (`want`'s keys: rank, alpha, placement, as strings) in its safetensors metadata, as each
    backbone kind's `save` writes it. A swapped fidelity/realism pair, or a config.json edited to
    another alpha, is a CheckpointError instead of a silently different output. A file without
    metadata (a checkpoint saved before the metadata existed, like the bundled one) is accepted."""
    from safetensors import safe_open

    try:
        with safe_open(str(f), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises several types for a file it cannot read
        raise CheckpointError(f"{f}: not a readable safetensors file ({err}); copy the checkpoint again") from err
    if meta.get("adapter") not in (None, name):
        raise CheckpointError(f"{f}: holds the {meta['adapter']!r} adapter, not {name!r}: the adapter files were "
                              "swapped or renamed; copy the checkpoint again")
    diff = [f"{k} {meta[k]} (file) vs {want[k]} (config.json)" for k in want if k in meta and meta[k] != want[k]]
    if diff:
        raise CheckpointError(f"{f}: the adapter was trained with {'; '.join(diff)}: config.json was edited or "
                              "belongs to another checkpoint (its LoRA rank, alpha or placement differ from the "
                              "adapter's); use the config the adapters were saved with")


class MixedAdapters:
    """Context manager: run each batch element through its own adapter in ONE UNet pass.

    peft's LoRA layers accept `adapter_names=[...]` per sample; PeftModel injects it with a
    forward pre-hook (peft/tuners/lora/model.py `_enable_peft_forward_hooks`). diffusers' UNet
    is not a PeftModel, so we register the same hook ourselves.
    """

    def __init__(self, host, adapter_names):
        self.host, self.names, self.handles = host, list(adapter_names), []

    def __enter__(self):
        from peft.tuners.lora import LoraLayer

        def hook(module, args, kwargs):
            kwargs["adapter_names"] = self.names
            return args, kwargs

        for m in self.host.modules():
            if isinstance(m, LoraLayer):
                self.handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


