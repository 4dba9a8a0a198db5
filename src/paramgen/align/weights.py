"""Weight matching (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", 2023, algorithm 1).

Find the permutations of `other`'s hidden units that bring its weights closest to `reference`'s:
maximise sum_key <W_ref[key], P(W_other)[key]>. Coordinate descent: for one group at a time,
with every other group's permutation held, the objective is linear in that group's permutation,
a linear assignment problem (scipy's `linear_sum_assignment`). Repeat over the groups in random
order until no group's permutation changes.
"""

from __future__ import annotations

from typing import Mapping

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from paramgen.align.permute import Perms, identity_permutations, permute_tensor, rows
from paramgen.align.structure import PermutationSpec


def _occurrences(spec: PermutationSpec) -> dict[str, list[tuple[str, int, int]]]:
    """Group -> every (key, axis, factor index) it permutes."""
    occ: dict[str, list[tuple[str, int, int]]] = {g: [] for g in spec.groups}
    for key, axes in spec.axes.items():
        for axis, factors in axes:
            for j, (name, _) in enumerate(factors):
                if name is not None:
                    occ[name].append((key, axis, j))
    return occ


def match_weights(spec: PermutationSpec, reference: Mapping[str, Tensor],
                  other: Mapping[str, Tensor], max_iter: int = 100, seed: int = 0,
                  init: Perms | None = None) -> Perms:
    """Permutations that, applied to `other`, maximise its inner product with `reference`."""
    occ = _occurrences(spec)
    ref = {k: reference[k].detach().double() for k in spec.axes}
    oth = {k: other[k].detach().double() for k in spec.axes}
    perms = dict(init) if init is not None else identity_permutations(spec)
    names = list(spec.groups)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_iter):
        changed = False
        for i in torch.randperm(len(names), generator=gen).tolist():
            g = names[i]
            n = spec.groups[g]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis, j in occ[g]:
                factors = dict(spec.axes[key])[axis]
                a = rows(ref[key], axis, factors, j)
                b = rows(permute_tensor(key, oth[key], spec, perms, skip=(axis, j)), axis,
                         factors, j)
                cost += a @ b.T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            idx = torch.arange(n)
            if cost[idx, new].sum() > cost[idx, perms[g]].sum() + 1e-9 * cost.abs().max():
                perms[g] = new
                changed = True
        if not changed:
            break
    return perms
