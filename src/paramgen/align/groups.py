"""The algebra of permutable axes: a union-find of axis groups that can be split into factors.

Every axis of every tensor in a traced model gets a group. Two axes whose units must be permuted
together (a Linear's output and the next Linear's input, the two sides of a residual add) are
united. An axis may also be a *product* of groups: flattening a (channels, height, width) map
gives one axis whose permutation is the channels' permutation on blocks of height*width values,
and splitting a model width into (heads, head_dim) makes the width the product (heads x head_dim)
so that whole heads move together. Products are row-major, like `reshape`.

A group is *fixed* when its units cannot move (the model's inputs and outputs, axes created by
a reshape that mixes groups, axes an operation reads by position). Fixing is always safe: the
identity permutation preserves every function; it only leaves that axis unaligned.
"""

from __future__ import annotations

import math


class AxisGroups:
    """Union-find over axis groups; a root is either atomic or a row-major product of groups."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._size: list[int] = []
        self._fixed: list[bool] = []
        self._factors: list[tuple[int, ...] | None] = []

    # -- construction ------------------------------------------------------------------------

    def new(self, size: int, fixed: bool = False) -> int:
        """A fresh atomic group of `size` units (size-1 groups are fixed: nothing to permute)."""
        self._parent.append(len(self._parent))
        self._size.append(int(size))
        self._fixed.append(bool(fixed) or size <= 1)
        self._factors.append(None)
        return len(self._parent) - 1

    def product(self, parts: list[int]) -> int:
        """A group for an axis that is the row-major product of `parts` (size-1 parts dropped)."""
        parts = [p for p in parts if self.size(p) > 1]
        if not parts:
            return self.new(1)
        if len(parts) == 1:
            return self.find(parts[0])
        g = self.new(math.prod(self.size(p) for p in parts))
        self._factors[g] = tuple(self.find(p) for p in parts)
        return g

    # -- queries -----------------------------------------------------------------------------

    def find(self, g: int) -> int:
        while self._parent[g] != g:
            self._parent[g] = self._parent[self._parent[g]]
            g = self._parent[g]
        return g

    def size(self, g: int) -> int:
        return self._size[self.find(g)]

    def atoms(self, g: int) -> list[int]:
        """The atomic groups `g` is the row-major product of (itself when atomic), size-1
        dropped."""
        r = self.find(g)
        if self._factors[r] is None:
            return [r] if self._size[r] > 1 else []
        out: list[int] = []
        for f in self._factors[r]:
            out += self.atoms(f)
        return out

    def is_fixed(self, g: int) -> bool:
        """True when no unit of atomic group `g` may move."""
        r = self.find(g)
        return self._fixed[r] if self._factors[r] is None else all(
            self.is_fixed(a) for a in self.atoms(r))

    # -- constraints -------------------------------------------------------------------------

    def fix(self, g: int) -> None:
        """No unit of `g` (or of any of its factors) may move."""
        for a in self.atoms(g) or [self.find(g)]:
            self._fixed[self.find(a)] = True

    def refine(self, atom: int, sizes: list[int]) -> list[int]:
        """Split atomic group `atom` into a row-major product of fresh groups of `sizes`."""
        r = self.find(atom)
        assert self._factors[r] is None and math.prod(sizes) == self._size[r]
        parts = [self.new(s, fixed=self._fixed[r]) for s in sizes]
        self._factors[r] = tuple(parts)
        return [p for p in parts if self._size[p] > 1]

    def cut(self, groups: list[int], boundaries: list[int]) -> list[int] | None:
        """The atoms of the row-major product of `groups`, split so that every cumulative size in
        `boundaries` falls between two atoms; None when the sizes do not nest (e.g. 2x3 vs 3x2)."""
        atoms = [a for g in groups for a in self.atoms(g)]
        out: list[int] = []
        before = 1
        for a in atoms:
            size = self.size(a)
            inside = sorted(b for b in set(boundaries) if before < b < before * size)
            if inside:
                sizes, prev = [], before
                for b in inside + [before * size]:
                    if b % prev:
                        return None
                    sizes.append(b // prev)
                    prev = b
                out += self.refine(a, sizes)
            else:
                out.append(a)
            before *= size
        return out

    def union(self, a: int, b: int) -> int:
        """Make `a` and `b` one group: their units move together. Returns the root."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self._size[ra] != self._size[rb]:
            raise ValueError(f"internal: uniting axes of sizes {self._size[ra]} and "
                             f"{self._size[rb]}")
        fa, fb = self._factors[ra], self._factors[rb]
        if fa is None and fb is None:
            self._parent[rb] = ra
            self._fixed[ra] = self._fixed[ra] or self._fixed[rb]
            return ra
        if fa is None or fb is None:
            atomic, prod = (ra, rb) if fa is None else (rb, ra)
            if self._fixed[atomic]:
                self.fix(prod)
            self._parent[atomic] = prod
            return prod
        # Two products: split both to common boundaries, then unite atom by atom.
        bounds = self._boundaries(ra) + self._boundaries(rb)
        left, right = self.cut([ra], bounds), self.cut([rb], bounds)
        if left is None or right is None or [self.size(x) for x in left] != \
                [self.size(x) for x in right]:
            self.fix(ra)
            self.fix(rb)
        else:
            for x, y in zip(left, right):
                self.union(x, y)
        self._parent[rb] = ra
        return ra

    def _boundaries(self, g: int) -> list[int]:
        out, acc = [], 1
        for a in self.atoms(g):
            acc *= self.size(a)
            out.append(acc)
        return out
