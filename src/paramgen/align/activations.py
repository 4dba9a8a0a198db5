"""Activation matching (Git Re-Basin §3.1; Li et al. 2016, "Convergent learning").

Run both models on the same inputs and pair each unit of `reference` with the unit of `other`
whose activations correlate best with it, one linear assignment per group. Every traced value a
group permutes (pre- and post-activation, every block of a residual stream) contributes its
correlation matrix.
"""

from __future__ import annotations

from typing import Mapping

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from paramgen.align.permute import Perms, rows
from paramgen.align.structure import PermutationSpec


def _standardise(m: Tensor) -> Tensor:
    m = m - m.mean(dim=1, keepdim=True)
    return m / (m.norm(dim=1, keepdim=True) + 1e-12)


def match_activations(spec: PermutationSpec, reference: Mapping[str, Tensor],
                      other: Mapping[str, Tensor], inputs: Tensor) -> Perms:
    """Permutations of `other`'s units that maximise activation correlation with `reference`."""
    # Prefer values where a group is the whole axis (a hidden layer, q's heads): there the
    # other factors of a product axis cannot blur the comparison.
    by_group: dict[str, list[tuple[str, int, tuple, int]]] = {g: [] for g in spec.groups}
    for name, axis, factors in spec.sites:
        for j, (g, _) in enumerate(factors):
            if g is not None:
                by_group[g].append((name, axis, factors, j))
    for g, sites in by_group.items():
        whole = [s for s in sites if len(s[2]) == 1]
        by_group[g] = whole or sites
    capture = {s[0] for sites in by_group.values() for s in sites}
    with torch.no_grad():
        acts_ref = spec.run(reference, inputs, capture)
        acts_oth = spec.run(other, inputs, capture)
    perms: Perms = {}
    for g, sites in by_group.items():
        n = spec.groups[g]
        cost = torch.zeros(n, n, dtype=torch.float64)
        for name, axis, factors, j in sites:
            a = _standardise(rows(acts_ref[name].double(), axis, factors, j))
            b = _standardise(rows(acts_oth[name].double(), axis, factors, j))
            cost += a @ b.T
        _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
        perms[g] = torch.as_tensor(cols, dtype=torch.long)
    return perms
