"""Class sets and task bits: look up class names, validate bits, describe them in words."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import PromptError
from .lexicon import _lexicon
from .vocabulary import _CLASS_SETS


def class_names(classes: str | Sequence[str] = "digits") -> list[str]:
    """The class names of a class set: ``"digits"``, ``"mnist1d"``, ``"cifar10"`` or a list.

    A list is returned as given (stripped), after checking it has at least two distinct names.
    """
    if isinstance(classes, str):
        key = re.sub(r"[\s_\-]", "", classes.lower())
        if key not in _CLASS_SETS:
            raise ValueError(f"unknown class set {classes!r}; use 'digits', 'mnist1d', "
                             "'cifar10' or a list of class names")
        return list(_CLASS_SETS[key])
    names = [str(n).strip() for n in classes]
    if len(names) < 2:
        raise ValueError(f"a task needs at least two classes, got {names!r}")
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered) or "" in lowered:
        raise ValueError(f"class names must be distinct and non-empty, got {names!r}")
    return names


def _examples_for(names: Sequence[str]) -> tuple[str, ...]:
    try:
        return _lexicon(tuple(names)).examples
    except ValueError:
        return ()


def _as_bit_string(bits: str | Sequence[int | float | bool], n: int) -> str:
    """Normalise bits given as "0101", [0, 1, 0, 1] or floats; check length and alphabet."""
    if isinstance(bits, str):
        s = bits.strip()
    else:
        chars = []
        for v in bits:
            if v in (0, 1) and not isinstance(v, str):
                chars.append(str(int(v)))
            else:
                raise ValueError(f"task bits must be 0 or 1, got {v!r} in {bits!r}")
        s = "".join(chars)
    if len(s) != n or set(s) - {"0", "1"}:
        raise ValueError(f"task bits must be {n} characters of 0/1 (one per class), got {bits!r}")
    return s


def _check_not_trivial(bits: str, names: Sequence[str], text: str) -> None:
    if "1" in bits and "0" in bits:
        return
    if "1" not in bits:
        why = "it selects no class, so every input would be negative"
        if re.search(r"\band\b|&", text.lower()):
            why += (" (note: 'and' between two properties means both must hold; use 'or' for "
                    "either, e.g. 'even or prime')")
    else:
        why = ("it selects every class (" + ", ".join(names) + "), so every input would be "
               "positive")
    raise PromptError(f"the prompt {text!r} gives a trivial task: {why}; a task needs at least "
                      "one positive and one negative class", prompt=text,
                      examples=_examples_for(names))


def describe_bits(bits: str | Sequence[int | float | bool],
                  classes: str | Sequence[str] = "digits") -> str:
    """Say in words which classes a task makes positive: ``"positive: 1, 3, 5, 7, 9"``.

    ``bits`` may be a string or a sequence of 0/1 (a condition vector works). Trivial tasks are
    described too ("positive: none"), since describing is harmless.
    """
    names = class_names(classes)
    s = _as_bit_string(bits, len(names))
    chosen = [name for name, bit in zip(names, s) if bit == "1"]
    return "positive: " + (", ".join(chosen) if chosen else "none")
