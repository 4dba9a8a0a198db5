"""Plain-English prompt -> task bits.

A task is a bit string with one character per class: character ``i`` is ``"1"`` when class ``i``
is the positive class (``"0101010101"``: odd digits are positive). RPG (paper §4, appendix
"Conditional generation guided by LLM") conditions generation on exactly such a string, and the
paper obtains it by asking a language model. This package gives the same entry point without one:

* :func:`parse_prompt` reads a prompt with a small, deterministic rule grammar (the ``"rules"``
  backend) and returns the bits, or raises :class:`PromptError` naming the words it could not
  read. It never guesses: an unreadable word is an error, not something to skip.
* :func:`read_prompt` does the same and says what it understood (``Reading.understood``:
  "digits 3 and 8 -> 0001000010"), with every word the semantic backend read for the rules.
* :func:`describe_bits` turns bits back into words, so a caller can show what a task means.
* :class:`PromptBackend` / :func:`register_backend` / :func:`get_backend` let any language model
  stand in for the rules; :class:`LLMBackend` wraps a user-supplied ``complete(prompt) -> str``
  callable (nothing is downloaded and no model library is imported here).

The grammar, the attribute table and worked examples are in ``docs/prompts.md``; keep the two in
step (a test compares the attribute table there with :data:`CIFAR10_ATTRIBUTES`).

Layout: ``vocabulary`` (the word tables, as data), ``lexicon`` (words -> tokens), ``parser``
(tokens -> classes), ``bits`` (class sets, validation, descriptions), ``backends`` (rules, any
language model, the registry), ``errors``.

How "and" is read, in short (the full rule is in the docs):

* class names joined by commas, spaces, "and" or "or" form a list, and a list is a union:
  ``"0, 3 and 7"`` selects three digits;
* two properties joined by "and" (or a comma, "but", "that/which/with", or simply written next
  to each other) must both hold: ``"even and greater than 4"`` is ``{6, 8}``;
* a negation ("not X", "no X", "without X") always restricts: ``"cats and not dogs"`` is cats;
* a list joined to a positive property by "and" is a union: ``"even digits and 3"``;
* "or" is always a union, "both X and Y" always an intersection.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends import (
    AutoBackend,
    BackendFactory,
    LLMBackend,
    PromptBackend,
    RuleBackend,
    available_backends,
    get_backend,
    register_backend,
    resolve_backend,
)
from .bits import _as_bit_string, _check_not_trivial, class_names, describe_bits
from .errors import LLMReplyError, PromptError
from .reading import Reading, read_prompt, summarize_bits
from .semantic import AmbiguousPromptError, SemanticBackend, WordReading
from .vocabulary import (
    CIFAR10_ATTRIBUTES,
    CIFAR10_CLASSES,
    CIFAR10_SYNONYMS,
    DIGIT_CLASSES,
    DIGIT_PROPERTIES,
)

__all__ = [
    "AmbiguousPromptError",
    "AutoBackend",
    "BackendFactory",
    "CIFAR10_ATTRIBUTES",
    "CIFAR10_CLASSES",
    "CIFAR10_SYNONYMS",
    "DIGIT_CLASSES",
    "DIGIT_PROPERTIES",
    "LLMBackend",
    "LLMReplyError",
    "PromptBackend",
    "PromptError",
    "Reading",
    "RuleBackend",
    "SemanticBackend",
    "WordReading",
    "available_backends",
    "class_names",
    "describe_bits",
    "get_backend",
    "parse_prompt",
    "read_prompt",
    "register_backend",
    "summarize_bits",
]


def parse_prompt(text: str, classes: str | Sequence[str] = "digits", *,
                 backend: str | PromptBackend = "rules") -> str:
    """Turn a plain-English prompt into task bits, one "0"/"1" per class.

    ``classes`` is ``"digits"`` (also mnist1d), ``"cifar10"`` or a list of class names.
    ``backend`` is a registered backend name or a :class:`PromptBackend` instance.

    >>> parse_prompt("odd digits")
    '0101010101'
    >>> parse_prompt("vehicles that operate on roads", "cifar10")
    '0100000001'

    Raises :class:`PromptError` for words the grammar cannot read, for a reply a language model
    got wrong, and for a prompt that selects no class or every class.
    """
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a string, got {type(text).__name__}")
    names = class_names(classes)
    impl = resolve_backend(backend)
    bits = impl.to_bits(text, list(names))
    try:
        bits = _as_bit_string(bits, len(names))
    except ValueError as exc:
        raise PromptError(f"backend {backend!r} returned unusable bits: {exc}",
                          prompt=text) from None
    _check_not_trivial(bits, names, text)
    return bits
