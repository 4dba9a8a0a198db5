"""`paramgen collect`: train models and save checkpoints (single task with runs, or a task grid)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from paramgen.commands.adapter_options import add_collect_arguments, collect_from_args
from paramgen.interrupts import Interrupted

HELP = "train a model and save checkpoints along the way (single task, runs, task grids)"

_EPILOG = """\
examples:
  paramgen collect --arch cnn-s --data digits --out runs/cnns
      5 runs of cnn-s on digits, each trained to convergence, then 10 checkpoints each spread
      over 5 more epochs: 50 checkpoints that differ (one run over one epoch gives near copies)
  paramgen collect --arch resnet-mini --data digits -n 200 --trainable last-norm-2 --out runs/bn
      p-diff style: after convergence only the last two normalization layers keep training
  paramgen collect --arch mlp --data digits --tasks all --per-task 3 --out runs/grid
      RPG task grid: one MLP per binary relabelling of the 10 classes (1022 tasks)
  paramgen collect --lora r=4,targets=q,v --tasks 300 --data digits --out runs/lora
      one LoRA adapter per task on a transformer pretrained once on all classes (--dora: DoRA)

Interrupted (Ctrl-C, a crash, a kill)? Run the same command again: finished checkpoints and tasks
are kept, and a run in progress continues from its last saved state.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `paramgen collect`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--arch", default=None,
                        help="architecture from the zoo (paramgen.zoo.list_models(): cnn-s, cnn-m, "
                             "mlp, mlp-mini, convnet-mini, resnet-mini, vit-mini, convnext-mini, "
                             "vit-tiny). Default: cnn-s, or mlp with --tasks")
    parser.add_argument("--data", default="digits",
                        help="dataset: digits, mnist1d or cifar10 (default: %(default)s)")
    parser.add_argument("--out", required=True,
                        help="output folder (a CheckpointSet: manifest.json + .safetensors files); "
                             "an existing one made with the same settings is resumed")
    parser.add_argument("-n", "--num", type=int, default=10,
                        help="checkpoints saved per run, spread uniformly over the continuation "
                             "after convergence (default: %(default)s; x 5 runs = 50, as in RPG)")
    parser.add_argument("--runs", type=int, default=5,
                        help="independent runs with seeds seed, seed+1, ...; each gives n "
                             "checkpoints (default: %(default)s: a collection of one run is "
                             "one model, its checkpoints near copies of each other)")
    parser.add_argument("--spread", type=float, default=5.0, metavar="EPOCHS",
                        help="length of the continuation in epochs, over which each run's n "
                             "checkpoints are spread (default: %(default)g; ignored when "
                             "--extra-steps is given)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs before the continuation (default per dataset: "
                             "digits 40, mnist1d 60, cifar10 15). With --tasks: optimizer steps "
                             "per task (default 150, full batch)")
    parser.add_argument("--extra-steps", type=int, default=None,
                        help="length of the continuation in optimizer steps (default: max(n, one "
                             "epoch)); a checkpoint every extra-steps/n steps")
    parser.add_argument("--trainable", default="all",
                        help="what keeps training after convergence: 'all' (RPG), 'last-norm-2' "
                             "(p-diff: last two normalization layers; last-norm-K for K layers), "
                             "or comma-separated key prefixes such as 'classifier.,features.0.' "
                             "(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate, cosine-decayed during training (default per "
                             "dataset: 0.01 for digits and mnist1d, 0.001 for cifar10, at most "
                             "0.002 for vit-*; 0.02 for task grids)")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="constant learning rate of the continuation (default: lr * 0.3); "
                             "with --tasks: each task's fine-tuning rate from the shared model "
                             "(default: lr / 4)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mini-batch size (default per dataset; task grids train full batch)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed: run r uses seed + r; task grids derive each task's seed "
                             "from it (default: %(default)s)")
    parser.add_argument("--task", default=None,
                        help="train one binary task instead of all classes, given as bits (one "
                             "per class, e.g. 0101010101); metric becomes balanced accuracy")
    parser.add_argument("--tasks", default=None,
                        help="collect a task grid: 'all' (every binary task, 1022 for 10 classes), "
                             "N (a seeded random subset of N tasks), a comma list of bit strings, "
                             "or @FILE with one bit string per line")
    parser.add_argument("--per-task", type=int, default=3,
                        help="task grid: checkpoints saved per task over the last tenth of its "
                             "training (default: %(default)s, as in RPG)")
    parser.add_argument("--workers", type=int, default=2,
                        help="task grid: worker processes, one CPU thread each (default: "
                             "%(default)s)")
    parser.add_argument("--hidden", default=None,
                        help="hidden layer widths for models that take them (mlp), comma "
                             "separated, e.g. 64 or 128,64 (task-grid default for mlp: 64)")
    parser.add_argument("--data-root", default=None,
                        help="folder holding datasets that are read from disk (cifar10)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow reading the official CIFAR-10 files, which are Python pickles "
                             "(read with an allow-list of numpy types only); without it they are "
                             "refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in --out: delete the files an earlier paramgen run wrote "
                             "there (only those); also lets paramgen write into a non-empty "
                             "folder it did not make (nothing that was there is deleted)")
    parser.add_argument("--device", default=None,
                        help="torch device for single-task collection (default: cuda if "
                             "available, else cpu); task grids run on CPU workers")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bars (they go to stderr)")
    add_collect_arguments(parser)  # --lora, --dora, --base: adapter task grids


def _parse_hidden(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        widths = [int(h) for h in spec.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--hidden {spec!r}: expected comma-separated integers, "
                         "e.g. 64 or 128,64") from None
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"--hidden {spec!r}: widths must be positive integers")
    return widths


def _hidden_option(arch: str, widths: list[int] | None) -> dict:
    """--hidden as the model takes it: a list of widths for the MLPs, one int for models with a
    single hidden layer (cnn-s/cnn-m, convnet-mini); others say they take no such option."""
    from paramgen import zoo

    if widths is None:
        return {}
    if zoo.canonical_name(arch).startswith("mlp"):
        return {"hidden": widths}
    if len(widths) != 1:
        raise ValueError(f"--hidden {','.join(map(str, widths))}: {arch} has at most one hidden "
                         "layer; give one width (several widths are for mlp)")
    return {"hidden": widths[0]}


def _collect(args: argparse.Namespace, arch: str, hidden: list[int] | None, progress: bool):
    from paramgen.collect import collect, collect_tasks
    from paramgen.data import parse_task_spec

    if getattr(args, "lora", None) is not None:  # an adapter task grid: paramgen.adapters
        return collect_from_args(args, progress)
    if args.tasks is not None:
        return collect_tasks(arch, args.data, args.out, tasks=parse_task_spec(args.tasks),
                             per_task=args.per_task, epochs=args.epochs, lr=args.lr,
                             workers=args.workers, seed=args.seed, finetune_lr=args.finetune_lr,
                             model_kwargs=_hidden_option(arch, hidden),
                             batch_size=args.batch_size, progress=progress,
                             data_root=args.data_root, allow_pickle=args.allow_pickle)
    return collect(arch, args.data, args.out, n=args.num, runs=args.runs, epochs=args.epochs,
                   extra_steps=args.extra_steps,
                   spread=None if args.extra_steps is not None else args.spread,
                   trainable=args.trainable, lr=args.lr,
                   finetune_lr=args.finetune_lr, batch_size=args.batch_size, seed=args.seed,
                   task=args.task, progress=progress, data_root=args.data_root,
                   allow_pickle=args.allow_pickle, device=args.device,
                   model_kwargs=_hidden_option(arch, hidden) or None)


def _undo_prepare(out: Path, created: Path | None, marked: bool) -> None:
    """After a refusal, take back what preparing `out` added when nothing else was written: the
    folders this command created (`created`: the topmost), or the marker it put into a folder it
    did not create, so a refused command leaves the file system as it found it."""
    from paramgen import io

    if created is None:
        if not marked and not io.written_files(out):
            (out / io.OUTPUT_MARKER).unlink(missing_ok=True)
        return
    written = io.written_files(out)
    if [f.name for f in written] == ["manifest.json"]:
        # Only the settings record that a new collection writes first (a data set found
        # missing inside the grid's workers, say): with no checkpoint in it, it goes too.
        try:
            empty = not json.loads(written[0].read_text(encoding="utf-8")).get("checkpoints")
        except (OSError, ValueError, AttributeError):
            empty = False
        if empty:
            io.remove_written(out)
    if io.discard_if_unused(out):
        io.discard_created_parents(out, created)


def run(args: argparse.Namespace) -> int:
    """Run the collection and print a one-paragraph summary."""
    from paramgen import io
    from paramgen.checkpoints import is_checkpoint_folder

    t0 = time.perf_counter()
    arch = args.arch or ("mlp" if args.tasks is not None else "cnn-s")
    hidden = _parse_hidden(args.hidden)
    if args.task is not None and args.tasks is not None:
        raise ValueError("--task and --tasks exclude each other: --task trains one binary "
                         "task with n checkpoints, --tasks a grid of them")
    # Before any training: an unusable or foreign --out fails now, not after the work.
    out = Path(args.out)
    created = io.first_missing(out)
    marked = (out / io.OUTPUT_MARKER).exists()
    io.prepare_output_dir(args.out, overwrite=args.overwrite, owned=is_checkpoint_folder,
                          kind="checkpoints")
    try:
        ckpts = _collect(args, arch, hidden, progress=not args.no_progress)
    except Interrupted:
        raise  # stopped on a signal after saving: the folder is what the rerun resumes
    except BaseException:
        _undo_prepare(out, created, marked)
        raise
    secs = time.perf_counter() - t0
    metric = ckpts.info.get("metric", "accuracy")
    scores = [ckpts.metrics(i).get(metric) for i in range(len(ckpts))]
    scores = [s for s in scores if s is not None]
    print(f"{len(ckpts)} checkpoints in {args.out} ({ckpts.num_params} parameters each, "
          f"{ckpts.info.get('arch') or ckpts.info.get('kind')} on {ckpts.info.get('data')})")
    if scores:
        print(f"test {metric}: mean {statistics.fmean(scores):.4f}  min {min(scores):.4f}  "
              f"max {max(scores):.4f}")
    print(f"time: {secs:.1f} s")
    sys.stdout.flush()
    return 0
