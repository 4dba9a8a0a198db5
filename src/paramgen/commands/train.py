"""`paramgen train`: fit a generator on a CheckpointSet and save it with save_pretrained.

Data-parallel over N processes (CPU over gloo, or GPUs), unchanged:
``accelerate launch --multi_gpu --num_processes N $(which paramgen) train ...``.
"""

from __future__ import annotations

import argparse
import os
import json
from pathlib import Path

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpts", required=True, metavar="DIR", action="append",
                        help="CheckpointSet folder (manifest.json + .safetensors), e.g. from "
                             "`paramgen collect`; igpg takes several (repeat --ckpts), one per "
                             "architecture/dataset")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where to save the generator (config.json + model.safetensors)")
    from paramgen.methods.registry import method_names

    parser.add_argument("--method", default="rpg", choices=method_names(),
                        help="generator method: rpg (recurrent diffusion), pdiff (autoencoder + "
                             "latent diffusion), igpg (VQ-VAE + GPT prior over a zoo of "
                             "architectures and datasets; repeat --ckpts) (default: %(default)s)")
    parser.add_argument("--preset", default=None,
                        help="named settings: rpg: cpu, cpu-tasks, tiny, small, base, large; "
                             "pdiff: cpu, cpu-partial, paper, official; igpg: cpu, tiny, paper "
                             "(default: cpu, or "
                             "cpu-tasks for rpg with --condition-from)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set backbone=lstm "
                             "--set token_size=128 (repeatable; values parsed as JSON)")
    parser.add_argument("--condition-from", choices=["none", "manifest"], default="none",
                        help="'manifest': condition the generator on each checkpoint's condition "
                             "(task bits) from the manifest (default: %(default)s)")
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
                        help="auto: test whether the checkpoints come from several runs or "
                             "independently initialised task models and, if so, permute them "
                             "into checkpoint 0's basin first (docs/align.md); none: train on "
                             "them as they are (default: %(default)s)")
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


def run(args: argparse.Namespace) -> int:
    import time

    from paramgen import io
    from paramgen.checkpoints import CheckpointSet
    from paramgen import train_state
    from paramgen.methods.registry import get_method

    if args.method == "igpg":
        return _run_igpg(args)
    if len(args.ckpts) > 1:
        raise ValueError(f"--method {args.method} trains on one collection; got {len(args.ckpts)} "
                         "--ckpts (several are for --method igpg)")
    args.ckpts = args.ckpts[0]
    ckpts = CheckpointSet.load(args.ckpts)
    overrides = parse_overrides(args.set)
    if args.device is not None:
        overrides["device"] = args.device
    out = Path(args.out)
    io.check_writable(out)  # an unusable --out fails now, not after training
    split = None
    if args.condition_from == "manifest":
        if ckpts.conditions is None:
            raise ValueError(f"{args.ckpts}/manifest.json has no conditions: collect a task grid "
                             "(`paramgen collect --tasks ...`) or drop --condition-from")
        tasks = [str(ckpts.provenance(i).get("task") or
                     "".join(str(int(v)) for v in ckpts.condition(i).tolist()))
                 for i in range(len(ckpts))]
        seen, unseen = split_tasks(tasks, args.holdout, args.split_seed)
        keep = [i for i, t in enumerate(tasks) if t in set(seen)]
        split = {"seen": seen, "unseen": unseen, "holdout": args.holdout,
                 "split_seed": args.split_seed}
        print(f"tasks: {len(seen)} seen (trained on), {len(unseen)} unseen (held out)")
        ckpts = ckpts.subset(keep)
    elif ckpts.conditions is not None:
        ckpts = CheckpointSet.from_state_dicts(list(ckpts), conditions=None, runs=ckpts.runs,
                                               info=ckpts.info)
    from paramgen.align.auto import prepare_for_training

    ckpts, message = prepare_for_training(ckpts, args.align)
    if message and os.environ.get("RANK", "0") == "0":  # one line, not one per process
        print(message)
    cls = get_method(args.method)
    # No --preset: the generator picks (RPG: cpu, or cpu-tasks for a conditioned collection).
    gen = cls(preset=args.preset, **overrides)
    workdir = Path(args.workdir) if args.workdir else out / ".train"
    if args.restart:
        train_state.remove(workdir)
    t0 = time.time()
    gen.fit(ckpts, steps=args.steps, seed=args.seed, workdir=workdir,
            progress=not args.quiet)
    report = gen.train_report
    if report is not None and report.processes > 1:
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return 0  # only the main process writes files and prints
    gen.save_pretrained(out)
    if split is not None:
        io.write_json(out / "split.json", split)
    print(f"trained {args.method} ({gen.preset}) on {len(ckpts)} checkpoints in "
          f"{time.time() - t0:.0f} s -> {out}")
    if args.quiet and hasattr(gen, "settings_summary"):  # otherwise fit printed them first
        print(f"settings: {gen.settings_summary()}")
    if report is not None:
        resumed = f"; resumed from step {report.resumed_from}" if report.resumed_from else ""
        print(f"{report.summary()}{resumed}")
    return 0


def _run_igpg(args: argparse.Namespace) -> int:
    """igpg: one generator over every --ckpts collection (architectures and datasets mixed)."""
    import time

    from paramgen import train_state
    from paramgen.checkpoints import CheckpointSet
    from paramgen.methods.registry import get_method

    if args.condition_from != "none":
        raise ValueError("--condition-from is for rpg; igpg conditions on each collection's "
                         "architecture and info['dataset']")
    sets = [CheckpointSet.load(d) for d in args.ckpts]
    overrides = parse_overrides(args.set)
    if args.device is not None:
        overrides["device"] = args.device
    gen = get_method("igpg")(preset=args.preset, **overrides)
    workdir = Path(args.workdir) if args.workdir else Path(args.out) / ".train"
    if args.restart:
        train_state.remove(workdir)
    t0 = time.time()
    gen.fit(sets, steps=args.steps, seed=args.seed, workdir=workdir, progress=not args.quiet)
    report = gen.train_report
    if report is not None and report.processes > 1:
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return 0  # only the main process writes files and prints
    gen.save_pretrained(args.out)
    print(f"trained igpg ({gen.preset}) on {len(sets)} collections "
          f"({sum(len(s) for s in sets)} checkpoints) in {time.time() - t0:.0f} s -> {args.out}")
    return 0
