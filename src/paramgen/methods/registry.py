"""Which generator methods exist, by name, without importing any of them.

Built-in methods are known by module path, so listing them (``paramgen train --help``) does not
load torch; a method class registers itself with :func:`register_method` when its module loads.
Third-party methods register the same way and become available to ``load_generator`` and the
CLI once their module is imported.
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

BUILTIN: dict[str, str] = {
    "rpg": "paramgen.methods.rpg",
    "pdiff": "paramgen.methods.pdiff",
    "igpg": "paramgen.methods.igpg",
}
_CLASSES: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register_method("rpg") class RPG(Generator): ...``."""

    def wrap(cls: T) -> T:
        if name in _CLASSES and _CLASSES[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_CLASSES[name].__name__} "
                             f"and {cls.__name__})")
        cls.method = name
        _CLASSES[name] = cls
        return cls

    return wrap


def method_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_CLASSES))


def get_method(name: str) -> type:
    """The generator class registered under ``name`` (importing a built-in on first use)."""
    if name not in _CLASSES and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _CLASSES:
        raise ValueError(f"unknown generator method {name!r}; known: {method_names()}")
    return _CLASSES[name]
