"""Words -> tokens: cut a prompt into words and match them against one class set's phrase table.

The longest known phrase wins at each position; every unknown word is collected and reported
together (never skipped).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .errors import PromptError
from .vocabulary import (
    _DIGIT_GRAMMAR,
    _EXAMPLES_CIFAR,
    _EXAMPLES_DIGITS,
    _FILLER,
    _INTENT,
    _LOGIC,
    _NUMBER_PLURALS,
    _NUMBER_WORDS,
    _RELATIVE,
    _REST,
    _REST_PHRASES,
    CIFAR10_ATTRIBUTES,
    CIFAR10_CLASSES,
    CIFAR10_SYNONYMS,
    DIGIT_CLASSES,
    DIGIT_PROPERTIES,
)


_PIECE_RE = re.compile(
    r"""
      -?\d+(?:\.\d+)?                 # numbers; decimals are allowed as comparison bounds
    | >=|<=|=>|=<|[≥≤<>(),;&|/+]     # symbols with a meaning in the grammar
    | [^\W\d_]+(?:'[^\W\d_]+)?        # words, with one inner apostrophe ("o'clock")
    | \S                              # anything else: ignored punctuation or an unknown symbol
    """,
    re.VERBOSE,
)
# Punctuation that never changes the meaning of a prompt (sentence ends, quotes, brackets used
# like list markers). Any other stray symbol is reported as not understood.
_IGNORED = set(".!?:\"'`-_–—…[]{}")


def _pieces(text: str) -> list[str]:
    """Lower-case ``text`` and cut it into words, numbers and grammar symbols.

    Contractions become "not", "3-6" becomes "3 to 6", and hyphenated words split ("man-made"
    -> "man made") so every spelling of a phrase reaches the same lexicon entry.
    """
    t = text.lower().replace("’", "'").replace("‘", "'")
    t = re.sub(r"\bcan't\b|\bcannot\b", "can not", t)
    t = re.sub(r"\bwon't\b", "will not", t)
    t = re.sub(r"n't\b", " not", t)
    t = re.sub(r"\bi'd\b", "i would", t)
    t = re.sub(r"\bi'm\b", "i am", t)
    t = re.sub(r"\b(i|we|you)'(ll|ve|re)\b", r"\1", t)
    t = re.sub(r"(?<![\w.])(\d)'?s\b", r"\1", t)  # "7s", "7's": the digit seven, plural
    t = re.sub(r"(\d)\s*[-–—]\s*(?=\d)", r"\1 to ", t)
    t = re.sub(r"(?<=[^\W\d_])[-_](?=[^\W\d_])", " ", t)
    out = []
    for piece in _PIECE_RE.findall(t):
        if piece in _IGNORED:
            continue
        if piece.endswith("'s"):  # possessive or "it's": the bare word carries the meaning
            piece = piece[:-2]
        out.append(piece)
    return out


def _plural(word: str) -> str:
    """English plural of a vocabulary noun (enough for the tables here, not a general rule)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith("f"):
        return word[:-1] + "ves"
    return word + "s"


def _singular(word: str) -> str | None:
    """Singular of a plural custom class name ("cars" -> "car"), or None if it is not plural."""
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 1:
        return word[:-1]
    return None


def _noun_forms(noun: str) -> list[str]:
    """A noun phrase and its plural, made by pluralising the last word."""
    words = noun.split(" ")
    return [noun, " ".join(words[:-1] + [_plural(words[-1])])]


@dataclass(frozen=True)
class _Tok:
    """One token of a prompt: ``kind`` drives the parser, ``text`` is what the user wrote."""

    kind: str
    text: str
    value: object = None


@dataclass(frozen=True)
class _Lexicon:
    """Everything the rule parser needs for one class set."""

    domain: str  # "digits", "cifar10" or "custom"
    names: tuple[str, ...]
    phrases: dict[tuple[str, ...], tuple[str, object]]
    longest: int
    examples: tuple[str, ...]

    @property
    def universe(self) -> frozenset[int]:
        return frozenset(range(len(self.names)))


def _key(phrase: str) -> tuple[str, ...]:
    return tuple(_pieces(phrase))


def _add(phrases: dict, spec: str, kind: str, value: object = None) -> None:
    """Enter every "|"-separated phrase of ``spec`` with the same token kind and value."""
    for phrase in spec.split("|"):
        key = _key(phrase)
        if key:
            phrases[key] = (kind, value)


def _base_phrases() -> dict[tuple[str, ...], tuple[str, object]]:
    phrases: dict[tuple[str, ...], tuple[str, object]] = {}
    _add(phrases, _RELATIVE, "rel")
    _add(phrases, _FILLER, "skip")
    _add(phrases, _INTENT, "skip")
    _add(phrases, _REST, "rest")
    _add(phrases, "vs|versus|against", "vs")
    _add(phrases, _REST_PHRASES, "skip")
    for spec, kind in _LOGIC.items():
        _add(phrases, spec, kind)
    phrases[("|",)] = ("or", None)  # the bar itself cannot sit in a "|"-separated spec
    return phrases


def _custom_examples(names: Sequence[str]) -> tuple[str, ...]:
    a, b = names[0], names[1]
    return (a, f"{a} and {b}", f"{a} or {b}", f"not {a}", f"everything except {names[-1]}")


@lru_cache(maxsize=32)
def _lexicon(names: tuple[str, ...]) -> _Lexicon:
    """Build (once per class set) the phrase table the tokenizer matches against."""
    phrases = _base_phrases()
    lowered = tuple(n.strip().lower() for n in names)
    if lowered == DIGIT_CLASSES:
        domain, examples = "digits", _EXAMPLES_DIGITS
        for spec, (kind, value) in _DIGIT_GRAMMAR.items():
            _add(phrases, spec, kind, value)
        for prop in DIGIT_PROPERTIES.values():
            for word in prop["words"]:
                phrases[_key(word)] = ("prop", frozenset(prop["digits"]))
        for i, word in enumerate(_NUMBER_WORDS):
            phrases[(word,)] = ("num", i)
        for i, plurals in enumerate(_NUMBER_PLURALS):
            for word in plurals:
                phrases[(word,)] = ("num", i)
        phrases[("ones",)] = ("ones", 1)  # digit 1, or filler as in "the even ones"
        # Digits themselves are read by the tokenizer as numbers, so "3" can be both a class
        # and a comparison bound.
    elif lowered == CIFAR10_CLASSES:
        domain, examples = "cifar10", _EXAMPLES_CIFAR
        index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
        for attr in CIFAR10_ATTRIBUTES.values():
            members = frozenset(index[c] for c in attr["classes"])
            for noun in attr["nouns"]:
                for form in _noun_forms(noun):
                    phrases[_key(form)] = ("prop", members)
            for word in attr["words"]:
                phrases[_key(word)] = ("prop", members)
        for cls, words in CIFAR10_SYNONYMS.items():
            for word in words:
                for form in _noun_forms(word):
                    phrases[_key(form)] = ("item", frozenset({index[cls]}))
    else:
        domain, examples = "custom", _custom_examples(names)
        seen: dict[tuple[str, ...], str] = {}
        for i, name in enumerate(names):
            key = _key(name)
            if not key:
                raise ValueError(f"class name {name!r} has no letters or digits to match")
            if key in seen:
                raise ValueError(f"class names {seen[key]!r} and {name!r} read the same; "
                                 "prompts could not tell them apart")
            seen[key] = name
            forms = {key, key[:-1] + (_plural(key[-1]),)}
            single = _singular(key[-1])
            if single:
                forms.add(key[:-1] + (single,))
            for form in forms:
                # A plural form that spells another class's name belongs to that class.
                if form != key and form in seen:
                    continue
                phrases[form] = ("item", frozenset({i}))
            phrases[key] = ("item", frozenset({i}))
    longest = max(len(k) for k in phrases)
    return _Lexicon(domain, tuple(names), phrases, longest, examples)


def _other_domain_hint(word: str, domain: str) -> str | None:
    """Say which built-in class set a word belongs to when it is unknown in the current one."""
    if domain != "cifar10" and (word,) in _lexicon(CIFAR10_CLASSES).phrases:
        return f"'{word}' is a CIFAR-10 word; pass classes='cifar10' to use it"
    if domain != "digits" and ((word,) in _lexicon(DIGIT_CLASSES).phrases
                               or re.fullmatch(r"-?\d+(\.\d+)?", word)):
        return f"'{word}' only has a meaning for digit classes (classes='digits')"
    return None


def _match(words: list[str], lex: _Lexicon) -> list[tuple[int, int, _Tok | None]]:
    """Cut ``words`` into (start, end, token) pieces, longest known phrase first.

    ``token`` is None for a word the lexicon does not know (the semantic backend reads these).
    """
    out: list[tuple[int, int, _Tok | None]] = []
    i = 0
    while i < len(words):
        for length in range(min(lex.longest, len(words) - i), 0, -1):
            key = tuple(words[i:i + length])
            if key in lex.phrases:
                kind, value = lex.phrases[key]
                out.append((i, i + length, _Tok(kind, " ".join(key), value)))
                i += length
                break
        else:
            word = words[i]
            tok = None
            if lex.domain == "digits" and re.fullmatch(r"-?\d+(\.\d+)?", word):
                number = float(word)
                tok = _Tok("num", word, int(number) if number.is_integer() else number)
            out.append((i, i + 1, tok))
            i += 1
    return out


def _tokenize(text: str, lex: _Lexicon) -> list[_Tok]:
    """Match the longest known phrase at each position; collect every unknown word.

    All unknown words are reported together, so one error message shows the whole problem.
    """
    words = _pieces(text)
    matched = _match(words, lex)
    unknown = [words[start] for start, _, tok in matched if tok is None]
    if unknown:
        _raise_unknown(text, unknown, lex)
    return _tidy([tok for _, _, tok in matched if tok is not None])


# How much of a prompt, and how many unknown words, an error shows: a pasted document must not
# become a one-line error of a quarter of a million characters.
SHOWN_PROMPT_CHARS = 200
SHOWN_UNKNOWN_WORDS = 12


def _shown_prompt(text: str) -> str:
    if len(text) <= SHOWN_PROMPT_CHARS:
        return repr(text)
    return f"{text[:SHOWN_PROMPT_CHARS]!r}... ({len(text):,} characters)"


def _raise_unknown(text: str, unknown: list[str], lex: _Lexicon) -> None:
    distinct = list(dict.fromkeys(unknown))
    # repr, not the raw word: a control character in a prompt (an escape sequence, a NUL) is
    # shown, never sent to the user's terminal.
    quoted = ", ".join(repr(w[:40]) for w in distinct[:SHOWN_UNKNOWN_WORDS])
    if len(distinct) > SHOWN_UNKNOWN_WORDS:
        quoted += f" and {len(distinct) - SHOWN_UNKNOWN_WORDS:,} more"
    plural = "words" if len(distinct) > 1 else "word"
    lines = [f"could not understand the {plural} {quoted} in the prompt {_shown_prompt(text)}"]
    vocabulary = sorted({k[0] for k, (kind, _) in lex.phrases.items()
                         if len(k) == 1 and kind != "skip" and k[0].isalpha()})
    for word in distinct[:SHOWN_UNKNOWN_WORDS]:
        hint = _other_domain_hint(word, lex.domain)
        if hint:
            lines.append(f"  {hint}")
            continue
        close = difflib.get_close_matches(word, vocabulary, n=3, cutoff=0.75)
        if close:
            lines.append(f"  {word!r}: did you mean {' or '.join(repr(c) for c in close)}?")
    if lex.domain == "custom":
        lines.append("  the classes are: " + ", ".join(lex.names))
    raise PromptError("\n".join(lines), prompt=text, unknown_words=distinct,
                      examples=lex.examples)


# After "ones", these token kinds show it means "the ones" ("ones that are odd", "ones above 5").
_ONES_FILLER_BEFORE = frozenset({"rel", "cmp", "between", "mult", "divisor"})


def _ones_is_filler(prev: _Tok | None, nxt: _Tok | None) -> bool:
    """Whether "ones" means "the ones" (filler) rather than the digit 1 ("zeros and ones").

    It is filler after a property ("the even ones", "the small ones") or before a condition
    ("ones that are odd", "ones above 5"); otherwise it is the digit.
    """
    if prev is not None and prev.kind == "prop":
        return True
    return nxt is not None and nxt.kind in _ONES_FILLER_BEFORE


def _tidy(tokens: list[_Tok]) -> list[_Tok]:
    """Drop filler, a "from" that starts no range, and commas that separate nothing."""
    kept = [t for t in tokens if t.kind != "skip"]
    out: list[_Tok] = []
    for i, tok in enumerate(kept):
        nxt = kept[i + 1] if i + 1 < len(kept) else None
        if tok.kind == "ones":
            if _ones_is_filler(out[-1] if out else None, nxt):
                continue
            tok = _Tok("num", tok.text, 1)
        if tok.kind == "from" and (nxt is None or nxt.kind != "num"):
            continue  # "from the digits, pick ..." rather than "from 3 to 6"
        if tok.kind == "comma" and (not out or out[-1].kind in ("comma", "lparen")
                                    or nxt is None or nxt.kind == "rparen"):
            continue
        out.append(tok)
    return out
