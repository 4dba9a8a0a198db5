"""Which generator methods exist and what each declares it takes, by name.

Built-in methods are known by module path: listing them and reading their declarations
(``paramgen train --help``, ``paramgen sample --help``) imports only their torch-free
``options`` modules, never the methods themselves. A method class registers itself with
:func:`register_method` when its module loads; third-party methods register the same way and
become available to ``load_generator`` and the CLI once their module is imported.

A method's declaration is its class attribute ``options``, a
:class:`~paramgen.methods.options.MethodOptions`; :func:`method_options` reads it by name. The
commands build their flags from it and never compare a method's name.
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple, TypeVar

from paramgen.methods.options import MethodOptions


class Builtin(NamedTuple):
    module: str       # imported to register the class (loads torch)
    options: str      # its declaration ``OPTIONS`` (torch-free)


BUILTIN: dict[str, Builtin] = {
    "rpg": Builtin("paramgen.methods.rpg.generator", "paramgen.methods.rpg.options"),
    "pdiff": Builtin("paramgen.methods.pdiff.generator", "paramgen.methods.pdiff.options"),
    "igpg": Builtin("paramgen.methods.igpg.generator", "paramgen.methods.igpg.options"),
}
_CLASSES: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register_method("rpg") class RPG(Generator): ...``.

    The class must declare what it takes: ``options = MethodOptions(...)`` (a subclass of
    :class:`~paramgen.methods.base.Generator` inherits an empty declaration).
    """

    def wrap(cls: T) -> T:
        if name in _CLASSES and _CLASSES[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_CLASSES[name].__name__} "
                             f"and {cls.__name__})")
        if not isinstance(getattr(cls, "options", None), MethodOptions):
            raise TypeError(f"{cls.__name__} declares no options: give the class an attribute "
                            "options = paramgen.methods.options.MethodOptions(...) (or subclass "
                            "paramgen.methods.base.Generator)")
        cls.method = name
        _CLASSES[name] = cls
        return cls

    return wrap


def unregister_method(name: str) -> None:
    """Forget a method registered with :func:`register_method` (a built-in stays known)."""
    _CLASSES.pop(name, None)


def method_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_CLASSES))


def get_method(name: str) -> type:
    """The generator class registered under ``name`` (importing a built-in on first use)."""
    if name not in _CLASSES and name in BUILTIN:
        importlib.import_module(BUILTIN[name].module)
    if name not in _CLASSES:
        raise ValueError(f"unknown generator method {name!r}; known: {method_names()}")
    return _CLASSES[name]


def method_options(name: str) -> MethodOptions:
    """What method ``name`` declares it takes; a built-in's without importing the method."""
    if name in _CLASSES:
        return _CLASSES[name].options
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name].options).OPTIONS
    raise ValueError(f"unknown generator method {name!r}; known: {method_names()}")


def methods_where(test: Callable[[MethodOptions], bool]) -> list[str]:
    """The names of the methods whose declaration passes ``test`` (for error messages)."""
    return [m for m in method_names() if test(method_options(m))]
