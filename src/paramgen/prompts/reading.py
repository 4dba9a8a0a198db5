"""What a prompt was understood as: the bits, in words, and how unknown words were read.

A prompt is never answered silently: :func:`read_prompt` returns a :class:`Reading` whose
``understood`` line ("digits 3 and 8 -> 0001000010") callers print before using the bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .bits import _as_bit_string, _check_not_trivial, class_names
from .errors import PromptError
from .vocabulary import DIGIT_CLASSES

__all__ = ["Reading", "read_prompt", "summarize_bits"]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def summarize_bits(bits: str, classes: str | Sequence[str] = "digits") -> str:
    """The positive classes in a short phrase: ``"digits 3 and 8"``, ``"cat and dog"``."""
    names = class_names(classes)
    s = _as_bit_string(bits, len(names))
    chosen = [name for name, bit in zip(names, s) if bit == "1"]
    if not chosen:
        return "no class"
    if tuple(n.lower() for n in names) == DIGIT_CLASSES:
        return ("digit " if len(chosen) == 1 else "digits ") + _join(chosen)
    return _join(chosen)


@dataclass(frozen=True)
class Reading:
    """A prompt's bits plus how they were reached, for printing before they are used."""

    prompt: str
    bits: str
    class_names: tuple[str, ...]
    backend: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> str:
        return summarize_bits(self.bits, list(self.class_names))

    @property
    def understood(self) -> str:
        """``"digits 3 and 8 -> 0001000010"``, plus how any unknown words were read."""
        line = f"{self.summary} -> {self.bits}"
        if self.notes:
            line += " (" + "; ".join(self.notes) + ")"
        return line


def read_prompt(text: str, classes: str | Sequence[str] = "digits", *,
                backend: str | object = "auto") -> Reading:
    """Read a prompt like :func:`parse_prompt` and say what was understood.

    ``backend="auto"`` (the default here) is the rules, then the semantic reader for unknown
    words when ``paramgen[text]`` is installed. A backend without ``read`` gives no notes.
    """
    from .backends import resolve_backend

    if not isinstance(text, str):
        raise TypeError(f"prompt must be a string, got {type(text).__name__}")
    names = class_names(classes)
    impl = resolve_backend(backend)
    read = getattr(impl, "read", None)
    if callable(read):
        bits, notes = read(text, list(names))
    else:
        bits, notes = impl.to_bits(text, list(names)), []
    try:
        bits = _as_bit_string(bits, len(names))
    except ValueError as exc:
        raise PromptError(f"backend {backend!r} returned unusable bits: {exc}",
                          prompt=text) from None
    _check_not_trivial(bits, names, text)
    name = backend if isinstance(backend, str) else type(backend).__name__
    return Reading(text, bits, tuple(names), name, tuple(str(n) for n in notes))
