"""The `paramgen` command: one subcommand per module in `paramgen.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their command runs, so `paramgen --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Idle OpenMP threads otherwise spin for their next job; on a small or shared machine the spinning
# steals the cores that do the work (measured here: small torch ops 10-100x slower). Must be set
# before torch is imported, which the commands do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = {
    "collect": "paramgen.commands.collect",
    "train": "paramgen.commands.train",
    "sample": "paramgen.commands.sample",
    "eval": "paramgen.commands.eval",
    "generate": "paramgen.commands.generate",
    "demo": "paramgen.commands.demo",
    "align": "paramgen.commands.align",
}

SUMMARIES = {
    "collect": "train a model and save checkpoints along the way (single task, runs, task grids)",
    "train": "fit a parameter generator (RPG or p-diff) on a checkpoint collection",
    "sample": "sample new models from a trained generator",
    "eval": "evaluate sampled models against the training checkpoints and write a report",
    "generate": "generate a model for a task given as bits or a plain-English prompt",
    "demo": "the whole pipeline on digits in a few minutes: collect, train, sample, evaluate",
    "align": "permute a collection's checkpoints into one basin (independent runs, cold-started tasks)",
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paramgen",
        description="Learn the distribution of trained network parameters and sample new networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        p = sub.add_parser(name, help=SUMMARIES[name], description=SUMMARIES[name])
        p.add_argument("--threads", type=int, default=1,
                       help="CPU threads for torch (default: %(default)s; on a 2-core or busy "
                            "machine one thread was measured fastest for these small models, "
                            "raise it on a dedicated many-core machine)")
        if name == only:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    try:
        return int(_load(args.command).run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"paramgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paramgen {args.command}: interrupted; run the same command again to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
