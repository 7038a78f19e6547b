"""Tests only: models that raise once their endpoints are inferred, and a torch in which no network
runs, for the claims "auto-gamma never touches a model" and "a slider move calls no network".

- `poison(model)`: every forward of the model and of each of its submodules raises, and so do
  its `infer`, `infer_branch` and `super_resolve` (an instance handed to the code under test).
- `poison_model_classes(monkeypatch)`: the same methods raise on every IFCSR and GeneratorIFCSR
  (and their loaders too), so code that builds or loads its own model fails as well.
- `forbid_networks(monkeypatch, allow=...)`: calling any torch module raises, except modules
  whose class lives in one of the `allow` packages (and what they call): a metric's own
  network, e.g. pyiqa's NIQE, is a measuring instrument, not the SR model.
"""

from __future__ import annotations

import torch

MODEL_METHODS = ("infer", "infer_branch", "super_resolve")


class NetworkCalled(AssertionError):
    """A network ran where none may."""


def _raiser(what: str):
    def raise_(*args, **kwargs):
        raise NetworkCalled(f"{what} was called")

    return raise_


def poison(model: torch.nn.Module) -> torch.nn.Module:
    """Make every forward of `model` (and of each submodule) and its inference methods raise."""
    for name, module in model.named_modules():
        module.forward = _raiser(f"{type(module).__name__}.forward ({name or 'the model'})")
    for method in MODEL_METHODS:
        if hasattr(model, method):
            setattr(model, method, _raiser(f"model.{method}"))
    return model


def poison_model_classes(monkeypatch) -> None:
    from ifcsr.generator import GeneratorIFCSR
    from ifcsr.models import IFCSR

    for cls in (IFCSR, GeneratorIFCSR):
        for method in (*MODEL_METHODS, "forward"):
            monkeypatch.setattr(cls, method, _raiser(f"{cls.__name__}.{method}"))
        for loader in ("load", "load_checkpoint"):
            if hasattr(cls, loader):
                monkeypatch.setattr(cls, loader, _raiser(f"{cls.__name__}.{loader}"))


def forbid_networks(monkeypatch, allow: tuple[str, ...] = ()) -> list[str]:
    """Patch torch.nn.Module.__call__: a module call raises NetworkCalled unless its class comes
    from a package in `allow` (or it runs inside such a call). Returns the allowed calls' classes."""
    call = torch.nn.Module.__call__
    inside = [0]
    allowed: list[str] = []

    def guarded(self, *args, **kwargs):
        kind = type(self).__module__
        if inside[0] or kind.split(".")[0] in allow:
            allowed.append(f"{kind}.{type(self).__name__}")
            inside[0] += 1
            try:
                return call(self, *args, **kwargs)
            finally:
                inside[0] -= 1
        raise NetworkCalled(f"a network ran: {kind}.{type(self).__name__}")

    monkeypatch.setattr(torch.nn.Module, "__call__", guarded)
    return allowed
