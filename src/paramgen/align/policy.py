"""align's policy: does a collection need aligning, and how should its runs be counted? Measured
tests that decide; `paramgen.align.api` (align) and `paramgen.align.auto` (the step `paramgen
train --align auto` runs) act on their verdicts. Nothing here imports either of them.

The distance test (`basin_test`):

Two checkpoints that share an initialisation (one run, or task models fine-tuned from one
model) sit in one basin: weight matching finds (nearly) the identity and cannot bring them
closer. Two checkpoints from independent initialisations are far apart but become much closer
once one is permuted onto the other. So the test matches a few checkpoints of other origins onto
checkpoint 0 and compares their distance after matching with their distance before:

    ratio = ||θ_a - P(θ_b)|| / ||θ_a - θ_b||

Checkpoint 0 is the reference `align` uses. The median ratio is ~1 for one basin (an aligned
collection included) and clearly below 1 for several (docs/align.md has the measured values;
THRESHOLD sits between them).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from paramgen.align.permute import apply_permutations
from paramgen.align.structure import PermutationSpec
from paramgen.align.weights import match_weights
from paramgen.checkpoints import CheckpointSet

# Median distance ratio below which a collection is taken to span several basins.
THRESHOLD = 0.95
# Share of values that two task models of different tasks hold in correlated tensors (Pearson
# r > CORRELATED per tensor), below which (median over pairs) a task grid is taken to come from
# independent initialisations; no architecture needed. Fine-tunes of one model keep most
# tensors correlated with each other, independent starts none. Measured (docs/align.md): cold
# 220-task 1D-CNN grid 0.00 (at most 0.01), cold mlp grid 0.00; warm 1D-CNN grid 1.00, warm mlp
# grid (`paramgen collect --tasks`) 0.97, LoRA adapter grid 0.47 (0.35-0.77: B starts at zero).
SHARED_THRESHOLD = 0.1
CORRELATED = 0.5
# Tensors smaller than this are left out: a few values correlate by chance.
MIN_VALUES = 16
# Median share of hidden units that matching moved, at or above which the task models of a grid
# are taken to come from independent initialisations (`align` then gives each task its own run).
# Fine-tunes of one model keep (nearly) every unit where it is; an independent initialisation
# moves almost all of them (n - 1 of n in expectation for a random order). Measured on the
# 220-task 1D-CNN grids of docs/align.md: warm 0.00 by weights and by activations, cold 0.875 by
# weights and 0.906 by activations.
MOVED_THRESHOLD = 0.5


@dataclass(frozen=True)
class BasinTest:
    """The outcome of `basin_test`: the ratios measured and the verdict."""

    ratios: list[float]
    several_basins: bool

    @property
    def median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0


def _distance(a, b, keys) -> float:
    return float(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in keys)) ** 0.5


def _pairs(ckpts: CheckpointSet, n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Checkpoint 0 (the reference `align` uses) with checkpoints of other origins: other runs,
    else other tasks (conditions), else any other checkpoint. Pairing with the reference makes
    an already aligned collection read as one basin (its matching is the identity)."""
    runs = ckpts.runs
    origin: list = list(runs)
    if len(set(runs)) == 1:
        origin = [ckpts.provenance(i).get("task") for i in range(len(ckpts))]
        if ckpts.conditions is not None:
            origin = [tuple(ckpts.condition(i).tolist()) for i in range(len(ckpts))]
        if len(set(map(str, origin))) == 1:
            origin = list(range(len(ckpts)))
    others = [j for j in range(len(ckpts)) if origin[j] != origin[0]]
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(others), generator=gen)[:n_pairs].tolist()
    return [(0, others[p]) for p in picks]


def basin_test(ckpts: CheckpointSet, spec: PermutationSpec, n_pairs: int = 6,
               seed: int = 0) -> BasinTest:
    """Match `n_pairs` pairs of checkpoints of different origins; see the module docstring."""
    keys = [k for k in spec.axes if ckpts.spec[k][1].is_floating_point]
    ratios = []
    for i, j in _pairs(ckpts, n_pairs, seed):
        a, b = ckpts[i], ckpts[j]
        before = _distance(a, b, keys)
        if before == 0:
            continue
        after = _distance(a, apply_permutations(b, spec, match_weights(spec, a, b)), keys)
        ratios.append(after / before)
    several = bool(ratios) and statistics.median(ratios) < THRESHOLD
    return BasinTest(ratios=ratios, several_basins=several)


def correlated_share(a: dict, b: dict) -> float:
    """The share of (floating-point) values of `a` in tensors whose values correlate with the
    same tensor of `b` (Pearson r > CORRELATED); tensors under MIN_VALUES values are skipped."""
    total = hit = 0
    for k, x in a.items():
        y = b.get(k)
        if y is None or not x.is_floating_point() or x.numel() < MIN_VALUES or \
                y.shape != x.shape:
            continue
        x = x.double().flatten() - x.double().mean()
        y = y.double().flatten() - y.double().mean()
        scale = float(x.norm() * y.norm())
        total += x.numel()
        if scale > 0 and float(x @ y) / scale > CORRELATED:
            hit += x.numel()
    return hit / total if total else 1.0


def shared_start(ckpts: CheckpointSet, pairs: int = 16) -> float | None:
    """Median `correlated_share` over up to `pairs` pairs of checkpoints of different conditions:
    ~0 for task models from independent initialisations, well above SHARED_THRESHOLD for
    fine-tunes of one model; None without two distinct conditions. Needs no architecture: what
    RPG checks before it picks its permutation states."""
    if ckpts.conditions is None:
        return None
    conds = [tuple(c.tolist()) for c in ckpts.conditions]
    n = len(conds)
    found = []
    for i in sorted({round(k * (n - 1) / max(pairs - 1, 1)) for k in range(pairs)}):
        j = next((j for j in range(i + 1, n + i) if conds[j % n] != conds[i]), None)
        if j is not None:
            found.append((i, j % n))
    if not found:
        return None
    return statistics.median(correlated_share(ckpts[i], ckpts[j]) for i, j in found)


def runs_per_task(ckpts: CheckpointSet) -> list[int] | None:
    """Run ids giving every distinct condition its own run, for a one-run conditioned collection
    (a task grid); None for anything else. For a grid found to span several basins: with one
    run, a generator's permutation state cannot tell the task models' basins apart, and a task
    between two seen ones mixes them (measured: chance accuracy; docs/align.md)."""
    if ckpts.conditions is None or len(set(ckpts.runs)) > 1:
        return None
    rows: dict[tuple, int] = {}
    return [rows.setdefault(tuple(c.tolist()), len(rows)) for c in ckpts.conditions]
