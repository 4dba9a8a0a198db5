"""Training a classifier on the Engine: the one loop behind every model paramgen trains itself.

Collection runs, task grids, the shared start of a warm-started grid, adapter bases, adapters
and the fine-tuning evaluation all train a classifier with cross-entropy on in-memory tensors.
They do it here, through :class:`paramgen.training.Engine`, so they share its device handling,
its learning-rate schedules (:meth:`Stage.lr_at`, the only one in paramgen), AdamW, its progress
bar and its resume format (one safetensors file, :mod:`paramgen.train_state`). What a caller
describes is a list of :class:`Phase` (steps, lr, schedule, which parameters learn) and, through
``on_step``, what happens after a step (score, save a checkpoint).

**Data order.** Mini-batches walk through a fresh permutation of the training set every epoch;
the permutation of epoch ``e`` is drawn from a generator seeded by (seed, e), and dropout & co.
draw from a global generator seeded by (seed, step). Nothing random is carried from one step to
the next, so a run resumed from ``workdir`` after a crash (even ``kill -9``) draws exactly what
an uninterrupted run would, and ends with the same weights, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from paramgen import notices, train_state
from paramgen.training import SCHEDULES, Engine, Runtime, Stage, StepContext, TrainReport, \
    mix_seed, resolve_device

__all__ = ["Phase", "cpu_state", "fit_classifier", "progress_bar", "steps_per_epoch",
           "warmup_for"]

# Salt of the epoch permutations' seeds: kept apart from the Engine's per-step streams.
_EPOCH_STREAM = 0x5EED


def cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """A copy of ``model``'s state dict on the CPU (what a checkpoint stores)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def warmup_for(steps: int) -> int:
    """Warm-up steps of a classifier's cosine phase: 5% of it, 1 to 50. A short linear warm-up
    keeps Adam's first, poorly scaled steps from wrecking BatchNorm/attention models."""
    return min(50, max(1, int(steps) // 20))


def steps_per_epoch(n: int, batch_size: int | None, min_batch: int = 1) -> int:
    """Optimizer steps in one pass over ``n`` examples: full batches, plus the last partial one
    when it holds at least ``min_batch`` examples (2 for BatchNorm, which cannot normalise one)."""
    if batch_size is None or batch_size >= n:
        return 1
    full, rest = divmod(int(n), int(batch_size))
    steps = full + (1 if rest >= max(1, min_batch) else 0)
    return max(1, steps)


@dataclass
class Phase:
    """One phase of a classifier's training: how long, at which learning rate, which parameters
    learn. Phases follow each other on one AdamW, whose moments carry over (a continuation after
    convergence goes on from where pretraining left Adam, not from fresh moments)."""

    name: str
    steps: int
    lr: float
    schedule: str = "cosine"          # cosine | constant | linear (Stage.lr_at)
    min_lr_ratio: float = 0.0         # the decay's floor, as a fraction of lr
    warmup_steps: int = 0
    # Parameter names that learn in this phase; None: all. The others get no gradient (and so
    # no AdamW update).
    trainable: Sequence[str] | None = None
    # Modules kept in eval mode during this phase (frozen normalisation layers, whose running
    # statistics must not move either).
    frozen: Sequence[nn.Module] = field(default_factory=list)


@dataclass
class _PhasedStage(Stage):
    """The Engine's one Stage (one optimizer) for a sequence of phases: each phase's learning
    rate is its own Stage's :meth:`Stage.lr_at`, counted from the phase's first step."""

    phases: Sequence[Phase] = ()

    def __post_init__(self) -> None:
        self._lr = [Stage(name=p.name, steps=int(p.steps), module=self.module, lr=float(p.lr),
                          schedule=p.schedule, min_lr_ratio=p.min_lr_ratio,
                          warmup_steps=p.warmup_steps) for p in self.phases]
        self._starts = [sum(int(p.steps) for p in self.phases[:k])
                        for k in range(len(self.phases))]

    def phase_at(self, step: int) -> tuple[int, int]:
        """(phase index, step within the phase) of ``step`` of this stage."""
        k = max(i for i, start in enumerate(self._starts) if start <= step)
        return k, step - self._starts[k]

    def lr_at(self, step: int) -> float:
        k, offset = self.phase_at(step)
        return self._lr[k].lr_at(offset)

    def param_groups(self) -> list[dict]:
        # Every parameter: the optimizer is made before the first phase sets requires_grad.
        return [{"params": list(self.module.parameters()), "lr": self.lr, "lr_scale": 1.0}]


class _Classifier:
    """The Engine's Trainable for a classifier: cross-entropy on mini-batches of (x, y)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, phases: Sequence[Phase],
                 batch_size: int | None, seed: int, weight: Tensor | None, min_batch: int,
                 weight_decay: float, save_steps: Iterable[int], name: str):
        self.model, self.x, self.y = model, x, y
        self.batch_size = None if batch_size is None or batch_size >= len(x) else int(batch_size)
        self.per_epoch = steps_per_epoch(len(x), batch_size, min_batch)
        self.seed, self.name = int(seed), name
        self.loss_fn = nn.CrossEntropyLoss(weight=weight)
        self.phases = list(phases)
        self.stage = _PhasedStage(name="train", steps=sum(int(p.steps) for p in phases),
                                  module=model, lr=float(phases[0].lr),
                                  weight_decay=weight_decay, schedule="constant", phases=phases)
        self._active: Phase | None = None
        self._epoch, self._perm = -1, None
        # Steps (from 1) after which the Engine saves the state, besides its timed saves: each
        # phase's end, and the caller's points (e.g. a collection's checkpoints).
        ends = [sum(int(p.steps) for p in self.phases[:k + 1]) for k in range(len(self.phases))]
        self.save_steps = set(ends) | {int(s) for s in save_steps}

    def save_due(self, step: int) -> bool:
        return step in self.save_steps

    def training_stages(self) -> list[Stage]:
        return [self.stage]

    def training_modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def _enter(self, phase: Phase) -> None:
        # Also reached when a resumed run starts inside a phase (the Engine calls its stage hooks
        # only at boundaries it crosses), so the phase is set up from scratch here.
        keep = None if phase.trainable is None else set(phase.trainable)
        for name, p in self.model.named_parameters():
            p.requires_grad_(keep is None or name in keep)
        self._active = phase

    def _batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        if self.batch_size is None:
            if ctx.num_processes == 1:
                return self.x, self.y
            idx = ctx.shard(torch.arange(len(self.x)))
        else:
            epoch, k = divmod(ctx.step, self.per_epoch)
            if epoch != self._epoch:
                order = torch.Generator().manual_seed(mix_seed(self.seed, epoch, _EPOCH_STREAM))
                self._epoch, self._perm = epoch, torch.randperm(len(self.x), generator=order)
            idx = ctx.shard(self._perm[k * self.batch_size:(k + 1) * self.batch_size])
        idx = idx.to(self.x.device)
        return self.x[idx], self.y[idx]

    def training_loss(self, ctx: StepContext) -> Tensor:
        k, _ = self.stage.phase_at(ctx.stage_step)
        phase = self.phases[k]
        if phase is not self._active:
            self._enter(phase)
        for module in phase.frozen:  # after the Engine's model.train()
            module.eval()
        # Dropout & co. draw from the global generator: seeded per step (with the Engine's noise
        # stream of this step), so a resumed run draws what an uninterrupted one would.
        # (torch.manual_seed would also queue seeds for every absent accelerator: slow.)
        step_seed = ctx.noise.initial_seed()
        torch.default_generator.manual_seed(step_seed)
        if ctx.device.type == "cuda":
            torch.cuda.manual_seed(step_seed)
        xb, yb = self._batch(ctx)
        with ctx.autocast():
            loss = self.loss_fn(self.model(xb), yb)
        if not torch.isfinite(loss):
            raise ValueError(f"{self.name}: loss became {loss.item()} at step {ctx.step} "
                             f"({phase.name}, lr {self.stage.lr_at(ctx.stage_step):.3g}); lower "
                             "the learning rate")
        return loss


def fit_classifier(model: nn.Module, x: Tensor, y: Tensor, phases: Sequence[Phase], *,
                   batch_size: int | None = None, seed: int = 0,
                   class_weight: Tensor | None = None, min_batch: int = 1,
                   weight_decay: float = 0.0, device: str | torch.device | None = None,
                   on_step: Callable[[int, nn.Module], None] | None = None,
                   workdir: Any = None, identity: dict | None = None,
                   save_steps: Iterable[int] = (), save_every_seconds: float = 60.0,
                   progress: bool = False, desc: str = "train") -> TrainReport:
    """Train ``model`` on (x, y) through ``phases`` with the Engine; returns its report.

    ``batch_size``: None (or >= len(x)) for full-batch steps, else epoch-permuted mini-batches
    (a last partial batch below ``min_batch`` examples is skipped). ``class_weight``: weights of
    the cross-entropy; ``weight_decay``: AdamW's. ``device``: where to train (default: where
    ``x`` is); ``x`` and ``y`` move there. ``on_step(step, model)`` runs after every step
    (``step`` counts from 1, over all phases). With ``workdir``, the training state is saved
    there (at each phase's end, after each step in ``save_steps``, and every
    ``save_every_seconds``) and a later call with the same ``identity`` resumes from it; a state
    that cannot be read (a save torn by a kill) is removed with a warning and training starts
    over. The caller removes the state when the run's results are safe. The model ends in eval
    mode on ``device``.
    """
    phases = [p for p in phases if int(p.steps) > 0]
    if not phases:
        raise ValueError("fit_classifier: no phase with steps to train")
    for p in phases:
        if p.schedule not in SCHEDULES:
            raise ValueError(f"phase {p.name!r}: schedule must be one of {SCHEDULES}, got "
                             f"{p.schedule!r}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"fit_classifier: {len(x)} inputs and {len(y)} labels; need as many "
                         "of each, at least one")
    if workdir is not None and train_state.exists(workdir):
        try:
            train_state.load(workdir)
        except ValueError as exc:
            # A state that cannot be read (an earlier version's two-file save torn by a kill, a
            # damaged disk; a save of this version is one atomic file). A classifier's training
            # replays bit for bit from its seed, so starting it over loses time, never results.
            notices.warn(f"{exc}. Removed it: this training starts over from step 0")
            train_state.remove(workdir)
    dev = resolve_device(x.device if device is None else device)
    x, y = x.to(dev), y.to(dev)
    weight = None if class_weight is None else class_weight.to(dev)
    task = _Classifier(model, x, y, phases, batch_size, seed, weight, min_batch, weight_decay,
                       save_steps, desc)
    # Classifiers train in full precision (bf16 would move the accuracies a collection records).
    engine = Engine(Runtime(device=str(dev), autocast="off",
                            save_every_seconds=save_every_seconds))
    callback = None if on_step is None else (lambda step, _loss: on_step(step, model))
    # The per-step seeding of the global generator stays inside this call.
    fork = (torch.random.fork_rng(devices=[dev]) if dev.type == "cuda"
            else torch.random.fork_rng(devices=[]))
    with fork:
        return engine.fit(task, seed=seed, workdir=workdir, identity=identity,
                          progress=progress, callback=callback, desc=desc)


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    """The bar of a loop over many trainings (tasks, adapters); each training's own steps show
    in the Engine's bar."""
    return notices.progress_bar(total, desc, enabled, initial=initial, leave=False)
