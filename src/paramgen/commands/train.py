"""`paramgen train`: fit a generator on a CheckpointSet and save it with save_pretrained.

Data-parallel over N processes (CPU over gloo, or GPUs), unchanged:
``accelerate launch --multi_gpu --num_processes N $(which paramgen) train ...``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import time
import json
from pathlib import Path

from paramgen.commands.user_model import (PICKLE_NOTE, add_model_arguments, check_fits,
                                          example_input, load_model, open_collection)
from paramgen.commands.words import to_cli_words

HELP = "fit a parameter generator (RPG, p-diff or IGPG) on checkpoint collections"


def parse_overrides(items: list[str]) -> dict:
    """KEY=VALUE strings -> config overrides; values are read as JSON, else kept as text."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def _method_help() -> tuple[str, str]:
    """--method and --preset help, from what each method declares (no method is imported)."""
    from paramgen.methods.registry import method_names, method_options

    names = method_names()
    methods = "; ".join(f"{m}: {method_options(m).summary}" for m in names)
    presets = "; ".join(f"{m}: {', '.join(method_options(m).presets)}" for m in names
                        if method_options(m).presets)
    return methods, presets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from paramgen.methods.registry import method_names, methods_where

    several = methods_where(lambda o: o.several_collections)
    parser.add_argument("--ckpts", required=True, metavar="DIR", action="append",
                        help="CheckpointSet folder (manifest.json + .safetensors), e.g. from "
                             "`paramgen collect` or `paramgen import`, or a plain folder of "
                             ".pt/.pth/.safetensors state dicts (one subfolder per run), "
                             f"imported as it is read ({PICKLE_NOTE}); a method that takes "
                             "several collections ("
                             f"{', '.join(several) or 'none'}) takes --ckpts repeated, one per "
                             "architecture/dataset")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where to save the generator (config.json + model.safetensors)")
    methods, presets = _method_help()
    parser.add_argument("--method", default="rpg", choices=method_names(),
                        help=f"generator method: {methods} (default: %(default)s)")
    parser.add_argument("--preset", default=None,
                        help=f"named settings: {presets} (default: the method's choice for "
                             "the collection, e.g. rpg: cpu, or cpu-tasks for task conditions)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set backbone=lstm "
                             "--set token_size=128 (repeatable; values parsed as JSON)")
    conditioned = methods_where(lambda o: o.conditions)
    parser.add_argument("--condition-from", choices=["none", "manifest"], default="none",
                        help="'manifest': condition the generator on each checkpoint's condition "
                             "(task bits) from the manifest, for a method that learns from "
                             f"conditions ({', '.join(conditioned) or 'none'}) "
                             "(default: %(default)s)")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="with --condition-from manifest: fraction of tasks held out as "
                             "unseen (never trained on), recorded in OUT/split.json "
                             "(default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the seen/unseen task split (default: %(default)s)")
    parser.add_argument("--workdir", default=None, metavar="DIR",
                        help="where training state is saved for resume (default: OUT/.train); "
                             "run the same command again to continue after an interruption")
    parser.add_argument("--device", default=None,
                        help="auto (CUDA when available), cpu, cuda or cuda:N (default: the "
                             "preset's, auto)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the saved training state in the workdir and train from "
                             "step 0 (without it, a run whose settings differ from the saved "
                             "one is refused, and the same run resumes)")
    parser.add_argument("--align", choices=["auto", "none"], default="auto",
                        help="auto: test whether the checkpoints of each collection come from "
                             "several runs or independently initialised task models and, if so, "
                             "permute them into its checkpoint 0's basin first (docs/align.md); "
                             "none: train on them as they are (default: %(default)s)")
    add_model_arguments(parser, "lets --align auto test and align a collection that names no "
                                "zoo architecture (without it such a collection is used as "
                                "it is)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def split_tasks(tasks: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded seen/unseen split of distinct task strings (at least one of each when possible)."""
    import torch

    if not 0 <= holdout < 1:
        raise ValueError(f"--holdout must be in [0, 1), got {holdout}")
    distinct = sorted(set(tasks))
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed)).tolist()
    n_unseen = round(holdout * len(distinct))
    if holdout > 0 and len(distinct) > 1:
        n_unseen = min(max(n_unseen, 1), len(distinct) - 1)
    unseen = sorted(distinct[i] for i in order[:n_unseen])
    seen = sorted(distinct[i] for i in order[n_unseen:])
    return seen, unseen


def _check_method_takes(args: argparse.Namespace, declared) -> None:
    """The flags that only some methods take, against what --method declares."""
    from paramgen.methods.registry import methods_where

    if len(args.ckpts) > 1 and not declared.several_collections:
        several = methods_where(lambda o: o.several_collections)
        raise ValueError(f"--method {args.method} trains on one collection; got "
                         f"{len(args.ckpts)} --ckpts (several are for --method "
                         f"{' or '.join(several) or '(none installed)'})")
    if args.condition_from == "manifest":
        if not declared.conditions:
            conditioned = methods_where(lambda o: o.conditions)
            raise ValueError(f"--condition-from manifest: --method {args.method} does not learn "
                             "from task conditions (methods that do: "
                             f"{', '.join(conditioned) or 'none'})")
        if len(args.ckpts) > 1:
            raise ValueError("--condition-from manifest splits the tasks of one collection; "
                             f"got {len(args.ckpts)} --ckpts")


def _conditioned_on_manifest(ckpts, folder: str, args: argparse.Namespace):
    """--condition-from manifest: the seen tasks of the collection, and the split record."""
    if ckpts.conditions is None:
        raise ValueError(f"{folder}/manifest.json has no conditions: collect a task grid "
                         "(`paramgen collect --tasks ...`) or drop --condition-from")
    tasks = [str(ckpts.provenance(i).get("task") or
                 "".join(str(int(v)) for v in ckpts.condition(i).tolist()))
             for i in range(len(ckpts))]
    seen, unseen = split_tasks(tasks, args.holdout, args.split_seed)
    keep = [i for i, t in enumerate(tasks) if t in set(seen)]
    split = {"seen": seen, "unseen": unseen, "holdout": args.holdout,
             "split_seed": args.split_seed}
    print(f"tasks: {len(seen)} seen (trained on), {len(unseen)} unseen (held out)")
    return ckpts.subset(keep), split


def check_preset(method: str, preset: str | None) -> None:
    """An unknown --preset, refused before any checkpoint is read or aligned."""
    from paramgen.methods.registry import method_options

    known = list(method_options(method).presets)
    if preset is None or not known or preset in known:
        return
    close = difflib.get_close_matches(preset, known, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ValueError(f"--preset {preset}: not a preset of --method {method}; {hint}"
                     f"its presets: {', '.join(known)}")


def _skips_align_quietly(info: dict) -> bool:
    # Adapter collections (`collect --lora`, PEFT imports) have no hidden units to permute
    # into one basin: nothing to say about alignment there.
    return info.get("kind") in ("adapter_grid", "peft_adapters") or "peft_config" in info


def _align(ckpts, folder: str, args: argparse.Namespace, model):
    """--align for one collection: (collection to train on, the line to print or None)."""
    from paramgen.align.auto import prepare_for_training

    if args.align != "none" and model is None and not ckpts.info.get("arch"):
        if _skips_align_quietly(ckpts.info) or len(ckpts) < 2:
            return ckpts, None
        return ckpts, (f"align: not tested ({folder} names no zoo architecture; give --model "
                       "FILE.py:CLASS to test whether its checkpoints need aligning, or "
                       "--align none to train on them as they are without this note)")
    x = None
    if model is not None and args.align != "none":
        check_fits(model, ckpts, args.model, folder)
        x = example_input(model, ckpts, args.in_shape)
    return prepare_for_training(ckpts, args.align, model=model, example_input=x)


def run(args: argparse.Namespace) -> int:
    from paramgen import io, train_state
    from paramgen.checkpoints import CheckpointSet
    from paramgen.methods.registry import get_method, method_options

    declared = method_options(args.method)
    _check_method_takes(args, declared)
    check_preset(args.method, args.preset)
    model = load_model(args.model, args.model_args) if args.model else None
    out = Path(args.out)
    io.check_writable(out)  # an unusable --out fails now, not after loading and training
    overrides = parse_overrides(args.set)
    if args.device is not None:
        overrides["device"] = args.device
    main = os.environ.get("RANK", "0") == "0"  # print once, not once per process
    sets, split = [], None
    for folder in args.ckpts:
        ckpts = open_collection(folder, say=print if main else (lambda _: None))
        if args.condition_from == "manifest":
            ckpts, split = _conditioned_on_manifest(ckpts, folder, args)
        elif ckpts.conditions is not None:
            ckpts = CheckpointSet.from_state_dicts(list(ckpts), conditions=None, runs=ckpts.runs,
                                                   info=ckpts.info)
        # each collection into its own checkpoint 0's basin (one architecture each)
        ckpts, message = _align(ckpts, folder, args, model)
        if message and main:
            message = to_cli_words(message)
            print(message if len(args.ckpts) == 1 else f"{folder}: {message}")
        sets.append(ckpts)
    # No --preset: the generator picks (RPG: cpu, or cpu-tasks for a conditioned collection).
    gen = get_method(args.method)(preset=args.preset, **overrides)
    workdir = Path(args.workdir) if args.workdir else out / ".train"
    if args.restart:
        train_state.remove(workdir)
    t0 = time.time()
    # (a resume refusal names the saved run's fields: `paramgen` prints it in option words)
    gen.fit(sets if len(sets) > 1 else sets[0], steps=args.steps, seed=args.seed,
            workdir=workdir, progress=not args.quiet)
    report = gen.train_report
    if report is None or report.processes == 1:
        _write_and_report(gen, out, split, sets, args, t0)
        return 0
    from accelerate import PartialState

    state = PartialState()
    try:
        if state.is_main_process:  # only the main process writes files and prints
            _write_and_report(gen, out, split, sets, args, t0)
    finally:
        # Every process waits for the writes, then leaves the process group: a process that
        # exits with the group's threads still running aborts ("terminate called without an
        # active exception") and the launcher then kills the main process mid-write.
        state.wait_for_everyone()
        state.destroy_process_group()
    return 0


def _write_and_report(gen, out: Path, split, sets, args, t0: float) -> None:
    from paramgen import io

    report = gen.train_report
    gen.save_pretrained(out)
    if split is not None:
        io.write_json(out / "split.json", split)
    count = sum(len(s) for s in sets)
    where = f" from {len(sets)} collections" if len(sets) > 1 else ""
    print(f"trained {args.method} ({gen.preset}) on {count} checkpoints{where} in "
          f"{time.time() - t0:.0f} s -> {out}")
    if args.quiet and hasattr(gen, "settings_summary"):  # otherwise fit printed them first
        # the steps and device the fit used, not the preset's (--steps, --device auto)
        used = {} if report is None else {"steps": report.steps, "device": report.device}
        print(f"settings: {gen.settings_summary(**used)}")
    if report is not None:
        resumed = f"; resumed from step {report.resumed_from}" if report.resumed_from else ""
        print(f"{report.summary()}{resumed}")
