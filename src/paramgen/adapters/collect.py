"""A task grid of adapters: one base, pretrained once on all classes; one LoRA/DoRA per task.

Folder layout written by :func:`collect_adapters` (``OUT``)::

    OUT/manifest.json, ckpt_*.safetensors   CheckpointSet: adapter weights, condition = task bits
    OUT/base/                               the frozen base (config.json + model.safetensors)
    OUT/init/                               the initial adapter every task starts from (PEFT)
    OUT/peft/<bits>/                        each task's trained adapter (PEFT folder)

Task bits follow ``paramgen collect --tasks`` (bit c = 1: class c is positive). Tasks train one
after the other in this process (each takes about a second); the manifest is written every few
tasks, so an interrupted run keeps its finished tasks and the same call resumes after them.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from paramgen.adapters.recipe import LoraRecipe
from paramgen.interrupts import Interrupted, StopRequests

__all__ = ["collect_adapters"]

_FLUSH_EVERY = 16  # tasks per manifest write


def _base_for(out: Path, base: str | os.PathLike | None, data: str, in_shape: list[int],
              seed: int, pretrain_steps: int | None, data_root: str | None,
              base_kwargs: dict[str, Any] | None, log) -> tuple[torch.nn.Module, dict]:
    """The collection's base: OUT/base when it exists (a resumed run), a given base folder, or
    an architecture pretrained here on all classes."""
    from paramgen.adapters import base as bases

    own = out / "base"
    if (own / bases.CONFIG).is_file():
        return bases.load_base(own)
    if base is not None and Path(base).is_dir():
        model, config = bases.load_base(base)
    elif base is not None and (Path(base).exists() or os.sep in str(base)):
        # A path, not an architecture name: say so rather than "unknown zoo model '/a/b'".
        raise FileNotFoundError(f"base {str(base)!r}: no such base folder (give a folder written "
                                "by `paramgen collect --lora`, OUT/base, or a zoo architecture "
                                "name to pretrain)")
    else:
        arch = bases.DEFAULT_ARCH if base is None else str(base)
        config = {"arch": arch, "in_shape": in_shape, "num_classes": 2, "data": data,
                  "model_kwargs": dict(base_kwargs or {})}
        t0 = time.perf_counter()
        model, result = bases.pretrain_base(config, data, seed=seed, steps=pretrain_steps,
                                            data_root=data_root)
        config["pretrain"] = {**result, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
        log(f"base {arch} pretrained on all classes of {data}: test accuracy "
            f"{100 * result['accuracy']:.1f}% ({config['pretrain']['seconds']} s)")
    config = {k: v for k, v in config.items() if k not in ("format", "head_module")}
    bases.save_base(own, model, config)
    return bases.load_base(own)


def collect_adapters(data: str, out: str | os.PathLike, tasks: str | int | Iterable[str] = 300,
                     recipe: LoraRecipe | str = "r=4,targets=q,v", base: str | None = None,
                     steps: int | None = None, lr: float | None = None,
                     batch_size: int | None = None, seed: int = 0,
                     pretrain_steps: int | None = None, data_root: str | None = None,
                     base_kwargs: dict[str, Any] | None = None, progress: bool = True):
    """Train one adapter per binary task of ``data`` on a shared base; returns the CheckpointSet.

    ``tasks``: "all", an int (a seeded random subset, as ``collect --tasks N``) or bit strings.
    ``recipe``: a LoraRecipe or a ``--lora`` spec string. ``base``: a base folder to take, or an
    architecture to pretrain on all classes ("adapter-transformer", the default, or a zoo name).
    ``steps``/``lr``/``batch_size``: each adapter's training (defaults: TRAIN_DEFAULTS).
    """
    from paramgen import data as pdata
    from paramgen.adapters.folders import read_peft_folder, write_peft_folder
    from paramgen.adapters.recipe import json_config
    from paramgen.adapters.training import TRAIN_DEFAULTS, adapter_state, attach, train_adapter
    from paramgen.checkpoints import CheckpointSet, CheckpointWriter
    from paramgen.training_classifier import progress_bar
    from paramgen.metrics import evaluate_model

    if isinstance(recipe, str):
        recipe = LoraRecipe.parse(recipe)
    out = Path(out)
    settings = {**TRAIN_DEFAULTS, **{k: v for k, v in
                                     {"steps": steps, "lr": lr, "batch_size": batch_size}.items()
                                     if v is not None}}
    n_cls = pdata.num_classes(data)
    task_list = pdata.resolve_tasks(tasks, n_cls, seed)
    x_tr, y_tr, x_te, y_te = pdata.load(data, root=data_root)

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest (see paramgen.collect)
    # Ctrl-C / SIGTERM: the adapters that finished are kept (the manifest is flushed), the one
    # in training is redone by the rerun; a stop takes one training step or one adapter's end.
    stop = StopRequests().install()
    done: set[str] = set()
    try:
        base_model, base_cfg = _base_for(out, base, data, list(x_tr.shape[1:]), seed,
                                         pretrain_steps, data_root, base_kwargs, log)
        head = base_cfg["head_module"]
        init_dir = out / "init"
        if (init_dir / "adapter_model.safetensors").is_file():
            init = read_peft_folder(init_dir)[0]
            first = attach(base_model, recipe, head, init)
        else:
            first = attach(base_model, recipe, head, seed=seed)
            init = adapter_state(first)
        peft_cfg = json_config(first.peft_config["default"])
        write_peft_folder(init_dir, init, peft_cfg)
        info = {"kind": "adapter_grid", "data": data, "task_classes": n_cls, "num_classes": 2,
                "in_shape": list(x_tr.shape[1:]), "metric": "balanced_accuracy",
                "recipe": recipe.to_dict(), "peft_config": peft_cfg,
                "base_dir": str((out / "base").resolve()), "base": base_cfg,
                "train": settings, "seed": seed}
        writer = CheckpointWriter(out, info=info)
        done.update(p.get("task") for p in writer.provenances)
        todo = [t for t in task_list if t not in done]
        bar = progress_bar(len(task_list), f"{'dora' if recipe.dora else 'lora'}/{data} adapters",
                        progress, initial=len(task_list) - len(todo))
        try:
            for i, bits in enumerate(todo):
                if stop.signal is not None:
                    break
                task_seed = seed * (2 ** n_cls) + int(bits, 2) - 1
                model = copy.deepcopy(first)  # the shared initial adapter, on the base
                train_adapter(model, x_tr, pdata.relabel(y_tr, bits), seed=task_seed, **settings)
                y_bits = pdata.relabel(y_te, bits)
                metrics = {"balanced_accuracy": evaluate_model(model, x_te, y_bits,
                                                               "balanced_accuracy"),
                           "accuracy": evaluate_model(model, x_te, y_bits, "accuracy")}
                state = adapter_state(model)
                write_peft_folder(out / "peft" / bits, state, peft_cfg,
                                  metadata={"paramgen_task": bits})
                writer.add(state, run=0, condition=[float(b) for b in bits], metrics=metrics,
                           provenance={"task": bits, "seed": task_seed,
                                       "peft_dir": f"peft/{bits}"},
                           flush=(i + 1) % _FLUSH_EVERY == 0)
                done.add(bits)
                bar.update(1)
                bar.set_postfix({"bal": f"{metrics['balanced_accuracy']:.3f}"})
        finally:
            writer.close()  # flushes the manifest and releases the folder's lock, error or not
            bar.close()
    except Interrupted as exc:  # from a training in progress (the base's or an adapter's)
        stop.signal = exc.signum
    finally:
        stop.uninstall()
        torch.set_num_threads(threads)
    if stop.signal is not None:
        raise Interrupted(stop.signal, step=sum(t in done for t in task_list), saved_to=out,
                          what="adapter", of=len(task_list))
    return CheckpointSet.load(out)
