"""Tokens -> set of positive classes: the recursive-descent reader of the rule grammar.

The grammar and the "and" rule are written out in docs/prompts.md ("Grammar").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import PromptError
from .lexicon import _Lexicon, _lexicon, _Tok, _tokenize


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


#: How many grammar rules may nest inside each other (about 50 levels of brackets); far beyond any
#: prompt a person writes, far below Python's recursion limit.
MAX_DEPTH = 150


class _Parser:
    """Recursive-descent reader for the rule grammar (see docs/prompts.md, "Grammar")."""

    def __init__(self, tokens: list[_Tok], lex: _Lexicon, text: str) -> None:
        self.toks = tokens
        self.lex = lex
        self.text = text
        self.pos = 0
        self.last: _Tok | None = None
        self.depth = 0

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

    def _nested(self, read: Callable[[], _Sel]) -> _Sel:
        """Run one grammar rule one level deeper; refuse prompts nested past ``MAX_DEPTH``.

        Brackets, "not", "except" and clause words each nest the reading one level, so a
        pathological prompt ("not not not ...") would otherwise end in a RecursionError.
        """
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self._fail(f"it nests too deeply (brackets, 'not', 'except' or clause "
                                 f"words inside each other more than {MAX_DEPTH} levels); "
                                 "write it flatter")
            return read()
        finally:
            self.depth -= 1

    def parse(self) -> frozenset[int]:
        if not self.toks:
            raise self._fail("it names no class or property (only request words such as "
                             "'select' or 'all')")
        for tok in self.toks:
            if tok.kind == "rest":
                raise self._fail(f"'{tok.text}' names no class by itself; it is read only as the "
                                 "negative side, e.g. 'sevens vs the rest' or 'cats, the rest "
                                 "negative'; say which classes are positive")
            if tok.kind == "vs":
                raise self._fail(f"'{tok.text}' is read only before 'the rest' ('sevens vs the "
                                 "rest'); a task is one class set against all others, so name "
                                 "the positive classes, e.g. 'cats or dogs'")
        sel = self._expr()
        if self.pos < len(self.toks):
            raise self._fail(f"unexpected '{self.toks[self.pos].text}' {self._where()}")
        return sel.members

    def _expr(self) -> _Sel:
        return self._nested(self._read_expr)

    def _read_expr(self) -> _Sel:
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
        return self._nested(self._read_disj)

    def _read_disj(self) -> _Sel:
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
        return self._nested(self._read_unary)

    def _read_unary(self) -> _Sel:
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
            if self._kind() == "post":  # "from 6 onwards"
                return self._compare(self._next().value, low)  # type: ignore[arg-type]
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
        """Read "3 to 6" (a range), "5 or more" or "6 upwards" (bounds) starting at a number."""
        if self._kind() != "num":
            return None
        if self._kind(1) == "to" and self._kind(2) == "num":
            low = self._number()
            self._next()
            return self._range(low, self._number())
        if self._kind(1) == "post":  # "6 upwards"
            n = self._number()
            return self._compare(self._next().value, n)  # type: ignore[arg-type]
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
