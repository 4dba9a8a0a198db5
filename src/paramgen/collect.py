"""Collect training checkpoints: the data every parameter generator learns from.

Two recipes:

* `collect` (RPG §3.1 / appendix, p-diff §3): train a model to convergence, then keep training and
  save `n` checkpoints spread uniformly over that continuation. The continuation updates every
  parameter (`trainable="all"`, RPG) or only a subset with the rest frozen (e.g. the last two
  normalization layers, p-diff). Several runs with distinct seeds give distinct "basins".
* `collect_tasks` (RPG appendix, binary-embedding experiment): one model per binary relabelling
  of the classes, trained with class-balanced weights; each saves a few checkpoints near the end
  of its training, conditioned on its task bits. Tasks run in a pool of worker processes.

Both write through `CheckpointWriter`, so a crash keeps every finished checkpoint, and both resume:
run the same call again and completed work is skipped (a single-task run in progress also
restarts from its last saved training state in `OUT/.resume/`).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from paramgen import io
from paramgen.checkpoints import CheckpointSet, CheckpointWriter

__all__ = ["collect", "collect_tasks", "DEFAULTS", "GRID_DEFAULTS", "resolve_trainable"]

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

# Task grids: tiny models, full-batch Adam (one step sees all training data; no data loader
# overhead), so one task takes a fraction of a second on one core.
# 150 full-batch steps at lr 0.02 reach ~0.98 mean balanced accuracy on digits (0.97 worst) in
# ~0.17 s of one core per task: the 1022-task grid is a few CPU-minutes.
GRID_DEFAULTS: dict[str, Any] = {"arch": "mlp", "hidden": (64,), "steps": 150, "lr": 2e-2,
                                 "per_task": 3}

# Resume state is saved at most this often (seconds) while pretraining, and after every
# checkpoint: frequent enough that a kill loses little, rare enough to cost nothing.
_RESUME_EVERY_S = 5.0

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
               nn.modules.instancenorm._InstanceNorm)


# ----------------------------------------------------------------------------- helpers

def _is_norm(module: nn.Module) -> bool:
    # Custom norms (e.g. a channels-first LayerNorm in ConvNeXt) are recognised by name.
    return isinstance(module, _NORM_TYPES) or (
        "norm" in type(module).__name__.lower()
        and any(True for _ in module.parameters(recurse=False)))


def resolve_trainable(model: nn.Module, trainable: str | Sequence[str]) -> list[str] | None:
    """Parameter names to train during the continuation; None means all of them.

    `trainable` is "all", "last-norm-K" (the last K normalization layers, in module order;
    "last-norm-2" is p-diff's default), or a list of key prefixes such as ["fc.", "bn2."].
    """
    names = [n for n, _ in model.named_parameters()]
    if isinstance(trainable, str):
        spec = trainable.strip()
        if spec == "all":
            return None
        m = re.fullmatch(r"last-norm-(\d+)", spec)
        if m:
            k = int(m.group(1))
            norms = [n for n, mod in model.named_modules()
                     if n and _is_norm(mod) and any(True for _ in mod.parameters(recurse=False))]
            if k < 1 or len(norms) < k:
                raise ValueError(f"trainable={spec!r}: the model has {len(norms)} normalization "
                                 f"layers with parameters ({', '.join(norms) or 'none'}); use "
                                 "trainable='all' or a list of key prefixes")
            prefixes = [n + "." for n in norms[-k:]]
        else:
            prefixes = [p.strip() for p in spec.split(",") if p.strip()]
    else:
        prefixes = [str(p) for p in trainable]
    if not prefixes:
        raise ValueError(f"trainable={trainable!r} selects nothing")
    chosen = []
    for p in prefixes:
        hits = [n for n in names if n.startswith(p)]
        if not hits:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"trainable prefix {p!r} matches no parameter; parameters: {shown}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def _varying_keys(model: nn.Module, chosen: list[str]) -> list[str]:
    """State-dict keys that change during a partial continuation: the chosen parameters plus the
    buffers (BatchNorm running stats) of the modules that own them."""
    chosen_set = set(chosen)
    keys = []
    for mname, mod in model.named_modules():
        prefix = mname + "." if mname else ""
        own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
        if any(k in chosen_set for k in own):
            keys += [k for k in own if k in chosen_set]
            keys += [prefix + n for n, b in mod.named_buffers(recurse=False) if b is not None]
    return keys


def _frozen_norms(model: nn.Module, chosen: list[str] | None) -> list[nn.Module]:
    """Normalization modules none of whose parameters train. They are kept in eval mode during a
    partial continuation so their running statistics stay fixed: otherwise BatchNorm would keep
    updating "frozen" buffers and checkpoints would differ outside the chosen subset."""
    if chosen is None:
        return []
    chosen_set = set(chosen)
    out = []
    for mname, mod in model.named_modules():
        prefix = mname + "." if mname else ""
        if _is_norm(mod) or isinstance(mod, _NORM_TYPES):
            own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
            if not any(k in chosen_set for k in own):
                out.append(mod)
    return out


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _cosine_lr(step: int, total: int, lr: float, floor: float = 0.01) -> float:
    """Cosine decay from lr to floor*lr over `total` steps (after a short linear warm-up that
    keeps Adam's first, poorly scaled steps from wrecking BatchNorm/attention models)."""
    warm = min(50, max(1, total // 20))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm  # imported late: keeps `import paramgen.collect` light

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, file=sys.stderr,
                leave=False, dynamic_ncols=True)


def _load_data(data: str, root: str | None, task: str | None):
    from paramgen import data as pdata

    x_tr, y_tr, x_te, y_te = pdata.load(data, root=root)
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
            device: str | torch.device | None = None, model_kwargs: dict[str, Any] | None = None,
            callback: Callable[[dict[str, Any]], None] | None = None) -> CheckpointSet:
    """Train `runs` models of `arch` on `data` and save `n` checkpoints of each into `out`.

    Per run r (seed + r): Adam with warm-up + cosine decay for `epochs` epochs (convergence), then
    `extra_steps` more steps at the constant `finetune_lr` (default 0.3 lr) updating only the
    `trainable` parameters, saving a checkpoint every `extra_steps / n` steps with its test metric.
    `extra_steps` defaults to max(n, one epoch) so the continuation is at least one epoch, as in
    RPG; `spread` sets it in epochs instead (e.g. 5: checkpoints spread over five epochs of
    continued training, which differ far more than those of one epoch). `task` (bit string) trains the binary relabelling instead (balanced accuracy, balanced
    class weights, condition = the bits). `callback(event)` is called after each checkpoint.

    Re-running with the same arguments resumes: finished runs and checkpoints are kept, a run in
    progress restarts from `out/.resume/run_R.pt`. Returns the folder as a CheckpointSet (all of
    it: runs collected earlier into the same folder are included).
    """
    from paramgen import zoo

    if n < 1 or runs < 1:
        raise ValueError(f"n and runs must be >= 1, got n={n}, runs={runs}")
    d = {**_FALLBACK, **DEFAULTS.get(data, {})}
    epochs = d["epochs"] if epochs is None else int(epochs)
    lr = min(d["lr"], _ARCH_MAX_LR.get(arch, math.inf)) if lr is None else float(lr)
    batch_size = d["batch_size"] if batch_size is None else int(batch_size)
    finetune_lr = lr * FINETUNE_LR_FACTOR if finetune_lr is None else float(finetune_lr)
    if epochs < 0 or batch_size < 1 or lr <= 0 or finetune_lr < 0:
        raise ValueError(f"bad training settings: epochs={epochs}, batch_size={batch_size}, "
                         f"lr={lr}, finetune_lr={finetune_lr}")
    dev = _device(device)
    x_tr, y_tr, x_te, y_te, in_shape, n_cls, bits = _load_data(data, data_root, task)
    steps_per_epoch = max(1, math.ceil(len(x_tr) / batch_size))
    if spread is not None:
        if extra_steps is not None:
            raise ValueError("give extra_steps or spread (the continuation in epochs), not both")
        if not (math.isfinite(spread) and spread > 0):
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
        info["trainable_keys"] = _varying_keys(probe, chosen)
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
    try:
        tensors = tuple(t.to(dev) for t in (x_tr, y_tr, x_te, y_te))
        writer = CheckpointWriter(plan.out, info=info)
        for r in range(runs):
            _collect_run(plan, r, writer, tensors, progress, callback)
        writer.flush()
    finally:
        torch.set_num_threads(threads)
    resume_dir = plan.out / ".resume"
    if resume_dir.is_dir() and not any(resume_dir.iterdir()):
        resume_dir.rmdir()
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

        weight = class_weights(y_tr.cpu()).to(plan.device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    cond = [float(c) for c in plan.bits] if plan.bits is not None else None

    done = {p.get("index") for p, rr in zip(writer.provenances, writer.runs) if rr == r}
    resume_path = plan.out / ".resume" / f"run_{r}.pt"
    if len(done) >= plan.n:
        if resume_path.exists():
            resume_path.unlink()
        return
    run_seed = plan.seed + r
    model = zoo.create(plan.arch, plan.in_shape, plan.num_classes, seed=run_seed,
                       **plan.model_kwargs).to(plan.device)
    opt = torch.optim.Adam(model.parameters(), lr=plan.lr)
    gen = torch.Generator().manual_seed(run_seed)
    step, perm, pos = 0, torch.randperm(len(x_tr), generator=gen), 0
    if resume_path.exists():
        try:
            st = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # io writes atomically, so this means outside damage
            raise ValueError(f"{resume_path}: unreadable resume state ({exc}); delete it to "
                             "restart this run from scratch") from exc
        if st.get("info") != writer.info:
            raise ValueError(f"{resume_path}: resume state was made with other settings; "
                             "delete it (or the whole output folder) to start over")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        step, perm, pos = int(st["step"]), st["perm"], int(st["pos"])
    else:
        torch.manual_seed(run_seed)  # dropout etc. draw from the global generator

    def save_resume() -> None:
        io.save_torch(resume_path, {
            "info": writer.info, "model": _cpu_state(model), "optimizer": opt.state_dict(),
            "gen": gen.get_state(), "rng": torch.get_rng_state(), "step": step,
            "perm": perm, "pos": pos})

    frozen: list[nn.Module] = []
    continuing = False
    last_save = time.monotonic()
    bar = _progress(plan.total, f"{plan.arch}/{plan.data} run {r + 1}/{plan.runs}", progress,
                    initial=step)
    try:
        while step < plan.total:
            if step >= plan.pre_steps and not continuing:
                # Entering (or resuming inside) the continuation: freeze what must not move.
                continuing = True
                if plan.chosen is not None:
                    keep = set(plan.chosen)
                    for name, p in model.named_parameters():
                        p.requires_grad_(name in keep)
                    frozen = _frozen_norms(model, plan.chosen)
            model.train()
            for mod in frozen:
                mod.eval()
            cur_lr = (_cosine_lr(step, plan.pre_steps, plan.lr) if step < plan.pre_steps
                      else plan.finetune_lr)
            for group in opt.param_groups:
                group["lr"] = cur_lr
            if pos >= len(perm):
                perm, pos = torch.randperm(len(x_tr), generator=gen), 0
            idx = perm[pos:pos + plan.batch_size].to(plan.device)
            pos += plan.batch_size
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            if not torch.isfinite(loss):
                raise RuntimeError(f"{plan.arch}/{plan.data} run {r}: loss became {loss.item()} "
                                   f"at step {step}; lower the learning rate (now {plan.lr})")
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            c = step - plan.pre_steps
            if c > 0 and c in plan.save_at:
                j = plan.save_at.index(c)
                score = None
                if j not in done:
                    score = evaluate_model(model, x_te, y_te, plan.metric)
                    metrics = {plan.metric: score}
                    if plan.metric != "accuracy":
                        metrics["accuracy"] = evaluate_model(model, x_te, y_te, "accuracy")
                    prov = {"run": r, "seed": run_seed, "index": j,
                            "epoch": step / plan.steps_per_epoch, "step": step,
                            "continuation_step": c, "trainable": plan.trainable}
                    if plan.bits is not None:
                        prov["task"] = plan.bits
                    writer.add(_cpu_state(model), run=r, condition=cond, metrics=metrics,
                               provenance=prov)
                    done.add(j)
                    bar.set_postfix({plan.metric[:3]: f"{score:.3f}"})
                # The writer holds the checkpoint before the resume state moves past it, so a
                # crash between the two only repeats a step whose checkpoint is then skipped.
                save_resume()
                last_save = time.monotonic()
                if callback is not None:
                    callback({"run": r, "index": j, "step": step, "metric": score})
            elif time.monotonic() - last_save > _RESUME_EVERY_S:
                save_resume()
                last_save = time.monotonic()
    finally:
        bar.close()
    if resume_path.exists():
        resume_path.unlink()


# ----------------------------------------------------------------------------- task grids

_W: dict[str, Any] = {}  # per-worker-process data, set once by _grid_init


def _grid_init(cfg: dict[str, Any]) -> None:
    """Worker start-up: one thread per process (the pool provides the parallelism), data loaded
    once rather than per task."""
    torch.set_num_threads(1)
    from paramgen import data as pdata

    x_tr, y_tr, x_te, y_te = pdata.load(cfg["data"], root=cfg["data_root"])
    _W.clear()
    _W.update(cfg, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)


_TaskResult = list[tuple[dict[str, torch.Tensor], dict[str, float], dict[str, Any]]]


def _train_task(bits: str) -> _TaskResult:
    """Train one binary task; return its checkpoints as (state dict, metrics, provenance)."""
    from paramgen import zoo
    from paramgen.data import class_weights, relabel
    from paramgen.metrics import evaluate_model

    c = _W
    y_tr, y_te = relabel(c["y_tr"], bits), relabel(c["y_te"], bits)
    task_id = int(bits, 2) - 1  # position in all_tasks(): stable whatever subset is collected
    seed = c["seed"] * (2 ** len(bits)) + task_id
    # Every task starts from the same initialisation (seeded by the grid's seed only): the task
    # models then share one permutation basin and their parameters vary smoothly with the task
    # bits, which is what lets a conditioned generator interpolate to tasks it never saw.
    model = zoo.create(c["arch"], c["in_shape"], 2, seed=c["seed"], **c["model_kwargs"])
    if c.get("init_state") is not None:
        own = model.state_dict()
        model.load_state_dict({k: (v if v.shape == own[k].shape else own[k])
                               for k, v in c["init_state"].items()})
    opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y_tr))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    steps, k, bs = c["steps"], c["per_task"], c["batch_size"]
    n_tr = len(c["x_tr"])
    # k checkpoints over the last ~10% of training, the last at the final step.
    gap = max(1, steps // (10 * k))
    save_at = [steps - gap * (k - 1 - j) for j in range(k)]
    out = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, c["lr"], floor=0.1)
        if bs is None or bs >= n_tr:
            xb, yb = c["x_tr"], y_tr
        else:
            idx = torch.randint(0, n_tr, (bs,), generator=gen)
            xb, yb = c["x_tr"][idx], y_tr[idx]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()
        if step + 1 in save_at:
            j = save_at.index(step + 1)
            metrics = {"balanced_accuracy": evaluate_model(model, c["x_te"], y_te,
                                                           "balanced_accuracy"),
                       "accuracy": evaluate_model(model, c["x_te"], y_te, "accuracy")}
            out.append((_cpu_state(model), metrics,
                        {"task": bits, "seed": seed, "index": j, "step": step + 1}))
    return out


def _pretrain_all_classes(arch: str, in_shape: tuple, n_cls: int, kw: dict, data: str,
                          data_root: str | None, steps: int, lr: float,
                          seed: int) -> dict[str, torch.Tensor]:
    """The shared starting point of a warm-started grid: `arch` trained on all classes."""
    from paramgen import data as pdata
    from paramgen import zoo

    x_tr, y_tr, _, _ = pdata.load(data, root=data_root)
    model = zoo.create(arch, in_shape, n_cls, seed=seed, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, lr, floor=0.1)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x_tr), y_tr).backward()
        opt.step()
    return _cpu_state(model)


def _train_chunk(tasks: list[str]) -> list[tuple[str, _TaskResult]]:
    return [(t, _train_task(t)) for t in tasks]


def _resolve_tasks(tasks: str | int | Iterable[str], num_classes: int, seed: int) -> list[str]:
    from paramgen.data import all_tasks, parse_bits, task_subset

    if isinstance(tasks, str) and tasks.strip() == "all":
        return all_tasks(num_classes)
    if isinstance(tasks, int) and not isinstance(tasks, bool):
        return task_subset(tasks, num_classes=num_classes, seed=seed)
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    out: list[str] = []
    for t in tasks:
        b = parse_bits(t, num_classes=num_classes)
        if b not in out:
            out.append(b)
    if not out:
        raise ValueError(f"tasks={tasks!r} selects no task")
    return out


def collect_tasks(arch: str, data: str, out: str | os.PathLike,
                  tasks: str | int | Iterable[str] = "all", per_task: int | None = None,
                  epochs: int | None = None, lr: float | None = None, workers: int = 2,
                  seed: int = 0, hidden: Sequence[int] | None = None,
                  batch_size: int | None = None, progress: bool = True,
                  data_root: str | None = None, chunk_size: int | None = None,
                  model_kwargs: dict[str, Any] | None = None,
                  warm_start: bool = True) -> CheckpointSet:
    """One model per binary task of `data` (RPG's 1022-task grid for 10 classes), into `out`.

    warm_start (default): every task starts from one model of `arch` first trained on all classes
    of `data` (its classifier layer, which has another shape, comes from the shared seed) and
    fine-tunes at lr / 4, so task models differ mostly where the task does; off, every task trains
    from the same random initialisation at `lr`.

    tasks: "all", an int (a seeded random subset of that size) or bit strings. Each task trains
    `arch` (hidden layers `hidden` when the model takes them, e.g. "mlp") on the relabelled data
    with class-balanced weights, for `epochs` optimizer steps (full batch by default: one step is
    one epoch; `batch_size` switches to mini-batches), and saves `per_task` checkpoints over the
    last tenth of training. condition = task bits as floats, provenance["task"] = bits, run = 0
    (all tasks start from one shared initialisation, seeded by `seed`). `workers` processes (spawn, one thread each) train chunks of
    tasks; the parent writes results, so restarting skips tasks already in `out`.
    """
    from paramgen import data as pdata
    from paramgen import zoo

    per_task = GRID_DEFAULTS["per_task"] if per_task is None else int(per_task)
    steps = GRID_DEFAULTS["steps"] if epochs is None else int(epochs)
    lr = GRID_DEFAULTS["lr"] if lr is None else float(lr)
    if per_task < 1 or steps < per_task:
        raise ValueError(f"need per_task >= 1 and epochs >= per_task, got per_task={per_task}, "
                         f"epochs={steps}")
    n_cls = pdata.num_classes(data)
    in_shape = tuple(pdata.input_shape(data))
    task_list = _resolve_tasks(tasks, n_cls, seed)
    kw = dict(model_kwargs or {})
    if hidden is not None:
        kw["hidden"] = [int(h) for h in hidden]
    elif arch == GRID_DEFAULTS["arch"] and "hidden" not in kw:
        kw["hidden"] = list(GRID_DEFAULTS["hidden"])
    zoo.create(arch, in_shape, 2, **kw)  # fail fast on a bad arch or keyword, before any worker
    info = {"arch": arch, "data": data, "in_shape": list(in_shape), "num_classes": 2,
            "metric": "balanced_accuracy", "kind": "task_grid", "task_classes": n_cls,
            "per_task": per_task, "epochs": steps, "lr": lr, "batch_size": batch_size,
            "seed": seed, "model_kwargs": kw, "warm_start": bool(warm_start)}
    writer = CheckpointWriter(out, info=info)
    counts: dict[str, int] = {}
    for p in writer.provenances:
        counts[p.get("task")] = counts.get(p.get("task"), 0) + 1
    todo = [t for t in task_list if counts.get(t, 0) < per_task]
    cfg = {"arch": arch, "data": data, "data_root": data_root, "in_shape": in_shape,
           "model_kwargs": kw, "lr": lr, "steps": steps, "per_task": per_task,
           "batch_size": batch_size, "seed": seed, "init_state": None}
    if warm_start and todo:
        cfg["init_state"] = _pretrain_all_classes(arch, in_shape, n_cls, kw, data, data_root,
                                                  steps, lr, seed)
        cfg["lr"] = lr / 4
    workers = max(1, int(workers))
    if chunk_size is None:
        # Several chunks per worker balance the load; a chunk is the unit of manifest writes.
        chunk_size = max(1, min(32, math.ceil(len(todo) / (workers * 4))))
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    bar = _progress(len(task_list), f"{arch}/{data} tasks", progress,
                    initial=len(task_list) - len(todo))

    def write(results: list[tuple[str, _TaskResult]]) -> None:
        for bits, ckpts in results:
            cond = [float(b) for b in bits]
            for sd, metrics, prov in ckpts:
                writer.add(sd, run=0, condition=cond, metrics=metrics,
                           provenance=prov, flush=False)
            bar.update(1)
        writer.flush()  # one manifest write per chunk: the 1022-task grid stays I/O-light

    try:
        if workers == 1 or len(chunks) <= 1:
            prev = torch.get_num_threads()
            _grid_init(cfg)  # one thread: these models are too small to gain from more
            try:
                for ch in chunks:
                    write(_train_chunk(ch))
            finally:
                torch.set_num_threads(prev)  # in-process: give the caller its threading back
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(chunks)), initializer=_grid_init,
                          initargs=(cfg,)) as pool:
                for res in pool.imap(_train_chunk, chunks):  # ordered: a deterministic manifest
                    write(res)
    finally:
        writer.flush()
        bar.close()
    return CheckpointSet.load(out)
