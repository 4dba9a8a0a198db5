"""`paramgen generate`: a model for a task named by bits or by a plain-English prompt.

A prompt is never answered silently: what it was understood as ("digits 3 and 8 -> 0001000010")
is printed before anything is generated, and `--dry-run` stops right there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "generate a model for a task given as bits or a plain-English prompt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gen", metavar="DIR",
                        help="a task-conditioned generator: a folder (`paramgen train "
                             "--condition-from manifest`) or the name of one that ships with "
                             "paramgen (digits-tasks, digits-lora: `paramgen generators`); "
                             "optional with --dry-run when --classes is given")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", metavar="BITS",
                      help="one bit per class, 1 = positive class, e.g. 0101010101 (odd digits)")
    what.add_argument("--prompt", metavar="TEXT",
                      help="plain English, e.g. 'I need a detector for sevens', 'prime numbers', "
                           "'things that fly or float' (cifar10); see docs/prompts.md")
    parser.add_argument("--out", metavar="FILE",
                        help="where to write the model (.safetensors state dict; a PEFT folder "
                             "when the generator was trained on adapters); required unless "
                             "--dry-run")
    parser.add_argument("--classes", default=None,
                        help="class names the prompt talks about: digits, mnist1d, cifar10, or a "
                             "comma list (default: from the generator's training data)")
    parser.add_argument("--backend", default="auto",
                        help="prompt reader: 'auto' (the rules, then the offline sentence encoder "
                             "for words the rules do not know, when paramgen[text] is installed), "
                             "'rules', 'semantic', or a registered backend (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what the prompt or bits were understood as, then stop "
                             "(nothing is generated or written)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--no-eval", action="store_true",
                        help="do not measure the model on the dataset even when it is at hand")


def _generator_info(gen_dir: str) -> dict:
    """The generator's collection info, condition size and method, read from its config.json
    only."""
    config_path = Path(gen_dir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: --gen must be a generator folder "
                                "written by `paramgen train`")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    info = dict(config.get("collection_info") or {})
    info["_condition_dim"] = config.get("condition_dim")
    info["_method"] = config.get("method")
    return info


def _check_takes_a_task(gen_dir: str, method: str) -> None:
    """A task is given to a generator as its ``condition``: its method must declare one."""
    from paramgen.methods.registry import method_options

    declared = method_options(method)
    if "condition" not in declared.sample_names() or not declared.sample["condition"].cli:
        takes = ", ".join(declared.sample_names()) or "no options"
        raise ValueError(f"{gen_dir} is a {method} generator, which takes no task condition "
                         f"(it takes {takes}): generate from it with `paramgen sample`")


def _class_set(args: argparse.Namespace, info: dict) -> str | list[str]:
    classes = args.classes or info.get("data")
    if not classes:
        where = f"{args.gen}/config.json has no collection_info.data" if args.gen else "no --gen"
        raise ValueError(f"cannot tell which classes the task is about ({where}); pass "
                         "--classes digits, --classes cifar10 or --classes a,b,c")
    if isinstance(classes, str) and "," in classes:
        return [c.strip() for c in classes.split(",")]
    return classes


def _understand(args: argparse.Namespace, names: list[str]) -> str:
    """Bits for --task or --prompt, after printing what they were understood as."""
    from paramgen import prompts, text

    if args.prompt is not None:
        try:
            reading = prompts.read_prompt(args.prompt, names, backend=args.backend)
        except text.TextEncoderMissing as exc:
            raise ValueError(str(exc)) from None
        print(f"prompt: {args.prompt!r}")
        print(f"understood: {reading.understood}")
        return reading.bits
    from paramgen.data import parse_bits

    bits = parse_bits(args.task, num_classes=len(names))
    print(f"understood: {prompts.summarize_bits(bits, names)} -> {bits}")
    return bits


def run(args: argparse.Namespace) -> int:
    from paramgen import pretrained, prompts

    if not args.dry_run and (args.gen is None or args.out is None):
        raise ValueError("--gen and --out are required unless --dry-run")
    if args.gen is not None:  # a shipped generator's name -> its folder (a path wins)
        args.gen = str(pretrained.resolve(args.gen))
    info = _generator_info(args.gen) if args.gen else {}
    if info.get("_method"):  # (a folder without one is refused when it is loaded)
        _check_takes_a_task(args.gen, str(info["_method"]))
    names = prompts.class_names(_class_set(args, info))
    bits = _understand(args, names)
    condition_dim = info.get("_condition_dim")
    if args.gen and condition_dim is None:
        raise ValueError(f"{args.gen} was trained without task conditions; train one with "
                         "`paramgen train --condition-from manifest` on a task grid")
    if condition_dim is not None and len(bits) != condition_dim:
        raise ValueError(f"task has {len(bits)} bits ({len(names)} classes) but {args.gen} "
                         f"expects {condition_dim}")
    if args.dry_run:
        print("dry run: nothing generated")
        return 0
    print(f"task bits: {bits}  ({prompts.describe_bits(bits, names)})")
    split = Path(args.gen) / "split.json"
    if split.is_file():
        seen = set(json.loads(split.read_text()).get("seen", []))
        print("this task was " + ("seen in training" if bits in seen else
                                  "never seen in training"))
    return _generate(args, bits, info)


def _generate(args: argparse.Namespace, bits: str, info: dict) -> int:
    from paramgen import io
    from paramgen.methods import load_generator

    gen = load_generator(args.gen)
    if "peft_config" in info:  # trained on adapters: the output is a PEFT folder
        from paramgen.commands.adapter_options import generate_adapter

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
