"""The semantic backend: read the words the rules do not know with the offline sentence encoder.

The rules stay in charge. Where they refuse a prompt only because of unknown words ("animals
that moo", "spot the poodles"), each run of unknown words is scored against the vocabulary the
rules do know for these classes (class names and synonyms, attribute words, digit words,
request words) with all-MiniLM-L6-v2 (:mod:`paramgen.text`). A run is replaced by its closest
vocabulary phrase only when that phrase is close enough (``accept``) and clearly closer than
any phrase that means something else (``margin``); a run closest to a request word is dropped.
The rewritten prompt then goes through the rules again, so every "and"/"not"/"except" keeps its
exact meaning. Anything less clear is refused with the closest readings, never guessed, and
every substitution is reported (``notes``) so the caller can print what was understood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .bits import _check_not_trivial, _examples_for
from .errors import PromptError
from .lexicon import _Lexicon, _lexicon, _match, _other_domain_hint, _pieces
from .parser import _rule_bits

__all__ = ["AmbiguousPromptError", "SemanticBackend", "WordReading"]

# Token kinds that carry meaning; "skip" (request words) is the "drop it" reading.
_MEANINGFUL = ("item", "prop", "num")


class AmbiguousPromptError(PromptError):
    """Some words of the prompt have no clear reading; ``readings`` lists the closest ones.

    ``readings`` maps each unclear phrase to up to three ``(vocabulary phrase, classes it
    selects, similarity)`` tuples, best first.
    """

    def __init__(self, message: str, *, prompt: str,
                 readings: dict[str, list[tuple[str, str, float]]],
                 examples: Sequence[str] = ()) -> None:
        self.readings = readings
        super().__init__(message, prompt=prompt, unknown_words=tuple(readings),
                         examples=examples)


@dataclass(frozen=True)
class WordReading:
    """How one run of unknown words was read: ``phrase`` replaced it ("" when it was dropped)."""

    words: str
    phrase: str
    similarity: float

    def __str__(self) -> str:
        if not self.phrase:
            return f"'{self.words}' ignored (reads like a request word, {self.similarity:.2f})"
        return f"'{self.words}' read as '{self.phrase}' (similarity {self.similarity:.2f})"


@dataclass(frozen=True)
class _Candidate:
    phrase: str
    meaning: object  # "drop" for request words, else the token's (kind, value)
    classes: str  # the classes it selects, in words, for messages


@lru_cache(maxsize=8)
def _candidates(names: tuple[str, ...]) -> tuple[_Candidate, ...]:
    """Every single- or multi-word vocabulary phrase of a class set with what it means."""
    lex = _lexicon(names)
    out = []
    for key, (kind, value) in lex.phrases.items():
        phrase = " ".join(key)
        if not phrase.replace(" ", "").isalpha():
            continue  # symbols and digits are not words to compare with
        if kind in _MEANINGFUL:
            members = value if isinstance(value, frozenset) else frozenset({value})
            out.append(_Candidate(phrase, members, _classes_text(members, lex)))
        elif kind == "skip" and len(key) == 1:
            out.append(_Candidate(phrase, "drop", "(ignored)"))
    return tuple(out)


def _classes_text(members: frozenset, lex: _Lexicon) -> str:
    return ", ".join(lex.names[i] for i in sorted(members) if isinstance(i, int)
                     and 0 <= i < len(lex.names))


class SemanticBackend:
    """Rules first; unknown words read by the offline sentence encoder (registered "semantic").

    ``accept``: the least cosine similarity for a reading; ``margin``: how much closer it must be
    than the closest phrase with another meaning. Both were set on the development half of
    ``benchmarks/data/prompts_eval.json`` and a handful of words outside every vocabulary (see
    docs/prompts.md); the held-out half was not used to choose them.
    """

    def __init__(self, *, accept: float = 0.6, margin: float = 0.06) -> None:
        self.accept = float(accept)
        self.margin = float(margin)

    def to_bits(self, text: str, class_names: list[str]) -> str:
        return self.read(text, class_names)[0]

    def read(self, text: str, class_names: list[str]) -> tuple[str, list[WordReading]]:
        """Return the bits and how each unknown run of words was read (empty: rules alone)."""
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a string, got {type(text).__name__}")
        names = tuple(class_names)
        if not text.strip():
            raise PromptError("the prompt is empty", prompt=text, examples=_examples_for(names))
        lex = _lexicon(names)
        words = _pieces(text)
        spans = _unknown_spans(words, lex)
        other_domain = any(_other_domain_hint(w, lex.domain) for a, b in spans
                           for w in words[a:b])
        if not spans or other_domain:
            # Words of another class set ("sevens" with cifar10) are a mistake to point out,
            # not something to read by similarity: the rules' error says which set they are from.
            bits = _rule_bits(text, names)
            _check_not_trivial(bits, names, text)
            return bits, []
        readings, unclear = self._read_spans([" ".join(words[a:b]) for a, b in spans], names)
        if unclear:
            raise _ambiguous(text, unclear, lex)
        rewritten = list(words)
        for (start, end), reading in sorted(zip(spans, readings), key=lambda p: -p[0][0]):
            rewritten[start:end] = reading.phrase.split() if reading.phrase else []
        new_text = " ".join(rewritten)
        try:
            bits = _rule_bits(new_text, names)
            _check_not_trivial(bits, names, new_text)
        except PromptError as exc:
            notes = "; ".join(str(r) for r in readings)
            raise PromptError(f"{exc.reason}\n  (the prompt was read as {new_text!r}: {notes})",
                              prompt=text, examples=lex.examples) from None
        return bits, readings

    def _read_spans(self, spans: list[str], names: tuple[str, ...]
                    ) -> tuple[list[WordReading], dict[str, list[tuple[str, str, float]]]]:
        from paramgen import text as text_encoder

        cands = _candidates(names)
        vocab = text_encoder.encode([c.phrase for c in cands])
        sims = text_encoder.encode(spans) @ vocab.T
        readings: list[WordReading] = []
        unclear: dict[str, list[tuple[str, str, float]]] = {}
        for span, row in zip(spans, sims.tolist()):
            order = sorted(range(len(cands)), key=lambda j: -row[j])
            best = cands[order[0]]
            rival = next((row[j] for j in order if cands[j].meaning != best.meaning), -1.0)
            score = row[order[0]]
            if score >= self.accept and score - rival >= self.margin:
                readings.append(WordReading(span, "" if best.meaning == "drop" else best.phrase,
                                            score))
                continue
            closest, seen = [], []
            for j in order:
                if cands[j].meaning in seen:
                    continue
                seen.append(cands[j].meaning)
                closest.append((cands[j].phrase, cands[j].classes, round(row[j], 3)))
                if len(closest) == 3:
                    break
            unclear[span] = closest
        return readings, unclear


def _unknown_spans(words: list[str], lex: _Lexicon) -> list[tuple[int, int]]:
    """Maximal runs of words the lexicon does not know, as (start, end) word positions."""
    spans: list[tuple[int, int]] = []
    for start, end, tok in _match(words, lex):
        if tok is not None:
            continue
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _ambiguous(text: str, unclear: dict[str, list[tuple[str, str, float]]],
               lex: _Lexicon) -> AmbiguousPromptError:
    lines = [f"could not read {', '.join(repr(w) for w in unclear)} in the prompt {text!r} "
             "with confidence; the closest readings are:"]
    for span, closest in unclear.items():
        shown = "; ".join(f"'{p}' = {c} ({s:.2f})" for p, c, s in closest)
        lines.append(f"  '{span}': {shown}")
    lines.append("  rephrase with one of these words, or name the classes")
    return AmbiguousPromptError("\n".join(lines), prompt=text, readings=unclear,
                                examples=lex.examples)
