"""Lazy public names for a subpackage's `__init__`: each name is imported from its module on first
use, so importing the subpackage costs nothing. Imports the standard library only."""

from __future__ import annotations

import importlib


def lazy_names(package: str, names: dict[str, str]):
    """(`__getattr__`, `__dir__`) for `package` whose public `names` map to their modules
    (relative to the package): ``__getattr__, __dir__ = lazy_names(__name__, _NAMES)``."""

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
