"""`collect`: train a model to convergence, then save `n` checkpoints over a continuation.

RPG §3.1 / appendix, p-diff §3. The continuation updates every parameter (`trainable="all"`,
RPG) or only a subset with the rest frozen (e.g. the last two normalization layers, p-diff).
Several runs with distinct seeds give distinct "basins". A run in progress resumes from its last
saved training state (one safetensors file in `OUT/.resume/run_R/`, see `paramgen.train_state`):
every run trains through `paramgen.training_classifier`, on the Engine.

Crash consistency: at a checkpoint step the checkpoint file is written, then the manifest that
lists it, then the training state; each write is atomic. A kill between any two leaves a folder
whose rerun replays from the last state and skips the checkpoints the manifest lists, and a
checkpoint file the manifest does not list yet is written again with the same bytes.
"""


from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from paramgen import train_state
from paramgen.checkpoints import CheckpointSet, CheckpointWriter
from paramgen.collect.trainable import frozen_norms, resolve_trainable, varying_keys
from paramgen.interrupts import StopRequests
from paramgen.training import resolve_device
from paramgen.training_classifier import Phase, cpu_state, fit_classifier, warmup_for

# Per-dataset defaults for `collect`. `paramgen collect --arch cnn-s --data digits -n 50` must
# give every checkpoint >= 90% test accuracy within 3 minutes on 2 shared CPU cores: these reach
# ~96% in 10-20 s. Adam with warm-up + cosine decay converges without per-architecture tuning
# (digits at these settings: mlp 0.97, resnet-mini 0.98, cnn-m 0.98, convnext-mini 0.98).
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 40, "batch_size": 32, "lr": 1e-2},
    "mnist1d": {"epochs": 60, "batch_size": 64, "lr": 1e-2},
    "cifar10": {"epochs": 15, "batch_size": 128, "lr": 1e-3},
}
_FALLBACK = {"epochs": 20, "batch_size": 128, "lr": 1e-3}
# Transformers stall at the CNN learning rates above (vit-mini reaches ~76% on digits at 1e-2,
# 96% at 2e-3); the default lr is capped for them.
_ARCH_MAX_LR: dict[str, float] = {"vit-mini": 2e-3, "vit-tiny": 2e-3}
# The continuation runs at this fraction of lr: large enough that checkpoints differ (p-diff
# finds more diverse checkpoints give more novel samples), small enough to stay converged.
FINETUNE_LR_FACTOR = 0.3
# Models below this many parameters train faster on one CPU thread than on several: with tiny
# matrices the threads spend their time synchronising (cnn-s: 3 ms/step on one thread, 30+ ms
# on two when the machine is shared).
_SINGLE_THREAD_BELOW = 1_000_000

# The training state is saved at the end of pretraining, after every checkpoint and at least this
# often (seconds) in between: frequent enough that a kill loses little, rare enough to cost
# nothing. A resumed run replays the steps since the last save bit for bit, and a checkpoint
# written after that save (a kill between the two) is found in the folder, not written again.
_RESUME_EVERY_S = 5.0
# Pretraining's cosine decays to this fraction of lr.
_PRETRAIN_FLOOR = 0.01
# A run in progress keeps its training state (paramgen.train_state) in OUT/.resume/run_R/.
RESUME_DIR = ".resume"

def _load_data(data: str, root: str | None, task: str | None, allow_pickle: bool | None):
    from paramgen import data as pdata

    x_tr, y_tr, x_te, y_te = pdata.load(data, root=root, allow_pickle=allow_pickle)
    in_shape = tuple(int(s) for s in x_tr.shape[1:])
    n_cls = pdata.num_classes(data)
    bits = None
    if task is not None:
        bits = pdata.parse_bits(task, num_classes=n_cls)
        y_tr, y_te = pdata.relabel(y_tr, bits), pdata.relabel(y_te, bits)
        n_cls = 2
    return x_tr, y_tr, x_te, y_te, in_shape, n_cls, bits


# ----------------------------------------------------------------------------- single task

@dataclass
class _Plan:
    """Everything `collect` resolved from its arguments; the training loop reads only this."""

    arch: str
    data: str
    out: Path
    info: dict[str, Any]
    n: int
    runs: int
    seed: int
    pre_steps: int            # optimizer steps of the convergence phase
    total: int                # pre_steps + continuation steps
    save_at: list[int]        # continuation step after which checkpoint j is saved
    steps_per_epoch: int
    batch_size: int
    lr: float
    finetune_lr: float
    chosen: list[str] | None  # parameters trained in the continuation; None = all
    trainable: str
    metric: str
    bits: str | None
    model_kwargs: dict[str, Any]
    in_shape: tuple[int, ...]
    num_classes: int
    device: torch.device


def collect(arch: str, data: str, out: str | os.PathLike, n: int = 50, runs: int = 1,
            epochs: int | None = None, extra_steps: int | None = None,
            spread: float | None = None,
            trainable: str | Sequence[str] = "all", lr: float | None = None,
            finetune_lr: float | None = None, batch_size: int | None = None, seed: int = 0,
            task: str | None = None, progress: bool = True, data_root: str | None = None,
            allow_pickle: bool | None = None,
            device: str | torch.device | None = None, model_kwargs: dict[str, Any] | None = None,
            callback: Callable[[dict[str, Any]], None] | None = None) -> CheckpointSet:
    """Train `runs` models of `arch` on `data` and save `n` checkpoints of each into `out`.

    Per run r (seed + r): Adam with warm-up + cosine decay for `epochs` epochs (convergence), then
    `extra_steps` more steps at the constant `finetune_lr` (default 0.3 lr) updating only the
    `trainable` parameters, saving a checkpoint every `extra_steps / n` steps with its test metric.
    `extra_steps` defaults to max(n, one epoch) so the continuation is at least one epoch, as in
    RPG; `spread` sets it in epochs instead (e.g. 5: checkpoints spread over five epochs of
    continued training, which differ far more than those of one epoch). `task` (bit string)
    trains the binary relabelling instead (balanced accuracy, balanced class weights, condition =
    the bits). `callback(event)` is called after each checkpoint this call writes.

    Re-running with the same arguments resumes: finished runs and checkpoints are kept, a run in
    progress restarts from its training state in `out/.resume/run_R/`. Returns the folder as a
    CheckpointSet (all of it: runs collected earlier into the same folder are included).
    """
    from paramgen import zoo
    from paramgen.data import canonical_name

    # Registered names from here on: "Digits" gets digits' defaults and resumes its folder.
    arch, data = zoo.canonical_name(arch), canonical_name(data)
    if n < 1 or runs < 1:
        raise ValueError(f"n and runs must be >= 1, got n={n}, runs={runs}")
    d = {**_FALLBACK, **DEFAULTS.get(data, {})}
    epochs = d["epochs"] if epochs is None else int(epochs)
    lr = min(d["lr"], _ARCH_MAX_LR.get(arch, math.inf)) if lr is None else float(lr)
    batch_size = d["batch_size"] if batch_size is None else int(batch_size)
    finetune_lr = lr * FINETUNE_LR_FACTOR if finetune_lr is None else float(finetune_lr)
    if (epochs < 0 or batch_size < 1 or not 0 < lr < math.inf
            or not 0 <= finetune_lr < math.inf):
        raise ValueError(f"bad training settings: epochs={epochs}, batch_size={batch_size}, "
                         f"lr={lr}, finetune_lr={finetune_lr}")
    dev = resolve_device(device)
    x_tr, y_tr, x_te, y_te, in_shape, n_cls, bits = _load_data(data, data_root, task, allow_pickle)
    steps_per_epoch = max(1, math.ceil(len(x_tr) / batch_size))
    if spread is not None:
        if extra_steps is not None:
            raise ValueError("give extra_steps or spread (the continuation in epochs), not both")
        if not (isinstance(spread, (int, float)) and math.isfinite(spread) and spread > 0):
            raise ValueError(f"spread={spread!r}: expected a number of epochs > 0")
        extra_steps = max(n, round(spread * steps_per_epoch))
    extra_steps = max(n, steps_per_epoch) if extra_steps is None else int(extra_steps)
    if extra_steps < n:
        raise ValueError(f"extra_steps={extra_steps} is less than n={n}: at most one checkpoint "
                         "is saved per step")
    pre_steps = epochs * steps_per_epoch
    metric = "balanced_accuracy" if bits is not None else "accuracy"
    kw = dict(model_kwargs or {})
    trainable_s = trainable if isinstance(trainable, str) else ",".join(trainable)
    info: dict[str, Any] = {
        "arch": arch, "data": data, "in_shape": list(in_shape), "num_classes": n_cls,
        "metric": metric, "trainable": trainable_s, "task": bits, "n": n, "epochs": epochs,
        "extra_steps": extra_steps, "lr": lr, "finetune_lr": finetune_lr,
        "batch_size": batch_size, "seed": seed, "model_kwargs": kw}
    probe = zoo.create(arch, in_shape, n_cls, seed=seed, **kw)
    chosen = resolve_trainable(probe, trainable)  # fail on a bad prefix before any training
    if chosen is not None:
        info["trainable_keys"] = varying_keys(probe, chosen)
    plan = _Plan(arch=arch, data=data, out=Path(out), info=info, n=n, runs=runs, seed=seed,
                 pre_steps=pre_steps, total=pre_steps + extra_steps,
                 # uniform spacing: checkpoint j after continuation step round((j+1) * E / n)
                 save_at=[round((j + 1) * extra_steps / n) for j in range(n)],
                 steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr,
                 finetune_lr=finetune_lr, chosen=chosen, trainable=trainable_s, metric=metric,
                 bits=bits, model_kwargs=kw, in_shape=in_shape, num_classes=n_cls, device=dev)
    threads = torch.get_num_threads()
    if dev.type == "cpu" and sum(p.numel() for p in probe.parameters()) < _SINGLE_THREAD_BELOW:
        torch.set_num_threads(1)
    # Ctrl-C / SIGTERM: inside a run the Engine saves the step it hit and stops (its handler
    # replaces this one while it trains); between runs, this one stops before the next run.
    stop = StopRequests().install()
    try:
        tensors = tuple(t.to(dev) for t in (x_tr, y_tr, x_te, y_te))
        with CheckpointWriter(plan.out, info=info) as writer:
            for r in range(runs):
                if stop.signal is not None:
                    raise stop.interrupted(r, saved_to=plan.out, what="run", of=runs)
                _collect_run(plan, r, writer, tensors, progress, callback)
    finally:
        stop.uninstall()
        torch.set_num_threads(threads)
    return CheckpointSet.load(plan.out)


def _collect_run(plan: _Plan, r: int, writer: CheckpointWriter, tensors: tuple,
                 progress: bool, callback: Callable[[dict[str, Any]], None] | None) -> None:
    """Train run `r` of `plan` (or finish it, from its resume state) writing its checkpoints."""
    from paramgen import zoo
    from paramgen.metrics import evaluate_model

    x_tr, y_tr, x_te, y_te = tensors
    weight = None
    if plan.bits is not None:
        from paramgen.data import class_weights

        weight = class_weights(y_tr.cpu())
    cond = [float(c) for c in plan.bits] if plan.bits is not None else None

    done = {p.get("index") for p, rr in zip(writer.provenances, writer.runs) if rr == r}
    workdir = resume_dir(plan.out, r)
    if len(done) >= plan.n:
        clear_resume(workdir)
        return
    run_seed = plan.seed + r
    model = zoo.create(plan.arch, plan.in_shape, plan.num_classes, seed=run_seed,
                       **plan.model_kwargs)
    frozen = frozen_norms(model, plan.chosen)
    phases = [Phase("pretrain", plan.pre_steps, plan.lr, schedule="cosine",
                    min_lr_ratio=_PRETRAIN_FLOOR, warmup_steps=warmup_for(plan.pre_steps)),
              Phase("continuation", plan.total - plan.pre_steps, plan.finetune_lr,
                    schedule="constant", trainable=plan.chosen, frozen=frozen)]

    def on_step(step: int, model: nn.Module) -> None:
        c = step - plan.pre_steps
        if c <= 0 or c not in plan.save_at or plan.save_at.index(c) in done:
            return  # a replayed step after a resume: its checkpoint is in the folder already
        j = plan.save_at.index(c)
        score = evaluate_model(model, x_te, y_te, plan.metric)
        metrics = {plan.metric: score}
        if plan.metric != "accuracy":
            metrics["accuracy"] = evaluate_model(model, x_te, y_te, "accuracy")
        prov = {"run": r, "seed": run_seed, "index": j, "epoch": step / plan.steps_per_epoch,
                "step": step, "continuation_step": c, "trainable": plan.trainable}
        if plan.bits is not None:
            prov["task"] = plan.bits
        writer.add(cpu_state(model), run=r, condition=cond, metrics=metrics, provenance=prov)
        done.add(j)
        if callback is not None:
            callback({"run": r, "index": j, "step": step, "metric": score})

    fit_classifier(model, x_tr, y_tr, phases, batch_size=plan.batch_size, seed=run_seed,
                   class_weight=weight, device=plan.device, on_step=on_step, workdir=workdir,
                   identity={**writer.info, "run": r},
                   save_steps=[plan.pre_steps + c for c in plan.save_at],
                   save_every_seconds=_RESUME_EVERY_S,
                   progress=progress, desc=f"{plan.arch}/{plan.data} run {r + 1}/{plan.runs}")
    clear_resume(workdir)


def resume_dir(out: Path, run: int) -> Path:
    """Where run `run` of the collection in `out` keeps its training state while it trains."""
    return out / RESUME_DIR / f"run_{run}"


def clear_resume(workdir: Path) -> None:
    """Remove a finished run's training state, and the resume folders once they are empty."""
    train_state.remove(workdir)
    for folder in (workdir, workdir.parent):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
