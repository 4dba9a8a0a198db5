"""`paramgen generate`: a model for a task named by bits or by a plain-English prompt."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate a model for a task given as bits or a plain-English prompt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gen", required=True, metavar="DIR",
                        help="a task-conditioned generator (`paramgen train --condition-from "
                             "manifest`)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", metavar="BITS",
                      help="one bit per class, 1 = positive class, e.g. 0101010101 (odd digits)")
    what.add_argument("--prompt", metavar="TEXT",
                      help="plain English, e.g. 'select all even digits', 'prime numbers', "
                           "'animals that can fly' (cifar10)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="where to write the model (.safetensors state dict; a PEFT folder "
                             "when the generator was trained on adapters)")
    parser.add_argument("--classes", default=None,
                        help="class names the prompt talks about: digits, cifar10, or a comma "
                             "list (default: from the generator's training data)")
    parser.add_argument("--backend", default="rules",
                        help="prompt reader: 'rules' (built in) or a registered backend "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--no-eval", action="store_true",
                        help="do not measure the model on the dataset even when it is at hand")


def run(args: argparse.Namespace) -> int:
    from paramgen import io, prompts
    from paramgen.methods import load_generator

    gen = load_generator(args.gen)
    info = dict(getattr(gen, "collection_info", {}) or {})
    classes = args.classes or info.get("data") or "digits"
    if isinstance(classes, str) and "," in classes:
        classes = [c.strip() for c in classes.split(",")]
    if gen.condition_dim is None:
        raise ValueError(f"{args.gen} was trained without task conditions; train one with "
                         "`paramgen train --condition-from manifest` on a task grid")
    names = prompts.class_names(classes)
    if args.prompt is not None:
        bits = prompts.parse_prompt(args.prompt, names, backend=args.backend)
        print(f"prompt: {args.prompt!r}")
    else:
        from paramgen.data import parse_bits

        bits = parse_bits(args.task, num_classes=len(names))
    if len(bits) != gen.condition_dim:
        raise ValueError(f"task has {len(bits)} bits but {args.gen} expects "
                         f"{gen.condition_dim}")
    print(f"task bits: {bits}  ({prompts.describe_bits(bits, names)})")
    split = Path(args.gen) / "split.json"
    if split.is_file():
        import json

        seen = set(json.loads(split.read_text()).get("seen", []))
        print("this task was " + ("seen in training" if bits in seen else
                                  "never seen in training"))
    if "peft_config" in info:  # trained on adapters: the output is a PEFT folder
        from paramgen.adapters.cli import generate_adapter

        return generate_adapter(gen, bits, args.out, args.seed, evaluate=not args.no_eval)
    sd = gen.sample(1, condition=bits, seed=args.seed)[0]
    out = io.save_safetensors(args.out, sd)
    print(f"wrote {out}")
    if not args.no_eval and info.get("arch") and info.get("data"):
        from paramgen.evaluation.core import build_model, load_data_for, load_into
        from paramgen.metrics import balanced_accuracy, predict

        try:
            x, y = load_data_for(info, task=bits)
        except (FileNotFoundError, ValueError) as exc:
            print(f"(not measured: {exc})")
            return 0
        model = load_into(build_model(info), sd, str(out))
        score = balanced_accuracy(predict(model, x), y)
        print(f"balanced accuracy on the {info['data']} test split: {100 * score:.1f}%")
    return 0
