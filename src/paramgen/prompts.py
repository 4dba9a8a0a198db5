"""Plain-English prompt -> task bits.

A task is a bit string with one character per class: character ``i`` is ``"1"`` when class ``i``
is the positive class (``"0101010101"``: odd digits are positive). RPG (paper §4, appendix
"Conditional generation guided by LLM") conditions generation on exactly such a string, and the
paper obtains it by asking a language model. This module gives the same entry point without one:

* :func:`parse_prompt` reads a prompt with a small, deterministic rule grammar (the ``"rules"``
  backend) and returns the bits, or raises :class:`PromptError` naming the words it could not
  read. It never guesses: an unreadable word is an error, not something to skip.
* :func:`describe_bits` turns bits back into words, so a caller can show what a task means.
* :class:`PromptBackend` / :func:`register_backend` / :func:`get_backend` let any language model
  stand in for the rules; :class:`LLMBackend` wraps a user-supplied ``complete(prompt) -> str``
  callable (nothing is downloaded and no model library is imported here).

The grammar, the attribute table and worked examples are in ``docs/prompts.md``; keep the two in
step (a test compares the attribute table there with :data:`CIFAR10_ATTRIBUTES`).

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

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, TypedDict, runtime_checkable

__all__ = [
    "CIFAR10_ATTRIBUTES",
    "CIFAR10_CLASSES",
    "CIFAR10_SYNONYMS",
    "DIGIT_CLASSES",
    "DIGIT_PROPERTIES",
    "LLMBackend",
    "LLMReplyError",
    "PromptBackend",
    "PromptError",
    "RuleBackend",
    "available_backends",
    "class_names",
    "describe_bits",
    "get_backend",
    "parse_prompt",
    "register_backend",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt could not be turned into a valid task.

    Subclasses ValueError so the command line's generic error handling reports it. The message
    always names the problem (the unread words, or why the task is trivial) and lists a few
    prompts that do work for the same classes, so the user can rephrase without the docs.

    Attributes: ``prompt`` (the text as given), ``unknown_words`` (words the rule grammar could not
    read, empty for other problems) and ``examples`` (the example prompts shown).
    """

    def __init__(self, message: str, *, prompt: str = "", unknown_words: Sequence[str] = (),
                 examples: Sequence[str] = ()) -> None:
        self.prompt = prompt
        self.unknown_words = tuple(unknown_words)
        self.examples = tuple(examples)
        self.reason = message
        full = message
        if self.examples:
            shown = "\n".join(f'  - "{e}"' for e in self.examples)
            full += f"\nPrompts that work for these classes look like:\n{shown}"
        super().__init__(full)


class LLMReplyError(PromptError):
    """A language-model backend replied with something that is not a usable bit string.

    ``reply`` holds the last raw reply so it can be logged or inspected.
    """

    def __init__(self, message: str, *, reply: str = "", prompt: str = "",
                 examples: Sequence[str] = ()) -> None:
        self.reply = reply
        super().__init__(message, prompt=prompt, examples=examples)


# --------------------------------------------------------------------------------------------
# Class sets and vocabulary tables (data, documented in docs/prompts.md)
# --------------------------------------------------------------------------------------------

#: Class names of the digit datasets (sklearn digits and mnist1d): the digits themselves.
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

#: CIFAR-10 class names in label order (label 0 is airplane).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: Other words for each CIFAR-10 class. Plurals are added automatically ("cars", "lorries").
#: Only words that name the CIFAR class itself belong here; pickups are deliberately absent
#: because CIFAR-10 puts them in neither automobile nor truck.
CIFAR10_SYNONYMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "aeroplane", "plane", "airliner", "jet", "aircraft"),
    "automobile": ("automobile", "car", "auto", "motorcar", "motor car", "sedan"),
    "bird": ("bird",),
    "cat": ("cat", "kitten", "kitty", "house cat", "feline"),
    "deer": ("deer", "stag", "doe", "fawn", "reindeer"),
    "dog": ("dog", "puppy", "pup", "hound", "canine", "doggy"),
    "frog": ("frog", "toad"),
    "horse": ("horse", "pony", "stallion", "mare", "foal"),
    "ship": ("ship", "boat", "vessel", "ferry", "watercraft"),
    "truck": ("truck", "lorry"),
}


class AttributeEntry(TypedDict):
    """One row of :data:`CIFAR10_ATTRIBUTES`.

    ``classes``: the CIFAR-10 classes that have the attribute. ``nouns``: words that get an
    automatic plural ("mammal" -> "mammals"). ``words``: adjectives, verbs and fixed phrases,
    matched exactly as written. ``note``: why the membership is what it is, for the docs.
    """

    classes: tuple[str, ...]
    nouns: tuple[str, ...]
    words: tuple[str, ...]
    note: str


#: The attribute table for CIFAR-10 prompts. Membership follows the paper's and the project
#: README's expected answers where those are sensible; where the README disagrees with biology
#: (birds with fur), biology wins and the docs say so. Connecting words ("that", "can", "with",
#: "in", "on", "operate", "live", ...) are grammar, not attributes, so "lives in water",
#: "on water" and "aquatic" all reach the ``water`` row.
CIFAR10_ATTRIBUTES: dict[str, AttributeEntry] = {
    "animal": {
        "classes": ("bird", "cat", "deer", "dog", "frog", "horse"),
        "nouns": ("animal", "creature", "beast", "critter", "organism", "living thing",
                  "living being", "living creature"),
        "words": ("living", "alive", "animate"),
        "note": "the six animal classes (paper: 'select all living things')",
    },
    "vehicle": {
        "classes": ("airplane", "automobile", "ship", "truck"),
        "nouns": ("vehicle", "transportation method", "transport method", "conveyance",
                  "engine", "motor"),
        "words": ("transport", "transportation", "means of transport", "means of transportation",
                  "mode of transport", "modes of transport", "motorized", "motorised",
                  "carry cargo", "carry goods", "carry passengers", "carry people"),
        "note": "the four vehicle classes (README: 'objects that can carry cargo')",
    },
    "man_made": {
        "classes": ("airplane", "automobile", "ship", "truck"),
        "nouns": ("machine", "artifact", "artefact"),
        "words": ("man made", "human made", "artificial", "manufactured", "mechanical"),
        "note": "made by people; in CIFAR-10 these are exactly the vehicles",
    },
    "flies": {
        "classes": ("airplane", "bird"),
        "nouns": ("flyer", "flier"),
        "words": ("fly", "flies", "flying", "airborne", "air", "sky"),
        "note": "can fly; 'in the air' and 'in the sky' read as this too",
    },
    "wings": {
        "classes": ("airplane", "bird"),
        "nouns": ("wing",),
        "words": ("winged", "bird like"),
        "note": "has wings, looks or moves like a bird",
    },
    "feathers": {
        "classes": ("bird",),
        "nouns": ("feather", "beak"),
        "words": ("feathered", "feathery", "beaked"),
        "note": "only birds have feathers",
    },
    "fur": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": (),
        "words": ("fur", "furry", "hairy", "hair", "fluffy"),
        "note": "has fur: the mammals (the README's answer also lists bird; birds have feathers)",
    },
    "four_legs": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": ("quadruped",),
        "words": ("four legs", "4 legs", "four legged", "4 legged"),
        "note": "walks on four legs, as in the README; frogs hop and are left out",
    },
    "mammal": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": ("mammal",),
        "words": ("mammalian",),
        "note": "the paper's 'classify all mammals'",
    },
    "hooves": {
        "classes": ("deer", "horse"),
        "nouns": ("hoof", "ungulate"),
        "words": ("hoofed", "hooved"),
        "note": "hoofed animals",
    },
    "pet": {
        "classes": ("cat", "dog"),
        "nouns": ("pet", "companion animal", "house pet"),
        "words": (),
        "note": "kept as a pet, as in the paper's 'animals that can be regarded as pets'",
    },
    "domestic": {
        "classes": ("cat", "dog", "horse"),
        "nouns": (),
        "words": ("domestic", "domesticated", "tame", "tamed"),
        "note": "domesticated animals: pets plus horses",
    },
    "wild": {
        "classes": ("bird", "deer", "frog"),
        "nouns": (),
        "words": ("wild", "untamed", "wildlife"),
        "note": "animals that are not domesticated",
    },
    "warm_blooded": {
        "classes": ("bird", "cat", "deer", "dog", "horse"),
        "nouns": (),
        "words": ("warm blooded", "endothermic"),
        "note": "birds and mammals",
    },
    "cold_blooded": {
        "classes": ("frog",),
        "nouns": ("amphibian",),
        "words": ("cold blooded", "ectothermic", "amphibious"),
        "note": "the README's 'identify all cold-blooded animals'",
    },
    "lays_eggs": {
        "classes": ("bird", "frog"),
        "nouns": (),
        "words": ("lay eggs", "lays eggs", "egg laying", "oviparous"),
        "note": "birds and frogs lay eggs",
    },
    "water": {
        "classes": ("frog", "ship"),
        "nouns": (),
        "words": ("water", "aquatic", "sea", "ocean", "river", "lake"),
        "note": "lives in water or travels on it ('travel on water' is ship among vehicles)",
    },
    "wheels": {
        "classes": ("airplane", "automobile", "truck"),
        "nouns": ("wheel",),
        "words": ("wheeled",),
        "note": "has wheels, landing gear included (README: 'things with wheels')",
    },
    "road": {
        "classes": ("automobile", "truck"),
        "nouns": ("road", "street", "highway", "land vehicle", "road vehicle"),
        "words": (),
        "note": "land vehicles that use roads (paper: 'vehicles that operate on roads')",
    },
    "land": {
        "classes": ("automobile", "cat", "deer", "dog", "horse", "truck"),
        "nouns": (),
        "words": ("land", "terrestrial", "ground"),
        "note": "moves mainly on land; birds fly and frogs are amphibious",
    },
}


class DigitProperty(TypedDict):
    """One row of :data:`DIGIT_PROPERTIES`: the digits that have it and the words for it."""

    digits: tuple[int, ...]
    words: tuple[str, ...]


#: Named digit properties. Comparisons, ranges, multiples and divisors are grammar (they take a
#: number) and are not listed here. 0 counts as even and as a square; 0 and 1 are neither prime
#: nor composite.
DIGIT_PROPERTIES: dict[str, DigitProperty] = {
    "even": {"digits": (0, 2, 4, 6, 8), "words": ("even", "evens")},
    "odd": {"digits": (1, 3, 5, 7, 9), "words": ("odd", "odds")},
    "prime": {"digits": (2, 3, 5, 7), "words": ("prime", "primes")},
    "composite": {"digits": (4, 6, 8, 9), "words": ("composite", "composites")},
    "square": {"digits": (0, 1, 4, 9), "words": ("square", "squares", "perfect square",
                                                 "perfect squares")},
    "nonzero": {"digits": (1, 2, 3, 4, 5, 6, 7, 8, 9), "words": ("nonzero",)},
}

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten")

# Dataset names accepted for ``classes``, compared after dropping case, '-', '_' and spaces so
# the spellings the data loaders accept ("mnist-1d", "cifar_10") work here too.
_CLASS_SETS: dict[str, tuple[str, ...]] = {
    "digits": DIGIT_CLASSES,
    "sklearndigits": DIGIT_CLASSES,
    "mnist": DIGIT_CLASSES,
    "mnist1d": DIGIT_CLASSES,
    "cifar10": CIFAR10_CLASSES,
}

# --------------------------------------------------------------------------------------------
# Grammar words shared by every class set. Each entry is "phrase|phrase|..." -> token kind.
# Phrases are matched longest-first, so "greater than or equal to" wins over "or".
# --------------------------------------------------------------------------------------------

# Words that carry no meaning for the task: request verbs, articles, and nouns that only say
# "the classes" ("things", "images"). Dropped wherever they appear.
_FILLER = (
    "give me|give us|me|us|please|i|we|you|want|want to|need|need to|would|like|like to|make|"
    "build|create|train|generate|get|return|model|models|classifier|classifiers|network|"
    "networks|net|model to|classifier to|network to|model for|classifier for|network for|"
    "select|selects|selecting|classify|classifies|find|finds|recognize|recognizes|recognise|"
    "recognises|detect|detects|identify|identifies|pick|picks|choose|chooses|keep|keeps|mark|"
    "marks|label|labels|spot|spots|look for|tell|"
    "all|every|any|each|only|just|everything|anything|the|a|an|of|either|also|really|"
    "naturally|commonly|usually|typically|normally|generally|"
    "positive|positives|positive class|class|classes|category|categories|kind|kinds|type|types|"
    "sort|sorts|image|images|picture|pictures|photo|photos|photograph|photographs|example|"
    "examples|sample|samples|input|inputs|thing|things|object|objects|item|items|ones"
)

# Words that introduce a condition on what came before ("animals THAT CAN fly", "vehicles THAT
# OPERATE ON roads", "digits WHICH ARE odd"). The condition always intersects.
_RELATIVE = (
    "that|which|who|whose|where|are|is|be|being|been|was|were|can|could|may|might|will|do|"
    "does|have|has|having|had|with|in|on|at|inside|through|from|able to|capable of|used for|"
    "used as|regarded as|considered|considered as|considered to be|seen as|counted as|"
    "known as|classed as|kept as|operate|operates|operating|travel|travels|travelling|"
    "traveling|live|lives|move|moves|moving|run|runs|drive|drives|go|goes|found"
)

_LOGIC: dict[str, str] = {
    "and|&|and also": "and",
    "or|/|and/or": "or",
    "plus|+|as well as|along with|together with|in addition to": "union",
    "not|no|non|without|lacking|none of": "not",
    "except|except for|excluding|exclude|other than|apart from|aside from|besides|save for|"
    "minus": "except",
    "but": "but",
    "both": "both",
    "neither": "neither",
    "nor": "nor",
    "(": "lparen",
    ")": "rparen",
    ",|;": "comma",
}

# Digit-only grammar: comparisons (value = (operator, usable after a number as "5 or more")),
# ranges, multiples and divisors. "no more than 4" needs no entry: it is "not" + "more than".
_DIGIT_GRAMMAR: dict[str, tuple[str, object]] = {
    "greater than|bigger than|larger than|more than|higher than|>|exceeding|beyond":
        ("cmp", (">", False)),
    "greater|bigger|larger|more|higher|above|over|up": ("cmp", (">", True)),
    "less than|smaller than|lower than|fewer than|<": ("cmp", ("<", False)),
    "less|smaller|lower|fewer|below|under|down": ("cmp", ("<", True)),
    "at least|>=|=>|≥|greater than or equal to|bigger than or equal to|"
    "larger than or equal to|more than or equal to|higher than or equal to|"
    "greater or equal to|greater than or equal": ("cmp", (">=", False)),
    "at most|<=|=<|≤|up to|less than or equal to|smaller than or equal to|"
    "lower than or equal to|fewer than or equal to|less or equal to|less than or equal":
        ("cmp", ("<=", False)),
    "between": ("between", None),
    "from": ("from", None),
    "to|through|thru|till|until": ("to", None),
    "multiple of|multiples of|divisible by|evenly divisible by": ("mult", None),
    "divisor of|divisors of|factor of|factors of": ("divisor", None),
    "digit|digits|number|numbers|numeral|numerals|integer|integers|value|values|range":
        ("skip", None),
}

_EXAMPLES_DIGITS = ("odd digits", "even and greater than 4", "0, 3 and 7", "all except 5",
                    "multiples of 3")
_EXAMPLES_CIFAR = ("all animals", "vehicles that operate on roads", "things that can fly",
                   "cats or dogs", "animals with fur but not pets")

# --------------------------------------------------------------------------------------------
# Words -> tokens
# --------------------------------------------------------------------------------------------

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


def _tokenize(text: str, lex: _Lexicon) -> list[_Tok]:
    """Match the longest known phrase at each position; collect every unknown word.

    All unknown words are reported together, so one error message shows the whole problem.
    """
    words = _pieces(text)
    tokens: list[_Tok] = []
    unknown: list[str] = []
    i = 0
    while i < len(words):
        for length in range(min(lex.longest, len(words) - i), 0, -1):
            key = tuple(words[i:i + length])
            if key in lex.phrases:
                kind, value = lex.phrases[key]
                tokens.append(_Tok(kind, " ".join(key), value))
                i += length
                break
        else:
            word = words[i]
            if lex.domain == "digits" and re.fullmatch(r"-?\d+(\.\d+)?", word):
                number = float(word)
                tokens.append(_Tok("num", word, int(number) if number.is_integer() else number))
            else:
                unknown.append(word)
            i += 1
    if unknown:
        _raise_unknown(text, unknown, lex)
    return _tidy(tokens)


def _raise_unknown(text: str, unknown: list[str], lex: _Lexicon) -> None:
    distinct = list(dict.fromkeys(unknown))
    quoted = ", ".join(f"'{w}'" for w in distinct)
    plural = "words" if len(distinct) > 1 else "word"
    lines = [f"could not understand the {plural} {quoted} in the prompt {text!r}"]
    vocabulary = sorted({k[0] for k, (kind, _) in lex.phrases.items()
                         if len(k) == 1 and kind != "skip" and k[0].isalpha()})
    for word in distinct:
        hint = _other_domain_hint(word, lex.domain)
        if hint:
            lines.append(f"  {hint}")
            continue
        close = difflib.get_close_matches(word, vocabulary, n=3, cutoff=0.75)
        if close:
            lines.append(f"  '{word}': did you mean {' or '.join(repr(c) for c in close)}?")
    if lex.domain == "custom":
        lines.append("  the classes are: " + ", ".join(lex.names))
    raise PromptError("\n".join(lines), prompt=text, unknown_words=distinct,
                      examples=lex.examples)


def _tidy(tokens: list[_Tok]) -> list[_Tok]:
    """Drop filler, a "from" that starts no range, and commas that separate nothing."""
    kept = [t for t in tokens if t.kind != "skip"]
    out: list[_Tok] = []
    for i, tok in enumerate(kept):
        nxt = kept[i + 1] if i + 1 < len(kept) else None
        if tok.kind == "from" and (nxt is None or nxt.kind != "num"):
            continue  # "from the digits, pick ..." rather than "from 3 to 6"
        if tok.kind == "comma" and (not out or out[-1].kind in ("comma", "lparen")
                                    or nxt is None or nxt.kind == "rparen"):
            continue
        out.append(tok)
    return out


# --------------------------------------------------------------------------------------------
# Tokens -> set of positive classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sel:
    """A selection of classes plus how it was written, which decides what "and" means.

    ``kind``: "items" (a list of class names: joins by union), "prop" (a property: joins by
    intersection) or "neg" (a negation: always restricts).
    """

    members: frozenset[int]
    kind: str


def _union(a: _Sel, b: _Sel) -> _Sel:
    kind = "items" if a.kind == b.kind == "items" else "prop"
    return _Sel(a.members | b.members, kind)


def _intersect(a: _Sel, b: _Sel) -> _Sel:
    return _Sel(a.members & b.members, "prop")


def _and(a: _Sel, b: _Sel) -> _Sel:
    """The "and" rule: lists and positive properties unite, conditions intersect."""
    if "neg" in (a.kind, b.kind):
        return _intersect(a, b)
    if "items" in (a.kind, b.kind):
        return _union(a, b)
    return _intersect(a, b)


# Token kinds that can begin an operand; seeing one right after an operand means the two were
# written side by side ("even numbers greater than 4", "wild animals"), which intersects.
_STARTS = frozenset({"item", "prop", "num", "cmp", "not", "lparen", "between", "from", "mult",
                     "divisor", "both", "neither"})


class _Parser:
    """Recursive-descent reader for the rule grammar (see docs/prompts.md, "Grammar")."""

    def __init__(self, tokens: list[_Tok], lex: _Lexicon, text: str) -> None:
        self.toks = tokens
        self.lex = lex
        self.text = text
        self.pos = 0
        self.last: _Tok | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> _Tok | None:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else None

    def _kind(self, ahead: int = 0) -> str | None:
        tok = self._peek(ahead)
        return tok.kind if tok else None

    def _next(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        self.last = tok
        return tok

    def _fail(self, detail: str) -> PromptError:
        return PromptError(f"could not read the prompt {self.text!r}: {detail}",
                           prompt=self.text, examples=self.lex.examples)

    def _where(self) -> str:
        return f"after '{self.last.text}'" if self.last else "at the start"

    def _number(self) -> float | int:
        tok = self._peek()
        if tok is None or tok.kind != "num":
            got = f"'{tok.text}'" if tok else "the end of the prompt"
            raise self._fail(f"expected a number {self._where()}, found {got}")
        self._next()
        return tok.value  # type: ignore[return-value]

    @staticmethod
    def _digits_where(test: Callable[[int], bool]) -> frozenset[int]:
        """The digit classes 0-9 that pass ``test`` (digit grammar only)."""
        return frozenset(d for d in range(10) if test(d))

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> frozenset[int]:
        if not self.toks:
            raise self._fail("it names no class or property (only request words such as "
                             "'select' or 'all')")
        sel = self._expr()
        if self.pos < len(self.toks):
            raise self._fail(f"unexpected '{self.toks[self.pos].text}' {self._where()}")
        return sel.members

    def _expr(self) -> _Sel:
        # "all except 3" / "everything but 3": request words are gone, so the prompt starts
        # with the exception and the selection is everything else.
        if self._kind() in ("except", "but"):
            self._next()
            rest = self._expr()
            return _Sel(self.lex.universe - rest.members, "neg")
        left = self._disj()
        if self._kind() == "except":
            self._next()
            rest = self._expr()  # "except" covers everything after it
            left = _Sel(left.members - rest.members, "prop")
        return left

    def _disj(self) -> _Sel:
        left = self._conj()
        while True:
            if self._kind() == "comma" and self._kind(1) in ("or", "union", "nor"):
                self._next()
            if self._kind() in ("or", "union", "nor"):
                self._next()
                left = _union(left, self._conj())
            else:
                return left

    def _conj(self) -> _Sel:
        left = self._unary()
        while True:
            kind = self._kind()
            if kind == "comma":
                if self._kind(1) in ("or", "union", "nor", "except"):
                    return left  # ", or" belongs to the disjunction, ", except" to _expr
                self._next()
                if self._kind() == "and":
                    self._next()
                    left = _and(left, self._unary())
                elif self._kind() == "but":
                    self._next()
                    left = _intersect(left, self._unary())
                else:
                    left = _and(left, self._unary())
            elif kind == "and":
                self._next()
                left = _and(left, self._unary())
            elif kind == "but":
                self._next()
                left = _intersect(left, self._unary())
            elif kind == "rel":
                # A relative clause ("that fly or have fur") scopes over the whole disjunction
                # after it, which is how such clauses are read in English.
                while self._kind() == "rel":
                    self._next()
                left = _intersect(left, self._disj())
            elif kind in _STARTS:
                right = self._unary()
                both_items = left.kind == right.kind == "items"
                left = _union(left, right) if both_items else _intersect(left, right)
            else:
                return left

    def _unary(self) -> _Sel:
        while self._kind() == "rel":  # "that are not prime": the clause word adds nothing here
            self._next()
        if self._kind() == "not":
            self._next()
            operand = self._unary()
            return _Sel(self.lex.universe - operand.members, "neg")
        return self._primary()

    def _primary(self) -> _Sel:
        while self._kind() == "rel":  # "which are odd", "and that can fly"
            self._next()
        tok = self._peek()
        if tok is None:
            raise self._fail(f"expected a class or property {self._where()}, but the prompt "
                             "ends there")
        kind = tok.kind
        if kind == "lparen":
            self._next()
            sel = self._expr()
            if self._kind() != "rparen":
                raise self._fail("a '(' is never closed")
            self._next()
            return sel
        if kind == "both":
            self._next()
            first = self._unary()
            if self._kind() == "comma" and self._kind(1) == "and":
                self._next()
            if self._kind() != "and":
                return first  # "both cats and dogs": the list already took the "and"
            self._next()
            return _intersect(first, self._unary())
        if kind == "neither":
            self._next()
            sel = self._unary()
            while self._kind() in ("nor", "or"):
                self._next()
                sel = _union(sel, self._unary())
            return _Sel(self.lex.universe - sel.members, "neg")
        if kind == "between":
            self._next()
            low = self._number()
            if self._kind() not in ("and", "to"):
                raise self._fail(f"expected 'and' {self._where()} in 'between A and B'")
            self._next()
            return self._range(low, self._number())
        if kind == "from":
            self._next()
            low = self._number()
            if not (self._kind() == "to" or (self._kind() == "cmp" and
                                             self._peek().text == "up to")):  # type: ignore
                raise self._fail(f"expected 'to' {self._where()} in 'from A to B'")
            self._next()
            return self._range(low, self._number())
        if kind == "cmp":
            self._next()
            op, _ = tok.value  # type: ignore[misc]
            return self._compare(op, self._number())
        if kind == "mult":
            self._next()
            n = self._number()
            if not (isinstance(n, int) and n >= 1):
                raise self._fail(f"'{tok.text} {n}' needs a whole number of at least 1")
            return _Sel(self._digits_where(lambda d: d % n == 0), "prop")
        if kind == "divisor":
            self._next()
            n = self._number()
            if not (isinstance(n, int) and n >= 1):
                raise self._fail(f"'{tok.text} {n}' needs a whole number of at least 1")
            return _Sel(self._digits_where(lambda d: d > 0 and n % d == 0), "prop")
        if kind == "prop":
            self._next()
            return _Sel(tok.value, "prop")  # type: ignore[arg-type]
        if kind in ("item", "num"):
            special = self._number_phrase()
            return special if special is not None else self._list()
        raise self._fail(f"expected a class or property {self._where()}, found '{tok.text}'")

    def _range(self, low: float, high: float) -> _Sel:
        low, high = min(low, high), max(low, high)  # "from 6 to 3" means the same digits
        return _Sel(self._digits_where(lambda d: low <= d <= high), "prop")

    def _compare(self, op: str, n: float) -> _Sel:
        tests = {">": lambda d: d > n, "<": lambda d: d < n,
                 ">=": lambda d: d >= n, "<=": lambda d: d <= n}
        return _Sel(self._digits_where(tests[op]), "prop")

    def _number_phrase(self) -> _Sel | None:
        """Read "3 to 6" (a range) or "5 or more" (a bound) at a number, if one starts here."""
        if self._kind() != "num":
            return None
        if self._kind(1) == "to" and self._kind(2) == "num":
            low = self._number()
            self._next()
            return self._range(low, self._number())
        after = self._peek(2)
        if (self._kind(1) in ("or", "and") and after is not None and after.kind == "cmp"
                and after.value[1] and self._kind(3) != "num"):  # type: ignore[index]
            n = self._number()
            self._next()
            op = self._next().value[0]  # type: ignore[index]
            return self._compare(">=" if op.startswith(">") else "<=", n)
        return None

    def _item(self) -> frozenset[int]:
        tok = self._next()
        if tok.kind == "item":
            return tok.value  # type: ignore[return-value]
        value = tok.value
        if not (isinstance(value, int) and 0 <= value <= 9):
            raise self._fail(f"'{tok.text}' is not a digit class (the classes are 0 to 9)")
        return frozenset({value})

    def _list(self) -> _Sel:
        """Class names separated by commas, spaces, "and", "or": always their union."""
        members = set(self._item())
        while True:
            save = self.pos
            if self._kind() == "comma":
                self._next()
            if self._kind() in ("and", "or", "union", "nor"):
                self._next()
            if self._kind() in ("item", "num") and not self._number_phrase_ahead():
                members |= self._item()
                continue
            self.pos = save
            return _Sel(frozenset(members), "items")

    def _number_phrase_ahead(self) -> bool:
        """True when the number here opens "3 to 6" or "5 or more" (so a list must stop)."""
        save, last = self.pos, self.last
        try:
            return self._number_phrase() is not None
        except PromptError:
            return False
        finally:
            self.pos, self.last = save, last


def _rule_bits(text: str, names: Sequence[str]) -> str:
    lex = _lexicon(tuple(names))
    tokens = _tokenize(text, lex)
    members = _Parser(tokens, lex, text).parse()
    return "".join("1" if i in members else "0" for i in range(len(names)))


# --------------------------------------------------------------------------------------------
# Bits validation and description
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


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


BackendFactory = Callable[..., PromptBackend]

_BACKENDS: dict[str, BackendFactory] = {"rules": RuleBackend, "llm": LLMBackend}


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
    impl = get_backend(backend) if isinstance(backend, str) else backend
    if not isinstance(impl, PromptBackend):
        raise TypeError(f"backend must be a name or have to_bits(text, class_names), got "
                        f"{backend!r}")
    bits = impl.to_bits(text, list(names))
    try:
        bits = _as_bit_string(bits, len(names))
    except ValueError as exc:
        raise PromptError(f"backend {backend!r} returned unusable bits: {exc}",
                          prompt=text) from None
    _check_not_trivial(bits, names, text)
    return bits
