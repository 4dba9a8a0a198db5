"""`pg.align`: bring every checkpoint of a collection into the basin of a reference checkpoint.

Checkpoints that share an origin (one run of a collection) share a basin, so by default one
permutation is found per run (matching the run's mean to the reference) and applied to all of
its checkpoints; a collection with a single run (a task grid, or files of unknown origin) is
aligned checkpoint by checkpoint. Every aligned model computes exactly what it computed before.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from paramgen import data as datasets
from paramgen.align.activations import match_activations
from paramgen.align.permute import Perms, apply_permutations, identity_permutations
from paramgen.align.policy import MOVED_THRESHOLD, runs_per_task
from paramgen.align.structure import PermutationSpec, discover
from paramgen.align.weights import match_weights
from paramgen.checkpoints import CheckpointSet
from paramgen.evaluation.core import build_model
from paramgen.notices import progress_bar

METHODS = ("weights", "activations")
TASK_RUNS = ("auto", "keep")


def model_for(ckpts: CheckpointSet, model: nn.Module | None) -> nn.Module:
    """`model`, or the architecture a `paramgen collect` collection names in its info."""
    if model is not None:
        return model
    info = ckpts.info
    if not info.get("arch") or not info.get("in_shape"):
        raise ValueError("align: the collection's info names no architecture (needs 'arch' "
                         "and 'in_shape', as `paramgen collect` writes); pass model=, an "
                         "instance of the architecture its checkpoints load into")
    return build_model(info)


def example_for(ckpts: CheckpointSet, example_input: Tensor | None, batch: int = 2) -> Tensor:
    """An input batch to trace with: `example_input`, or noise of the collection's in_shape."""
    if example_input is not None:
        return example_input
    shape = ckpts.info.get("in_shape")
    if not shape:
        raise ValueError("align: the collection's info has no 'in_shape'; pass example_input=, "
                         "a batch of inputs the model accepts")
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, *[int(s) for s in shape], generator=gen)


def structure_for(ckpts: CheckpointSet, model: nn.Module | None = None,
                  example_input: Tensor | None = None) -> PermutationSpec:
    """The permutation structure of the collection's architecture, checked against its keys."""
    model = model_for(ckpts, model)
    spec = discover(model, example_for(ckpts, example_input))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(shape) for k, (shape, _) in ckpts.spec.items()}
    if own != theirs:
        missing, extra = sorted(set(theirs) - set(own)), sorted(set(own) - set(theirs))
        shapes = sorted(k for k in set(own) & set(theirs) if own[k] != theirs[k])
        raise ValueError(f"align: the model's state dict does not match the checkpoints "
                         f"(keys only in the checkpoints: {missing[:5]}; only in the model: "
                         f"{extra[:5]}; other shapes: {shapes[:5]})")
    return spec


def training_inputs(ckpts: CheckpointSet, n: int = 512) -> Tensor:
    """Inputs for activation matching: the first `n` training examples of the collection's data."""
    data = ckpts.info.get("data")
    if not data:
        raise ValueError("align: method='activations' needs inputs: pass inputs= (a batch of "
                         "examples), or use a collection whose info names its 'data'")
    x_train = datasets.load(data)[0]
    return x_train[:n]


def _mean(sds: list[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    return {k: (torch.stack([sd[k] for sd in sds]).mean(0) if sds[0][k].is_floating_point()
                else sds[0][k]) for k in sds[0]}


def moved_share(perms: Perms) -> float:
    """The share of all hidden units (over every group) that `perms` does not leave in place."""
    total = sum(len(p) for p in perms.values())
    if total == 0:
        return 0.0
    return sum(int((p != torch.arange(len(p))).sum()) for p in perms.values()) / total


def match(spec: PermutationSpec, reference: Mapping[str, Tensor], other: Mapping[str, Tensor],
          method: str = "weights", inputs: Tensor | None = None, seed: int = 0) -> Perms:
    """Permutations of `other` into `reference`'s basin, by weights or by activations."""
    if method == "weights":
        return match_weights(spec, reference, other, seed=seed)
    if method == "activations":
        if inputs is None:
            raise ValueError("align: method='activations' needs inputs")
        return match_activations(spec, reference, other, inputs)
    raise ValueError(f"align: method must be one of {METHODS}, got {method!r}")


def align(ckpts: CheckpointSet, model: nn.Module | None = None,
          reference: int | Mapping[str, Tensor] | None = None, *, method: str = "weights",
          by: str = "auto", inputs: Tensor | None = None, example_input: Tensor | None = None,
          spec: PermutationSpec | None = None, rounds: int = 1, task_runs: str = "auto",
          progress: bool = False) -> CheckpointSet:
    """A copy of `ckpts` with every checkpoint permuted into the basin of `reference`.

    model: an instance of the architecture (default: built from the collection's info, which
        `paramgen collect` writes). reference: a checkpoint index (default 0, the first run's
        first checkpoint) or a state dict. method: "weights" (weight matching) or "activations"
        (activation matching on `inputs`, default the collection's training data).
    by: "run" (one permutation per run), "checkpoint" (one per checkpoint) or "auto" (per run
        when the collection has several runs, otherwise per checkpoint).
    rounds: 1 matches everything to the reference; each further round matches every unit to
        the mean of the collection aligned so far (the reference's own unit stays put), which
        pulls the units towards one consensus inside the reference's basin.
    task_runs: "auto" gives every task (distinct condition) of a one-run conditioned collection
        its own run when matching had to move most hidden units (the task models come from
        independent initialisations, so a generator needs a permutation state per task:
        docs/align.md); "keep" leaves the runs as they are.
    Conditions, metrics and provenance are kept, and runs unless task_runs says otherwise; info
    gains an "aligned" record (with "moved", the median share of units that matching moved).
    """
    if method not in METHODS:
        raise ValueError(f"align: method must be one of {METHODS}, got {method!r}")
    if task_runs not in TASK_RUNS:
        raise ValueError(f"align: task_runs must be one of {TASK_RUNS}, got {task_runs!r}")
    if by not in ("auto", "run", "checkpoint"):
        raise ValueError(f"align: by must be 'auto', 'run' or 'checkpoint', got {by!r}")
    t0 = time.time()
    if spec is None:
        spec = structure_for(ckpts, model, example_input)
    if method == "activations" and inputs is None:
        inputs = training_inputs(ckpts)
    ref_index = None
    if isinstance(reference, bool):  # an int to Python, but never meant as checkpoint 0 or 1
        raise ValueError(f"align: reference must be a checkpoint index or a state dict, got "
                         f"{reference!r}")
    if reference is None or isinstance(reference, int):
        ref_index = 0 if reference is None else int(reference)
        if not -len(ckpts) <= ref_index < len(ckpts):
            raise ValueError(f"align: reference={reference} is out of range for "
                             f"{len(ckpts)} checkpoints")
        ref_index %= len(ckpts)
        ref_sd = ckpts[ref_index]
    elif isinstance(reference, Mapping):
        ref_sd = dict(reference)
        missing = sorted(set(spec.axes) - set(ref_sd))
        if missing:
            raise ValueError(f"align: the reference state dict lacks keys {missing[:5]}")
    else:
        raise ValueError(f"align: reference must be a checkpoint index or a state dict, got "
                         f"{type(reference).__name__}")
    runs = ckpts.runs
    per_run = by == "run" or (by == "auto" and len(set(runs)) > 1)
    units: dict[Any, list[int]] = {}
    for i in range(len(ckpts)):
        units.setdefault(runs[i] if per_run else i, []).append(i)
    if rounds < 1:
        raise ValueError(f"align: rounds must be >= 1, got {rounds}")
    aligned: list[dict[str, Tensor] | None] = [None] * len(ckpts)
    target_sd: Mapping[str, Tensor] = ref_sd
    moved: dict[Any, float] = {}  # share of units each unit of alignment moved (last round)
    for _ in range(rounds):
        for key, members in progress_bar(len(units), "align", progress, leave=False,
                                         iterable=list(units.items())):
            sds = [ckpts[i] for i in members]
            if ref_index is not None and ref_index in members:
                perms = identity_permutations(spec)  # the reference's basin: nothing to move
            else:
                unit = sds[0] if len(sds) == 1 else _mean(sds)
                perms = match(spec, target_sd, unit, method, inputs)
                moved[key] = moved_share(perms)
            for i, sd in zip(members, sds):
                aligned[i] = apply_permutations(sd, spec, perms)
        target_sd = _mean(aligned)
    share = statistics.median(moved.values()) if moved else 0.0
    info = dict(ckpts.info)
    info["aligned"] = {"method": method, "by": "run" if per_run else "checkpoint",
                       "reference": ref_index if ref_index is not None else "state dict",
                       "groups": len(spec.groups), "rounds": rounds, "moved": round(share, 3),
                       "seconds": round(time.time() - t0, 2)}
    if task_runs == "auto" and not per_run and share >= MOVED_THRESHOLD:
        tasks = runs_per_task(ckpts)
        if tasks is not None and len(set(tasks)) > 1:
            runs = tasks
            info["aligned"]["runs"] = "one per task"
    return CheckpointSet.from_state_dicts(
        aligned, conditions=ckpts.conditions, runs=runs,
        metrics=[ckpts.metrics(i) for i in range(len(ckpts))],
        provenance=[ckpts.provenance(i) for i in range(len(ckpts))], info=info)
