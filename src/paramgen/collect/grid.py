"""`collect_tasks`: one model per binary relabelling of the classes (RPG's task grid).

Each task trains with class-balanced weights and saves a few checkpoints near the end of its
training, conditioned on its task bits. Tasks run in a pool of worker processes; the parent
writes results, so a rerun skips tasks already in the folder.

Ctrl-C and SIGTERM stop a grid within a moment (the step in progress, or a fifth of a second
while the parent waits for a chunk): what finished is in the folder already (one manifest write
per chunk), the workers are ended, and :class:`paramgen.interrupts.Interrupted` names how many
tasks are done. A task keeps no training state; the rerun trains the tasks not in the folder.
"""


from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from paramgen.checkpoints import CheckpointSet, CheckpointWriter
from paramgen.interrupts import Interrupted, StopRequests
from paramgen.training_classifier import Phase, cpu_state, fit_classifier, progress_bar, \
    warmup_for

# Task grids: tiny models, full-batch Adam (one step sees all training data; no data loader
# overhead), so one task takes a fraction of a second on one core.
# 150 full-batch steps at lr 0.02 reach ~0.98 mean balanced accuracy on digits (0.97 worst) in
# ~0.17 s of one core per task: the 1022-task grid is a few CPU-minutes.
GRID_DEFAULTS: dict[str, Any] = {"arch": "mlp", "hidden": (64,), "steps": 150, "lr": 2e-2,
                                 "per_task": 3}


_W: dict[str, Any] = {}  # per-worker-process data, set once by _grid_init


def _grid_init(cfg: dict[str, Any]) -> None:
    """Worker start-up: one thread per process (the pool provides the parallelism), data loaded
    once rather than per task."""
    torch.set_num_threads(1)
    from paramgen import data as pdata

    x_tr, y_tr, x_te, y_te = pdata.load(cfg["data"], root=cfg["data_root"],
                                        allow_pickle=cfg["allow_pickle"])
    _W.clear()
    _W.update(cfg, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)


def _grid_worker_init(cfg: dict[str, Any]) -> None:
    """Start-up of a worker process: Ctrl-C at a terminal reaches every process of its group,
    and only the parent decides what a stop saves, so workers ignore SIGINT; the parent ends
    them (SIGTERM) when it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_worker)
    # A parent killed with SIGKILL cannot end its workers, and a pool worker holds its own end
    # of the task pipe, so it would wait for tasks forever: it ends when its parent is gone.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # Run when the worker's task loop has ended and the process is on its way out: the pool's
    # SIGTERM may still arrive then, and must not break into the exit (atexit callbacks
    # printing a SystemExit traceback after every successful grid).
    multiprocessing.util.Finalize(None, _W.__setitem__, args=("exiting", True), exitpriority=100)
    _grid_init(cfg)
    _W["worker"] = True


def _end_worker(signum: int, frame: Any) -> None:
    """SIGTERM in a worker (the parent ends the pool as it stops): exit through Python's normal
    shutdown, which releases the semaphores this process made (tqdm's lock among them); being
    killed outright would leave multiprocessing to report them as leaked."""
    # The exit is under way: a second SIGTERM (the group's, then the pool's) must not break
    # into it with another SystemExit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _W.get("exiting"):
        return  # already leaving through Python's normal shutdown
    sys.exit(0)


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(5 * _POLL_S)
        if os.getppid() != parent:  # re-parented: the collecting process is gone
            os._exit(0)


# How often (seconds) the parent, waiting for a chunk, looks whether a stop was requested.
_POLL_S = 0.2


_TaskResult = list[tuple[dict[str, torch.Tensor], dict[str, float], dict[str, Any]]]


def _grid_phase(steps: int, lr: float) -> list[Phase]:
    """A grid model's schedule: warm-up, then cosine decay to a tenth of lr."""
    return [Phase("train", steps, lr, schedule="cosine", min_lr_ratio=0.1,
                  warmup_steps=warmup_for(steps))]


def _train_task(bits: str) -> _TaskResult:
    """Train one binary task; return its checkpoints as (state dict, metrics, provenance)."""
    from paramgen import zoo
    from paramgen.data import class_weights, relabel, task_index
    from paramgen.metrics import evaluate_model

    c = _W
    y_tr, y_te = relabel(c["y_tr"], bits), relabel(c["y_te"], bits)
    task_id = task_index(bits)
    seed = c["seed"] * (2 ** len(bits)) + task_id
    # Every task starts from the same initialisation (seeded by the grid's seed only): the task
    # models then share one permutation basin and their parameters vary smoothly with the task
    # bits, which is what lets a conditioned generator interpolate to tasks it never saw.
    model = zoo.create(c["arch"], c["in_shape"], 2, seed=c["seed"], **c["model_kwargs"])
    if c.get("init_state") is not None:
        own = model.state_dict()
        model.load_state_dict({k: (v if v.shape == own[k].shape else own[k])
                               for k, v in c["init_state"].items()})
    steps, k = c["steps"], c["per_task"]
    # k checkpoints over the last ~10% of training, the last at the final step.
    gap = max(1, steps // (10 * k))
    save_at = [steps - gap * (k - 1 - j) for j in range(k)]
    out = []

    def on_step(step: int, model: nn.Module) -> None:
        if step in save_at:
            metrics = {"balanced_accuracy": evaluate_model(model, c["x_te"], y_te,
                                                           "balanced_accuracy"),
                       "accuracy": evaluate_model(model, c["x_te"], y_te, "accuracy")}
            out.append((cpu_state(model), metrics,
                        {"task": bits, "seed": seed, "index": save_at.index(step),
                         "step": step}))

    # A task takes well under a second: it resumes by being redone (the folder skips the tasks
    # it holds), so it keeps no training state of its own.
    try:
        fit_classifier(model, c["x_tr"], y_tr, _grid_phase(steps, c["lr"]),
                       batch_size=c["batch_size"], seed=seed, class_weight=class_weights(y_tr),
                       on_step=on_step, desc=f"task {bits}")
    except Interrupted:
        if c.get("worker"):
            # The parent ended this worker (SIGTERM) as it stops: there is nothing to save
            # here, and a KeyboardInterrupt out of a pool worker would print a traceback.
            _end_worker(signal.SIGTERM, None)
        raise
    return out


def _pretrain_all_classes(arch: str, in_shape: tuple, n_cls: int, kw: dict, data: str,
                          data_root: str | None, allow_pickle: bool | None, steps: int, lr: float,
                          seed: int) -> dict[str, torch.Tensor]:
    """The shared starting point of a warm-started grid: `arch` trained on all classes
    (full batch, the grid's schedule)."""
    from paramgen import data as pdata
    from paramgen import zoo

    x_tr, y_tr, _, _ = pdata.load(data, root=data_root, allow_pickle=allow_pickle)
    model = zoo.create(arch, in_shape, n_cls, seed=seed, **kw)
    fit_classifier(model, x_tr, y_tr, _grid_phase(steps, lr), seed=seed,
                   desc=f"{arch}/{data} all classes")
    return cpu_state(model)


def _train_chunk(tasks: list[str]) -> list[tuple[str, _TaskResult]]:
    return [(t, _train_task(t)) for t in tasks]


def _run_in_process(cfg: dict[str, Any], chunks: list[list[str]], write, stop: StopRequests
                    ) -> None:
    prev = torch.get_num_threads()
    _grid_init(cfg)  # one thread: these models are too small to gain from more
    try:
        for ch in chunks:
            if stop.signal is not None:
                return
            write(_train_chunk(ch))
    finally:
        torch.set_num_threads(prev)  # in-process: give the caller its threading back


def _run_in_pool(cfg: dict[str, Any], chunks: list[list[str]], write, stop: StopRequests,
                 workers: int) -> None:
    ctx = mp.get_context("spawn")
    # Leaving the with block terminates the pool: on a stop, the workers end mid-task.
    with ctx.Pool(min(workers, len(chunks)), initializer=_grid_worker_init,
                  initargs=(cfg,)) as pool:
        results = pool.imap(_train_chunk, chunks)  # ordered: a deterministic manifest
        for _ in chunks:
            while True:
                if stop.signal is not None:
                    return
                try:
                    res = results.next(timeout=_POLL_S)
                    break
                except mp.TimeoutError:
                    continue
            write(res)
        # Every chunk is in: end the idle workers by their task queue, not by signals. A SIGTERM
        # that lands on a worker's other thread leaves its main thread blocked on the queue's
        # lock, and the pool then waits for it forever (seen once in a full test run).
        pool.close()
        pool.join()


def collect_tasks(arch: str, data: str, out: str | os.PathLike,
                  tasks: str | int | Iterable[str] = "all", per_task: int | None = None,
                  epochs: int | None = None, lr: float | None = None, workers: int = 2,
                  seed: int = 0, hidden: Sequence[int] | None = None,
                  batch_size: int | None = None, progress: bool = True,
                  data_root: str | None = None, allow_pickle: bool | None = None,
                  chunk_size: int | None = None,
                  model_kwargs: dict[str, Any] | None = None,
                  warm_start: bool = True, finetune_lr: float | None = None) -> CheckpointSet:
    """One model per binary task of `data` (RPG's 1022-task grid for 10 classes), into `out`.

    warm_start (default): every task starts from one model of `arch` first trained on all classes
    of `data` (its classifier layer, which has another shape, comes from the shared seed) and
    fine-tunes at `finetune_lr` (default lr / 4), so task models differ mostly where the task
    does; off, every task trains from the same random initialisation at `lr`.

    tasks: "all", an int (a seeded random subset of that size) or bit strings. Each task trains
    `arch` (hidden layers `hidden` when the model takes them, e.g. "mlp") on the relabelled data
    with class-balanced weights, for `epochs` optimizer steps (full batch by default: one step is
    one epoch; `batch_size` switches to mini-batches), and saves `per_task` checkpoints over the
    last tenth of training. condition = task bits as floats, provenance["task"] = bits, run = 0
    (all tasks start from one shared initialisation, seeded by `seed`). `workers` processes
    (spawn, one thread each) train chunks of tasks; the parent writes results, so restarting
    skips tasks already in `out`.
    """
    from paramgen import data as pdata
    from paramgen import zoo

    # Registered names from here on: "MLP" gets mlp's defaults and resumes its folder.
    arch, data = zoo.canonical_name(arch), pdata.canonical_name(data)
    per_task = GRID_DEFAULTS["per_task"] if per_task is None else int(per_task)
    steps = GRID_DEFAULTS["steps"] if epochs is None else int(epochs)
    lr = GRID_DEFAULTS["lr"] if lr is None else float(lr)
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if finetune_lr is not None:
        finetune_lr = float(finetune_lr)
        if not 0 < finetune_lr < math.inf:
            raise ValueError(f"finetune_lr must be a positive finite number, got {finetune_lr}")
        if not warm_start:
            raise ValueError("finetune_lr is the fine-tuning rate from the shared model of a "
                             "warm-started grid; without a warm start every task trains at lr")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if per_task < 1 or steps < per_task:
        raise ValueError(f"need per_task >= 1 and epochs >= per_task, got per_task={per_task}, "
                         f"epochs={steps}")
    n_cls = pdata.num_classes(data)
    in_shape = tuple(pdata.input_shape(data))
    task_list = pdata.resolve_tasks(tasks, n_cls, seed)
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
    if finetune_lr is not None:  # only when given: grids made before it existed still resume
        info["finetune_lr"] = finetune_lr
    # The writer holds the folder's lock: a second grid into this folder waits, then skips
    # the tasks this one wrote.
    with CheckpointWriter(out, info=info) as writer:
        counts: dict[str, int] = {}
        for p in writer.provenances:
            counts[p.get("task")] = counts.get(p.get("task"), 0) + 1
        todo = [t for t in task_list if counts.get(t, 0) < per_task]
        cfg = {"arch": arch, "data": data, "data_root": data_root, "allow_pickle": allow_pickle,
               "in_shape": in_shape, "model_kwargs": kw, "lr": lr, "steps": steps,
               "per_task": per_task, "batch_size": batch_size, "seed": seed, "init_state": None}
        workers = max(1, int(workers))
        if chunk_size is None:
            # Several chunks per worker balance the load; a chunk is the unit of manifest writes.
            chunk_size = max(1, min(32, math.ceil(len(todo) / (workers * 4))))
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        bar = progress_bar(len(task_list), f"{arch}/{data} tasks", progress,
                        initial=len(task_list) - len(todo))

        def write(results: list[tuple[str, _TaskResult]]) -> None:
            for bits, ckpts in results:
                cond = [float(b) for b in bits]
                for sd, metrics, prov in ckpts:
                    writer.add(sd, run=0, condition=cond, metrics=metrics,
                               provenance=prov, flush=False)
                bar.update(1)
            writer.flush()  # one manifest write per chunk: the 1022-task grid stays I/O-light

        stop = StopRequests().install()  # Ctrl-C / SIGTERM: keep what finished, then stop
        try:
            try:
                if warm_start and todo:
                    cfg["init_state"] = _pretrain_all_classes(arch, in_shape, n_cls, kw, data,
                                                              data_root, allow_pickle, steps,
                                                              lr, seed)
                    cfg["lr"] = lr / 4 if finetune_lr is None else finetune_lr
                if workers == 1 or len(chunks) <= 1:
                    _run_in_process(cfg, chunks, write, stop)
                else:
                    _run_in_pool(cfg, chunks, write, stop, workers)
            except Interrupted as exc:  # from a training in this process; chunks are written
                stop.signal = exc.signum
            if stop.signal is not None:
                writer.flush()
                saved = Counter(p.get("task") for p in writer.provenances)
                done = sum(1 for t in task_list if saved[t] >= per_task)
                raise Interrupted(stop.signal, step=done, saved_to=out, what="task",
                                  of=len(task_list))
        finally:
            stop.uninstall()
            bar.close()
    return CheckpointSet.load(out)
