"""Does a collection need aligning? A measured distance test, and the step `paramgen train` runs.

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
import time
from dataclasses import dataclass

import torch
from torch import nn

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
MODES = ("auto", "none")


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


def prepare_for_training(ckpts: CheckpointSet, mode: str = "auto",
                         model: nn.Module | None = None) -> tuple[CheckpointSet, str]:
    """What `paramgen train --align MODE` does before fitting: (collection to train on, a line
    saying what was found and done). "none" leaves the collection as it is; "auto" aligns it
    when the distance test finds several basins."""
    from paramgen.align.api import align, structure_for
    from paramgen.align.structure import UnsupportedLayerError

    if mode not in MODES:
        raise ValueError(f"--align must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return ckpts, "align: off (--align none)"
    if len(ckpts) < 2:
        return ckpts, "align: one checkpoint, nothing to align"
    t0 = time.time()
    try:
        spec = structure_for(ckpts, model)
    except (UnsupportedLayerError, ValueError, TypeError, KeyError) as exc:
        # --align auto must never stop training: say why the collection is used as it is.
        return ckpts, f"align: skipped ({exc})"
    if not spec.groups:
        return ckpts, "align: skipped (the architecture has no permutable hidden units)"
    test = basin_test(ckpts, spec)
    ratios = f"distance after / before matching: median {test.median:.2f} over " \
             f"{len(test.ratios)} pairs"
    if not test.several_basins:
        return ckpts, f"align: checkpoints share one basin ({ratios}); left as they are"
    aligned = align(ckpts, model, spec=spec)
    how = aligned.info["aligned"]
    message = (f"align: checkpoints come from several basins ({ratios}); aligned "
               f"{len(ckpts)} checkpoints to checkpoint 0 by weight matching, one "
               f"permutation per {how['by']} ({time.time() - t0:.1f} s); samples come out "
               "in checkpoint 0's basin (--align none to skip)")
    if how.get("runs") == "one per task":  # align's own finding: most units had to move
        message += (f"\nalign: the task models do not share an initialisation (matching moved "
                    f"{100 * how['moved']:.0f}% of hidden units): each of the "
                    f"{len(set(aligned.runs))} tasks counts as its own run (one permutation "
                    "state per task; a task to generate takes the state of the nearest seen "
                    "task)")
    return aligned, message


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
