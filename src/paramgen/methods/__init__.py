"""Parameter generators behind one interface (base.Generator), found by name in the registry,
each declaring what it takes (options.MethodOptions, read by name with ``method_options``).

Methods load on first use: ``paramgen.methods.RPG`` imports the RPG package then.
"""

from __future__ import annotations

import importlib
from typing import Any

from paramgen.methods.options import MethodOptions, Option
from paramgen.methods.registry import get_method, method_names, method_options, register_method

_LAZY = {
    "Generator": "paramgen.methods.base", "load_generator": "paramgen.methods.folder",
    "read_config": "paramgen.methods.folder",
    "RPG": "paramgen.methods.rpg", "RPGConfig": "paramgen.methods.rpg",
    "PDiff": "paramgen.methods.pdiff", "PDiffConfig": "paramgen.methods.pdiff",
    "IGPG": "paramgen.methods.igpg", "IGPGConfig": "paramgen.methods.igpg",
}

__all__ = sorted(_LAZY) + ["METHODS", "MethodOptions", "Option", "get_method", "method_names",
                          "method_options", "register_method"]


class _Methods(dict):
    """``METHODS[name]``: the registered class, importing built-ins on first use."""

    def __missing__(self, name: str) -> type:
        return get_method(name)

    def __contains__(self, name: object) -> bool:
        return name in method_names()

    def __iter__(self):
        return iter(method_names())

    def keys(self):  # type: ignore[override]
        return method_names()


METHODS = _Methods()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paramgen.methods' has no attribute {name!r}")
