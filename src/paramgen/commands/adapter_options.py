"""The command line's adapter paths: the `paramgen collect --lora ...` options and their run, and
`paramgen generate` for a generator trained on adapters. Not a command itself: `collect` and
`generate` call in here.

Like every command module, this one imports the heavy layers (torch, paramgen.adapters, peft)
inside the functions that use them, so that `paramgen collect --help` starts without them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_collect_arguments(parser: argparse.ArgumentParser) -> None:
    """`paramgen collect` options for adapter task grids."""
    group = parser.add_argument_group(
        "adapter task grids (--lora)",
        "pretrain a base once on all classes (or take one with --base DIR), then train one "
        "LoRA/DoRA adapter per task of --tasks with peft, all from one initial adapter; writes "
        "OUT/peft/<bits>/ PEFT folders, the base in OUT/base and a CheckpointSet of the adapter "
        "weights (condition = task bits). --epochs sets each adapter's optimizer steps (default "
        "40), --lr (0.02) and --batch-size (128) its training; tasks train in one process.")
    group.add_argument("--lora", default=None, metavar="SPEC",
                       help="collect adapters: 'r=4,targets=q,v' (also alpha=A, dropout=P, "
                            "head=adapter|shared: a per-task head saved in every adapter, the "
                            "default, or one frozen head shared by all tasks)")
    group.add_argument("--dora", action="store_true",
                       help="DoRA (peft use_dora=True) instead of plain LoRA")
    group.add_argument("--base", default=None, metavar="DIR|ARCH",
                       help="the base: a folder written by an earlier `collect --lora` "
                            "(OUT/base), or an architecture to pretrain on all classes of --data: "
                            "adapter-transformer (default; 2 blocks, d=32, q/k/v/o projections) "
                            "or a zoo model whose Linear layers --lora targets name")
    group.add_argument("--pretrain-steps", type=int, default=None,
                       help="optimizer steps pretraining the base (default 600)")


def collect_from_args(args: argparse.Namespace, progress: bool = True):
    """`paramgen collect --lora`: collect an adapter grid (the command prints the summary)."""
    from paramgen.adapters.collect import collect_adapters
    from paramgen.adapters.recipe import LoraRecipe
    from paramgen.data import parse_task_spec

    if args.tasks is None:
        raise ValueError("--lora needs --tasks (all, N, bit strings or @FILE): one adapter is "
                         "trained per task")
    if getattr(args, "finetune_lr", None) is not None:
        raise ValueError("--finetune-lr is for model grids and runs; with --lora, --lr sets each "
                         "adapter's learning rate")
    recipe = LoraRecipe.parse(args.lora, dora=args.dora)
    ckpts = collect_adapters(args.data, args.out, tasks=parse_task_spec(args.tasks), recipe=recipe,
                             base=args.base, steps=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, seed=args.seed,
                             pretrain_steps=args.pretrain_steps, data_root=args.data_root,
                             progress=progress)
    print(f"{'DoRA' if recipe.dora else 'LoRA'} adapters (r={recipe.r} on "
          f"{','.join(recipe.targets)}, task head: {recipe.head}) as PEFT folders in "
          f"{args.out}/peft, the base in {args.out}/base")
    return ckpts


def generate_adapter(gen: Any, bits: str, out: str, seed: int = 0,
                     evaluate: bool = True) -> int:
    """`paramgen generate` for a generator trained on adapters: write a PEFT folder to `out`."""
    from paramgen.adapters.export import sample_to_peft

    folder = sample_to_peft(gen, [out], condition=bits, seed=seed)[0]
    info = dict(getattr(gen, "collection_info", None) or {})
    print(f"wrote PEFT adapter folder {folder} (adapter_config.json + "
          "adapter_model.safetensors)")
    base = info.get("base_dir")
    if base:
        print(f"load it with: peft.PeftModel.from_pretrained(base, {str(folder)!r}), base from "
              f"paramgen.adapters.load_base({base!r})")
    if evaluate and base and info.get("data") and Path(base).is_dir():
        from paramgen.adapters.evaluate import score_adapter

        score = score_adapter(base, folder, bits, info["data"])
        print(f"balanced accuracy on the {info['data']} test split, loaded through peft: "
              f"{100 * score:.1f}%")
    return 0
