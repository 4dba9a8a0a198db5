"""`paramgen eval`: score sampled models against their training checkpoints and write a report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from paramgen.commands.user_model import (DATA_HELP, add_model_arguments, check_fits, load_data,
                                          load_model, open_collection)

HELP = "evaluate sampled models against the training checkpoints and write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from paramgen.evaluation.baselines import (DEFAULT_MIX_ALPHAS, DEFAULT_MIX_PAIRS,
                                               DEFAULT_NOISE_SCALES)

    parser.add_argument("--samples", required=True, metavar="DIR",
                        help="folder of sampled models, one .safetensors state dict per model")
    parser.add_argument("--ckpts", required=True, metavar="DIR",
                        help="the checkpoints the generator was trained on: a CheckpointSet "
                             "folder (its manifest says which zoo architecture and dataset to "
                             "rebuild) or the plain folder of state dicts given to `train`")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write report.md, report.json and the plots "
                             "(default: SAMPLES/report)")
    parser.add_argument("--data", metavar="NAME|FILE", default=None,
                        help=f"{DATA_HELP} (default: the dataset in the manifest)")
    add_model_arguments(parser, "evaluates the samples with this architecture instead of the "
                                "zoo architecture in the manifest (needed for a collection "
                                "that names none)", in_shape=False)
    parser.add_argument("--task", metavar="BITS", default=None,
                        help="binary task as one bit per class (e.g. 0101010101): relabels the "
                             "test set and, in a task grid, compares with that task's "
                             "checkpoints only")
    parser.add_argument("--noise-scales", metavar="S", type=float, nargs="*",
                        default=list(DEFAULT_NOISE_SCALES),
                        help="relative noise levels of the noise-added baseline (noise std = S x "
                             "each tensor's std); give none to skip the baseline "
                             f"(default: {' '.join(f'{s:g}' for s in DEFAULT_NOISE_SCALES)})")
    parser.add_argument("--noise-per-scale", metavar="N", type=int, default=10,
                        help="noise-added copies per scale, from evenly spaced originals "
                             "(default: 10; 0 = one per original)")
    parser.add_argument("--mix-alphas", metavar="A", type=float, nargs="*",
                        default=list(DEFAULT_MIX_ALPHAS),
                        help="weights of the mixture baseline, (1 - A) a + A b for pairs of "
                             "checkpoints a, b; give none to skip it "
                             f"(default: {' '.join(f'{a:g}' for a in DEFAULT_MIX_ALPHAS)})")
    parser.add_argument("--mix-pairs", metavar="N", type=int, default=DEFAULT_MIX_PAIRS,
                        help="checkpoint pairs of the mixture baseline, half within a run and "
                             "half across runs when the collection has several "
                             "(default: %(default)s)")
    parser.add_argument("--finetune-epochs", metavar="K", type=int, default=0,
                        help="also fine-tune the best generated model and a random "
                             "initialisation for K epochs and report the test metric per epoch "
                             "(default: 0 = skip)")
    parser.add_argument("--finetune-lr", metavar="LR", type=float, default=1e-3,
                        help="learning rate of that fine-tuning (AdamW; default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the noise baseline and fine-tuning (default: 0)")
    parser.add_argument("--no-plots", action="store_true",
                        help="write report.md and report.json only, no PNG plots")


def run(args: argparse.Namespace) -> int:
    from paramgen.evaluation.finetune import finetune_curves
    from paramgen.evaluation.pipeline import evaluate, write_report

    samples, ckpts = Path(args.samples), Path(args.ckpts)
    for what, path in (("samples", samples), ("checkpoint", ckpts)):
        if not path.is_dir():
            raise FileNotFoundError(f"{what} folder {path} does not exist"
                                    if not path.exists() else f"{what} path {path} is not a folder")
    if args.noise_per_scale < 0:
        raise ValueError(f"--noise-per-scale {args.noise_per_scale}: expected >= 0")
    if any(not math.isfinite(s) or s < 0 for s in args.noise_scales):
        raise ValueError(f"--noise-scales {args.noise_scales}: every scale must be a finite "
                         "number >= 0")
    if any(not math.isfinite(a) or not 0 <= a <= 1 for a in args.mix_alphas):
        raise ValueError(f"--mix-alphas {args.mix_alphas}: every weight must be in [0, 1]")
    if args.mix_pairs < 0:
        raise ValueError(f"--mix-pairs {args.mix_pairs}: expected >= 0")
    if args.finetune_epochs < 0:
        raise ValueError(f"--finetune-epochs {args.finetune_epochs}: expected >= 0")
    out = Path(args.out) if args.out else samples / "report"
    data = load_data(args.data)
    collection = open_collection(ckpts)
    model = None
    if args.model:
        model = load_model(args.model, args.model_args)
        check_fits(model, collection, args.model, str(ckpts))
        if args.finetune_epochs:
            raise ValueError("--finetune-epochs rebuilds a zoo architecture; it does not take "
                             "--model yet (drop one of them)")
    elif not collection.info.get("arch"):
        raise ValueError(f"{ckpts} names no zoo architecture to rebuild: give --model "
                         "FILE.py:CLASS (your model's class) and --data (a dataset name or "
                         "FILE.npz with x_test, y_test)")
    if data is None and not collection.info.get("data"):
        raise ValueError(f"{ckpts} names no dataset: give --data (a dataset name such as "
                         "digits, or FILE.npz / FILE.pt holding x_test and y_test)")
    if args.task is not None and not isinstance(data, (str, type(None))):
        raise ValueError("--task relabels a built-in dataset; with --data FILE give the "
                         "task's labels in y_test instead")

    report = evaluate(samples, collection, data=data, task=args.task, model=model,
                      noise_scales=args.noise_scales, noise_per_scale=args.noise_per_scale or None,
                      mix_alphas=args.mix_alphas, mix_pairs=args.mix_pairs, seed=args.seed)
    if args.finetune_epochs and report.generated_scores:
        from safetensors.torch import load_file

        best = max(range(len(report.generated_scores)), key=report.generated_scores.__getitem__)
        name = report.generated_names[best]
        report.finetune = finetune_curves(
            {f"generated ({name})": load_file(str(samples / name)), "random init": None},
            report.info, data=args.data, task=report.task, epochs=args.finetune_epochs,
            lr=args.finetune_lr, seed=args.seed, metric=report.metric)
    written = write_report(report, out, plots=not args.no_plots)

    print(report.table().text())
    print()
    sims = report.similarity_table()
    print(f"mean max-similarity: original {sims.rows[0][1]}, generated {sims.rows[1][1]} "
          "(IoU of wrong predictions; lower = more novel)")
    for warning in report.warnings():
        print(f"warning: {warning}")
    for base in (report.noise, report.mixture):
        if base is not None and base.scores:
            print()
            print(base.table(report.metric).text())
    print()
    print(report.novelty_table().text())
    print()
    print(report.beat_line())
    if report.finetune is not None:
        print()
        print(report.finetune.table().text())
    print()
    print(f"report: {written['markdown']}")
    return 0
