"""`paramgen align`: permute every checkpoint of a collection into one reference's basin."""

from __future__ import annotations

import argparse
import time

from paramgen.commands.user_model import (add_model_arguments, check_fits, example_input,
                                          load_model, open_collection)

HELP = "align a collection's checkpoints into one basin by permuting hidden units (Git Re-Basin)"

_EPILOG = """\
examples:
  paramgen align --ckpts runs/five-runs --out runs/five-runs-aligned
      weight matching of every run onto checkpoint 0 (the first run's first checkpoint)
  paramgen align --ckpts runs/grid --out runs/grid-aligned --method activations --reference 7

  paramgen align --ckpts my_runs --out runs/mine-aligned --model net.py:Net --in-shape 64
      your own architecture, on a plain folder of state dicts (one subfolder per run)

Every aligned checkpoint computes exactly what it computed before (its hidden units are only
reordered). The architecture comes from the collection's manifest (`paramgen collect` writes it)
or from --model.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--ckpts", required=True, metavar="DIR",
                        help="CheckpointSet folder whose manifest info names its architecture "
                             "(arch, in_shape), e.g. from `paramgen collect`; or, with --model, "
                             "any collection, or a plain folder of state dicts (one subfolder "
                             "per run)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where to write the aligned CheckpointSet (must differ from --ckpts)")
    parser.add_argument("--reference", type=int, default=0, metavar="INDEX",
                        help="index of the checkpoint whose basin the others join "
                             "(default: %(default)s, the first run's first checkpoint)")
    parser.add_argument("--method", choices=["weights", "activations"], default="weights",
                        help="weights: weight matching (no data needed); activations: match "
                             "units by activation correlation on 512 training examples of the "
                             "collection's dataset (default: %(default)s)")
    parser.add_argument("--by", choices=["auto", "run", "checkpoint"], default="auto",
                        help="one permutation per run or per checkpoint; auto: per run when the "
                             "collection has several runs (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="only run the distance test that `paramgen train --align auto` "
                             "uses and say whether the collection spans several basins")
    add_model_arguments(parser, "the architecture to align instead of the zoo architecture in "
                                "the manifest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from paramgen.align.api import align, structure_for
    from paramgen.align.auto import basin_test

    if Path(args.out).resolve() == Path(args.ckpts).resolve():
        raise ValueError(f"--out {args.out} is the input folder; write the aligned set elsewhere")
    model = load_model(args.model, args.model_args) if args.model else None
    ckpts = open_collection(args.ckpts)
    t0 = time.time()
    if model is None and not ckpts.info.get("arch"):
        raise ValueError(f"{args.ckpts} names no zoo architecture: give --model FILE.py:CLASS "
                         "(your model's class, and --in-shape if its first layer is not Linear)")
    x = None
    if model is not None:
        check_fits(model, ckpts, args.model, args.ckpts)
        x = example_input(model, ckpts, args.in_shape)
    spec = structure_for(ckpts, model, x)
    name = args.model if model is not None else ckpts.info.get("arch")
    print(f"{name}: {len(spec.groups)} permutation groups "
          f"({sum(spec.groups.values())} units) over {len(spec.axes)} of {len(ckpts.keys)} "
          "tensors")
    test = basin_test(ckpts, spec)
    verdict = "several basins" if test.several_basins else "one basin"
    print(f"distance test: median distance after / before matching {test.median:.3f} over "
          f"{len(test.ratios)} pairs -> {verdict}")
    if args.check:
        return 0
    aligned = align(ckpts, model, reference=args.reference, method=args.method, by=args.by,
                    spec=spec, progress=not args.quiet)
    aligned.save(args.out)
    how = aligned.info["aligned"]
    print(f"aligned {len(aligned)} checkpoints to checkpoint {args.reference} by {args.method} "
          f"matching, one permutation per {how['by']} (moved {100 * how['moved']:.0f}% of hidden "
          f"units), in {time.time() - t0:.1f} s -> {args.out}")
    if how.get("runs") == "one per task":
        print(f"the task models do not share an initialisation: each of the "
              f"{len(set(aligned.runs))} tasks is written as its own run, so a generator keeps "
              "one permutation state per task")
    return 0
