"""What a generator method declares it takes, as plain data, and the checks at the API boundary.

Every method keeps one contract (:class:`paramgen.methods.base.Generator`):
``fit(collections, steps=None, seed=0, workdir=None, progress=True, callback=None)`` and
``sample(n, *, seed=0, progress=False, **options)`` (likewise ``sample_to_files`` and
``sample_to_peft``). What differs between methods is declared, not coded into the commands: a
method's class attribute ``options`` is a :class:`MethodOptions` naming the options its sampling
takes (RPG: ``condition``, ``mode``, ...; IGPG: ``like``, ``dataset``, ...), whether ``fit``
takes several collections, and whether it learns from a collection's conditions. The commands
read these declarations through :func:`paramgen.methods.registry.method_options` and build their
flags from them, so a method is added without touching a command.

This module imports nothing heavy: the built-in declarations (``methods/<name>/options.py``)
are read to build ``paramgen train --help`` and ``paramgen sample --help`` without loading torch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

# How a command line reads an option's value (commands/sample.py turns each into a parser).
KINDS = ("text", "int", "count", "float", "condition", "file", "flag")

# Keywords of the contract itself: a method cannot declare an option of the same name.
CONTRACT_NAMES = frozenset({"n", "seed", "progress", "metadata", "paths", "out_dirs",
                            "peft_config"})


@dataclass(frozen=True)
class Option:
    """One keyword option of a method's ``sample`` (and ``sample_to_files``/``sample_to_peft``).

    ``help``: one line for users (``--help`` shows it); ``kind``: how a command line reads the
    value (:data:`KINDS`: ``count`` is an integer >= 1, ``condition`` task bits or
    comma-separated numbers, ``file`` an existing path, ``flag`` a switch); ``choices``: the
    values allowed, if a fixed set; ``required``: sampling refuses to run without it;
    ``metavar``: the placeholder shown in ``--help``; ``cli``: offered as ``--name`` by
    ``paramgen sample`` (off for values a command line cannot spell, such as a module);
    ``files``: also taken by ``sample_to_files`` and ``sample_to_peft`` (off for an option that
    changes what ``sample`` returns).
    """

    help: str
    kind: str = "text"
    choices: tuple[str, ...] = ()
    required: bool = False
    metavar: str | None = None
    cli: bool = True
    files: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Option kind {self.kind!r} is not one of {KINDS}")
        if not isinstance(self.help, str) or not self.help.strip():
            raise ValueError("an Option needs a one-line help text")

    @property
    def shown(self) -> str:
        """``name``'s placeholder on a command line: the metavar, the choices, or the kind."""
        if self.metavar:
            return self.metavar
        if self.choices:
            return "{" + ",".join(self.choices) + "}"
        return {"count": "N", "int": "N", "float": "X", "condition": "BITS",
                "file": "FILE", "flag": ""}.get(self.kind, "TEXT")


@dataclass(frozen=True)
class MethodOptions:
    """A method's declaration (the class attribute ``options`` of a generator).

    ``summary``: one line naming the method (``paramgen train --help``); ``presets``: its named
    settings; ``collections``: ``"one"`` (``fit`` takes one collection) or ``"several"`` (a list
    of them, a single one too); ``conditions``: ``fit`` learns from the collection's conditions
    (``paramgen train --condition-from manifest``); ``sample``: option name -> :class:`Option`.
    """

    summary: str = ""
    presets: tuple[str, ...] = ()
    collections: str = "one"
    conditions: bool = False
    sample: Mapping[str, Option] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.collections not in ("one", "several"):
            raise ValueError(f"MethodOptions.collections must be 'one' or 'several', got "
                             f"{self.collections!r}")
        for name, option in self.sample.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"sample option name {name!r} is not a Python identifier")
            if name in CONTRACT_NAMES:
                raise ValueError(f"sample option {name!r} is a keyword of the generator "
                                 "contract itself; give the option another name")
            if not isinstance(option, Option):
                raise TypeError(f"sample option {name!r} must be an Option, got "
                                 f"{type(option).__name__}")

    @property
    def several_collections(self) -> bool:
        return self.collections == "several"

    def sample_names(self, files: bool = False) -> list[str]:
        """The options ``sample`` takes (``files``: those ``sample_to_files`` takes)."""
        return [k for k, o in self.sample.items() if o.files or not files]

    def describe(self, files: bool = False) -> str:
        """``name (help), ...`` of every option, for error messages."""
        names = self.sample_names(files)
        if not names:
            return "no options besides n, seed and progress"
        return "; ".join(f"{k} ({self.sample[k].help})" for k in names)


def check_count(value: Any, name: str = "n") -> int:
    """A positive whole number given as an int (``2.0`` or ``True`` is refused, not rounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r} "
                        f"({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    return int(value)


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"seed must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def check_steps(value: Any) -> int | None:
    """``fit(steps=...)``: None (the config's) or a positive int."""
    return None if value is None else check_count(value, "steps")


def accepted_options(declared: MethodOptions, given: Mapping[str, Any], where: str,
                     files: bool = False) -> dict[str, Any]:
    """``given`` if the method takes every option in it and every option it requires is there.

    An unknown option is a ``TypeError`` (as for any unexpected keyword), a missing required one
    a ``ValueError``; both name what the method does take. ``where``: e.g. ``"IGPG.sample"``.
    """
    allowed = declared.sample_names(files)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        extra = ""
        if files and any(k in declared.sample for k in unknown):
            extra = " (only sample() takes " + ", ".join(
                k for k in unknown if k in declared.sample) + ")"
        raise TypeError(f"{where}: unexpected sample options {unknown}{extra}; it takes n, seed, "
                        f"progress and {declared.describe(files)}")
    missing = [k for k in allowed if declared.sample[k].required and given.get(k) is None]
    if missing:
        raise ValueError(f"{where} needs " + ", ".join(
            f"{k}= ({declared.sample[k].help})" for k in missing)
                         + f"; it takes {declared.describe(files)}")
    return dict(given)
