"""Prompt backends: the protocol, the rule grammar, any language model, and the registry."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from .bits import _check_not_trivial, _examples_for
from .errors import LLMReplyError, PromptError
from .parser import _rule_bits
from .semantic import SemanticBackend
from .vocabulary import DIGIT_CLASSES


@runtime_checkable
class PromptBackend(Protocol):
    """Anything that turns a prompt into task bits for a given ordered list of class names.

    ``to_bits`` returns one "0"/"1" character per class; :func:`parse_prompt` validates the
    result (length, alphabet, non-trivial) whatever the backend.
    """

    def to_bits(self, text: str, class_names: list[str]) -> str: ...


class RuleBackend:
    """The built-in deterministic grammar (registered as ``"rules"``, the default).

    Digit and CIFAR-10 class lists get their full vocabulary; any other list gets its class
    names plus not/and/or/except.
    """

    def to_bits(self, text: str, class_names: list[str]) -> str:
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a string, got {type(text).__name__}")
        if not text.strip():
            raise PromptError("the prompt is empty", prompt=text,
                              examples=_examples_for(class_names))
        bits = _rule_bits(text, class_names)
        _check_not_trivial(bits, class_names, text)
        return bits


# A run of 0/1 characters, optionally separated; it must not touch letters or other digits, nor
# be part of a decimal such as 0.5 (a sentence-ending full stop is fine).
_BIT_RUN_RE = re.compile(r"(?<!\w)(?<!\d\.)[01](?:[ \t\r\n,;|]*[01])*(?!\w)(?!\.\d)")


class LLMBackend:
    """Ask any language model for the bits through a user-supplied ``complete`` callable.

    ``complete(prompt: str) -> str`` sends one instruction to the model and returns its reply;
    wire in whatever local model you have (llama.cpp, transformers, an HTTP client). The
    backend writes the instruction (class list, reply format), reads the bit string out of the
    reply, and checks it. A reply it cannot use raises :class:`LLMReplyError` after
    ``attempts`` tries; each retry tells the model what was wrong with its last reply.
    """

    def __init__(self, complete: Callable[[str], str] | None = None, *, attempts: int = 2) -> None:
        if complete is None or not callable(complete):
            raise ValueError("the 'llm' backend needs complete=<callable taking the instruction "
                             "text and returning the model's reply>, e.g. "
                             "get_backend('llm', complete=my_model)")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
        self.complete = complete
        self.attempts = attempts

    @staticmethod
    def build_instruction(text: str, class_names: Sequence[str]) -> str:
        """The instruction sent to the model: classes in order, the request, the reply format."""
        n = len(class_names)
        # Bare digits ("- 3") read like list numbering to a model; naming them avoids that.
        is_digits = tuple(class_names) == DIGIT_CLASSES
        listing = "\n".join(f"- digit {name}" if is_digits else f"- {name}"
                            for name in class_names)
        return (
            "You turn a request for a binary image classifier into a string of bits.\n"
            f"The classifier sees images of exactly these {n} classes, in this order:\n"
            f"{listing}\n"
            f'Request: "{text}"\n'
            f"For each class, in the order above, write 1 if the request selects it (positive) "
            "and 0 if it does not. At least one class must be 1 and at least one must be 0.\n"
            f"Reply with only the {n} characters of 0s and 1s, nothing else.\n"
            'Example: for the classes cat, dog, car and the request "select the animals", '
            "the reply is 110."
        )

    @staticmethod
    def read_reply(reply: str, class_names: Sequence[str]) -> str:
        """Extract the bit string from a model reply, or raise :class:`LLMReplyError`.

        Accepts a bare string ("0101"), separated bits ("0, 1, 0, 1", "[0,1,0,1]"), either one
        inside prose, or one "name: bit" line per class. Two different bit strings of the right
        length in one reply are ambiguous and rejected rather than picked between.
        """
        n = len(class_names)
        if not isinstance(reply, str):
            raise LLMReplyError(f"the model's reply must be a string, got {type(reply).__name__}",
                                reply=repr(reply))
        found = []
        for match in _BIT_RUN_RE.finditer(reply):
            bits = re.sub(r"[^01]", "", match.group(0))
            if len(bits) == n and bits not in found:
                found.append(bits)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise LLMReplyError(f"the reply holds {len(found)} different {n}-bit strings "
                                f"({', '.join(found)}); cannot tell which is meant", reply=reply)
        per_class = []
        for name in class_names:
            m = re.search(rf"(?<![\w]){re.escape(name)}\s*[:=\-]\s*([01])(?![\w.])", reply,
                          re.IGNORECASE)
            if not m:
                break
            per_class.append(m.group(1))
        if len(per_class) == n:
            return "".join(per_class)
        shown = reply if len(reply) <= 200 else reply[:200] + "..."
        raise LLMReplyError(f"the reply has no string of {n} bits (one 0/1 per class): "
                            f"{shown!r}", reply=reply)

    def to_bits(self, text: str, class_names: list[str]) -> str:
        instruction = self.build_instruction(text, class_names)
        last_error: LLMReplyError | None = None
        for _ in range(self.attempts):
            reply = self.complete(instruction)
            try:
                bits = self.read_reply(reply, class_names)
                _check_not_trivial(bits, class_names, text)
                return bits
            except PromptError as exc:
                last_error = exc if isinstance(exc, LLMReplyError) else LLMReplyError(
                    exc.reason, reply=str(reply))
                instruction = (self.build_instruction(text, class_names)
                               + f"\nYour previous reply could not be used: {exc.reason}\n"
                               f"Reply with only the {len(class_names)} bits.")
        assert last_error is not None
        raise LLMReplyError(f"the language model gave no usable answer for {text!r} after "
                            f"{self.attempts} attempt(s): {last_error.reason}",
                            reply=last_error.reply, prompt=text,
                            examples=_examples_for(class_names))


class AutoBackend:
    """Rules, then the semantic reader for unknown words when ``paramgen[text]`` is installed.

    Registered as ``"auto"``; what ``paramgen generate`` uses unless told otherwise. Without the
    extra, a prompt with unknown words is refused as by the rules, with the install command.
    """

    def __init__(self, **semantic_options: float) -> None:
        self.semantic = SemanticBackend(**semantic_options)

    def to_bits(self, text: str, class_names: list[str]) -> str:
        return self.read(text, class_names)[0]

    def read(self, text: str, class_names: list[str]) -> tuple[str, list]:
        from paramgen import text as text_encoder

        try:
            return RuleBackend().to_bits(text, class_names), []
        except PromptError as exc:
            if not exc.unknown_words:
                raise
            if not text_encoder.available():
                raise PromptError(f"{exc.reason}\n  (the semantic reader can try unknown words: "
                                  f"{text_encoder.INSTALL_HINT})", prompt=exc.prompt,
                                  unknown_words=exc.unknown_words,
                                  examples=exc.examples) from None
        return self.semantic.read(text, class_names)


BackendFactory = Callable[..., PromptBackend]

_BACKENDS: dict[str, BackendFactory] = {"rules": RuleBackend, "llm": LLMBackend,
                                        "semantic": SemanticBackend, "auto": AutoBackend}


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make ``get_backend(name, **options)`` return ``factory(**options)``.

    Re-registering a name raises unless ``replace=True``, so two plugins cannot silently
    shadow each other.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"backend factory for {name!r} must be callable, got {factory!r}")
    if name in _BACKENDS and not replace:
        raise ValueError(f"a prompt backend named {name!r} is already registered; "
                         "pass replace=True to override it")
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    """Names accepted by :func:`get_backend`, sorted."""
    return sorted(_BACKENDS)


def resolve_backend(backend: str | object) -> PromptBackend:
    """A backend from its registered name, or ``backend`` itself once checked."""
    impl = get_backend(backend) if isinstance(backend, str) else backend
    if not isinstance(impl, PromptBackend):
        raise TypeError(f"backend must be a name or have to_bits(text, class_names), got "
                        f"{backend!r}")
    return impl


def get_backend(name: str = "rules", **options: object) -> PromptBackend:
    """Build the backend registered as ``name``; ``options`` go to its factory."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown prompt backend {name!r}; available: "
                         f"{', '.join(available_backends())}")
    backend = _BACKENDS[name](**options)
    if not isinstance(backend, PromptBackend):
        raise TypeError(f"backend {name!r} built {backend!r}, which has no to_bits(text, "
                        "class_names) method")
    return backend
