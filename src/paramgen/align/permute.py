"""Applying permutations to a state dict: exact, so the permuted model computes the same function.

A permutation `perm` of a group of n units is a LongTensor of length n: after permuting, unit i
is the unit that was at position perm[i]. Each state-dict axis the group touches (see
`structure.PermutationSpec.axes`) is reshaped into its row-major factors, every named factor is
indexed by its group's permutation, and the axis is flattened back.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from paramgen.align.structure import Factors, PermutationSpec

Perms = dict[str, Tensor]


def permute_axis(t: Tensor, axis: int, factors: Factors, perms: Mapping[str, Tensor],
                 skip: int | None = None) -> Tensor:
    """`t` with `axis` permuted by the factors' groups (factor index `skip` left as it is)."""
    sizes = [s for _, s in factors]
    shape = t.shape
    out = t.reshape(*shape[:axis], *sizes, *shape[axis + 1:])
    for j, (name, _) in enumerate(factors):
        if name is not None and j != skip and name in perms:
            out = out.index_select(axis + j, perms[name])
    return out.reshape(shape)


def permute_tensor(key: str, t: Tensor, spec: PermutationSpec, perms: Mapping[str, Tensor],
                   skip: tuple[int, int] | None = None) -> Tensor:
    """One state-dict entry permuted on every axis the spec lists for it; `skip` = (axis,
    factor) keeps that one factor unpermuted (weight matching solves for it)."""
    for axis, factors in spec.axes.get(key, ()):
        t = permute_axis(t, axis, factors, perms,
                         skip[1] if skip is not None and skip[0] == axis else None)
    return t


def apply_permutations(state_dict: Mapping[str, Tensor], spec: PermutationSpec,
                       perms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A new state dict: every permuted entry replaced, the others shared with the input."""
    return {k: permute_tensor(k, v, spec, perms) if k in spec.axes else v
            for k, v in state_dict.items()}


def identity_permutations(spec: PermutationSpec) -> Perms:
    return {g: torch.arange(n) for g, n in spec.groups.items()}


def random_permutations(spec: PermutationSpec, seed: int = 0) -> Perms:
    """One uniformly random permutation per group (seeded): a model in another basin."""
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.randperm(n, generator=gen) for g, n in spec.groups.items()}


def invert(perms: Mapping[str, Tensor]) -> Perms:
    """The permutations that undo `perms`."""
    return {g: torch.argsort(p) for g, p in perms.items()}


def rows(t: Tensor, axis: int, factors: Factors, j: int) -> Tensor:
    """`t` as a matrix [units of factor j of `axis`, everything else]."""
    sizes = [s for _, s in factors]
    shape = t.shape
    t = t.reshape(*shape[:axis], *sizes, *shape[axis + 1:])
    return t.movedim(axis + j, 0).reshape(sizes[j], -1)
