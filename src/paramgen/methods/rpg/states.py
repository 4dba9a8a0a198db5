"""RPG's permutation states: which state each checkpoint trains with, and which one a sample gets.

A permutation state is a learned vector the backbone reads beside every token; checkpoints that
share one are generated as one basin. Training: one state per checkpoint, per run, or none
(``permutation_state``; ``auto`` picks, and gives a task grid whose task models share no
starting point a state per task); or, for a one-run grid of fine-tunes of one model, one per
seen task and a shared one that a share of every batch trains with (``task``; elsewhere it
plans as ``auto``). Sampling: a given state, else one of the states trained nearest to the
sample's condition (``task``: a seen task's own state, the shared state for any other
condition); and, for a generator of independently initialised task models, an
unseen task generates its nearest seen task (``unseen_task``, with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from paramgen import notices
from paramgen.methods.rpg.anchor import seen_tasks


@dataclass
class StatePlan:
    """The states of one fit."""

    kind: str                   # checkpoint | run | task | none (auto resolved)
    state_of: Tensor | None     # [N] the state of each checkpoint; None for kind none
    runs: list                  # per state, the run it stands for (checkpoint: each one's run)
    independent: bool           # each state is a task whose models share no starting point
    note: str | None            # what RPG decided about a task grid, said before training

    @property
    def count(self) -> int:
        if self.state_of is None:
            return 0
        # task: the seen tasks' states and the shared one after them
        return int(self.state_of.max()) + 1 + (self.kind == "task")


def plan_states(setting: str, ckpts, info: dict) -> StatePlan:
    """The permutation states a fit on ``ckpts`` trains with (``setting``: the config's
    ``permutation_state``; ``info``: the collection's, which says whether pg.align gave each
    task its own run)."""
    runs = list(getattr(ckpts, "runs", None) or [0] * len(ckpts))
    runs, note = _runs_for_states(setting, ckpts, runs)
    if setting == "task" and (note is not None or len(set(runs)) > 1):
        # Task models from independent initialisations (or several runs, which may be): one
        # state for a task's runs, or a shared one, would mix their basins, so the plan is
        # "auto"'s: a state per run, or per task with the nearest seen task for an unseen one.
        setting = "auto"
    aligned = info.get("aligned")
    independent = note is not None or (
        isinstance(aligned, dict) and aligned.get("runs") == "one per task")
    kind = _state_kind(setting, getattr(ckpts, "conditions", None) is not None, len(set(runs)))
    if kind == "task":
        conditions = getattr(ckpts, "conditions", None)
        if conditions is None:
            raise ValueError("permutation_state='task' needs a task-conditioned collection (a "
                             "state per task); this one has no conditions")
        _, state_of = seen_tasks(torch.as_tensor(conditions, dtype=torch.float32))
        state_runs = [0] * (int(state_of.max()) + 2)
    elif kind == "checkpoint":
        state_of, state_runs = torch.arange(len(runs)), list(runs)
    elif kind == "run":
        distinct = sorted(set(runs))
        state_of, state_runs = torch.tensor([distinct.index(r) for r in runs]), distinct
    else:
        state_of, state_runs = None, []
    return StatePlan(kind, state_of, state_runs, independent, note)


def _state_kind(setting: str, conditioned: bool, num_runs: int) -> str:
    if setting == "auto":
        # One state per run when there are several runs (or tasks): measured on 5 runs x 10
        # checkpoints of an MLP outside the zoo, 57.8% vs 37.8% for one state per checkpoint
        # at 600 steps (README, "Generate, don't copy"). One run: a state per checkpoint.
        return "run" if conditioned or num_runs > 1 else "checkpoint"
    return setting


def _runs_for_states(setting: str, ckpts, runs: list) -> tuple[list, str | None]:
    """With ``permutation_state="auto"`` (or ``"task"``), a one-run task grid whose task
    models share no starting point (no tensor correlates between two of them) gets a run (so a
    state) per task; with one state for all the generator cannot tell the tasks' basins apart and
    gives chance-level models for seen tasks too (docs/align.md). Fine-tunes of one model
    keep one run."""
    # Imported here: paramgen.align loads scipy (~0.4 s), which only this decision needs, and
    # sampling a saved generator (this module too) should not pay for it.
    from paramgen.align.auto import SHARED_THRESHOLD, runs_per_task, shared_start

    if setting not in ("auto", "task") or len(set(runs)) > 1 \
            or getattr(ckpts, "conditions", None) is None:
        return runs, None
    shared = shared_start(ckpts)
    tasks = runs_per_task(ckpts)
    if shared is None or shared >= SHARED_THRESHOLD or tasks is None:
        return runs, None
    return tasks, (f"RPG: the task models share no starting point ({100 * shared:.0f}% of "
                   f"their values in tensors that correlate between tasks): one permutation "
                   f"state per task ({len(set(tasks))}); a task to generate takes the state "
                   "of the nearest seen task (pg.align first brings them into one basin)")


def conditions_of_states(state_of: Tensor | None, cond: Tensor | None
                         ) -> tuple[Tensor, Tensor] | None:
    """The distinct (state, condition) pairs of the training set: rows [R, C], states [R]."""
    if state_of is None or cond is None:
        return None
    pairs = torch.unique(torch.cat([state_of[:, None].float(), cond.float()], dim=1), dim=0)
    return pairs[:, 1:].contiguous(), pairs[:, 0].long().contiguous()


# ---------------------------------------------------------------------- sampling
def pick_states(n: int, state: int | Sequence[int] | None, gen: torch.Generator,
                cond: Tensor | None, num_states: int, kind: str,
                state_conditions: tuple[Tensor, Tensor] | None) -> Tensor | None:
    """The state of each of ``n`` samples: ``state`` as given, else drawn with ``gen`` among
    the states trained nearest to each sample's condition (among all of them when that is all)."""
    if num_states > 0:
        if state is None and kind == "task":
            return _task_states(n, cond, state_conditions, num_states)
        if state is None:
            nearest = _states_nearest(cond, state_conditions, num_states)
            if nearest is None:  # every state is as near as any other: draw among all
                return torch.randint(0, num_states, (n,), generator=gen)
            picks = torch.randint(0, 2 ** 62, (n,), generator=gen)
            return torch.tensor([int(c[int(p) % len(c)]) for c, p in zip(nearest, picks)])
        states = torch.as_tensor(state, dtype=torch.long).reshape(-1).expand(n).clone()
        if int(states.min()) < 0 or int(states.max()) >= num_states:
            raise ValueError(f"permutation state must be in [0, {num_states}), got {state}")
        return states
    if state is not None:
        raise ValueError(f"this generator has no permutation states (permutation_state={kind!r})")
    return None


def _task_states(n: int, cond: Tensor | None, state_conditions: tuple[Tensor, Tensor] | None,
                 num_states: int) -> Tensor:
    """``permutation_state="task"``: a seen task's own state, the shared state (the last) for
    any condition not seen in training."""
    shared = torch.full((n,), num_states - 1, dtype=torch.long)
    if cond is None or state_conditions is None:
        return shared
    rows, owner = state_conditions
    dist = torch.cdist(cond.float().cpu().reshape(n, -1), rows,
                       compute_mode="donot_use_mm_for_euclid_dist")
    low, at = dist.min(dim=1)
    return torch.where(low <= 1e-6, owner[at], shared)


def _states_nearest(cond: Tensor | None, state_conditions: tuple[Tensor, Tensor] | None,
                    num_states: int) -> list[Tensor] | None:
    """For each sample's condition, the states whose training conditions include the nearest
    one to it (L2), or None when that is every state for every sample (one run of tasks, or
    runs that all saw the same conditions). A task grid whose task models come from
    independent initialisations has a state per task: an unseen task takes the state of the
    seen task nearest to it, where a state drawn at random would mix two tasks' basins."""
    if cond is None or state_conditions is None:
        return None
    rows, owner = state_conditions
    dist = torch.cdist(cond.float().cpu(), rows,  # [n, R], exact: ties must stay ties
                       compute_mode="donot_use_mm_for_euclid_dist")
    best = torch.full((len(cond), num_states), float("inf"))
    best = best.scatter_reduce(1, owner.expand(len(cond), -1), dist, "amin")
    low = best.min(dim=1, keepdim=True).values
    near = best <= low + 1e-5 * (1 + low)
    if bool(near.all()):
        return None
    return [row.nonzero().flatten() for row in near]


def task_of_state(cond: Tensor | None, states: Tensor | None, state_arg: Any, *,
                  independent: bool, unseen_task: str,
                  state_conditions: tuple[Tensor, Tensor] | None) -> Tensor | None:
    """With ``unseen_task="auto"`` on a generator of independently initialised task models,
    every sample whose condition is not a training condition takes the condition of the
    seen task whose state it was given (the nearest one), and a warning says so: such a
    generator has nothing between its tasks to interpolate (docs/align.md)."""
    if (cond is None or states is None or state_arg is not None or not independent
            or unseen_task != "auto" or state_conditions is None):
        return cond
    rows, owner = state_conditions
    out, moved = cond.clone(), []
    for i in range(len(cond)):
        own = rows[owner == int(states[i])]
        given = cond[i].float().cpu()
        if len(own) == 0 or bool((own == given).all(dim=1).any()):
            continue  # a seen task, or a state without conditions: as given
        best = own[torch.cdist(given[None], own)[0].argmin()]
        out[i] = best.to(out.dtype).to(out.device)
        moved.append((given, best))
    if moved:
        given, best = moved[0]
        notices.warn(
            f"condition {_show(given)} is not one of the training tasks; this generator's "
            f"task models came from independent initialisations, which it cannot "
            f"interpolate, so it generates the nearest seen task's model ({_show(best)})"
            + (f" ({len(moved)} of {len(cond)} samples)" if len(moved) > 1 else "")
            + "; unseen_task='given' feeds the given condition instead")
    return out


def _show(v: Tensor) -> str:
    """Task bits as a bit string, anything else as a list."""
    values = v.tolist()
    if all(x in (0.0, 1.0) for x in values):
        return "".join(str(int(x)) for x in values)
    return "[" + ", ".join(f"{x:g}" for x in values) + "]"
