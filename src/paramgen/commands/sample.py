"""`paramgen sample`: draw models from a saved generator, one .safetensors per model."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from paramgen.methods.options import Option

HELP = "sample new models from a trained generator"


def flag(name: str) -> str:
    """A method's option name as a command-line flag: ``top_k`` -> ``--top-k``."""
    return "--" + name.replace("_", "-")


def offered_options() -> dict[str, tuple[Option, dict[str, str]]]:
    """Every sampling option some method offers on the command line, from what the methods
    declare: name -> (its declaration, {method: that method's help})."""
    from paramgen.methods.registry import method_names, method_options

    merged: dict[str, tuple[Option, dict[str, str]]] = {}
    for method in method_names():
        for name, option in method_options(method).sample.items():
            if not option.cli:
                continue
            if name not in merged:
                merged[name] = (option, {})
            first, helps = merged[name]
            if option.kind != first.kind:
                raise ValueError(f"methods {next(iter(helps))} and {method} both declare the "
                                 f"sample option {name!r}, as a {first.kind} and a {option.kind}: "
                                 "one flag cannot read both")
            helps[method] = option.help
    return merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from paramgen.methods.registry import method_options

    parser.add_argument("--gen", required=True, metavar="DIR",
                        help="a saved generator (from `paramgen train` or save_pretrained)")
    parser.add_argument("-n", "--num", type=int, default=10,
                        help="how many models (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the models: sample_000.safetensors, ...")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that is not empty and was not made by "
                             "paramgen (nothing that was there is deleted)")
    group = parser.add_argument_group(
        "options of the generator's method", "each method declares the options it takes "
        "(which methods take an option is in brackets)")
    for name, (option, helps) in offered_options().items():
        by_help: dict[str, list[str]] = {}
        for method, text in helps.items():
            by_help.setdefault(text, []).append(method)
        text = "; ".join(f"{', '.join(ms)}: {h}" for h, ms in by_help.items()) \
            if len(by_help) > 1 else f"{next(iter(by_help))} ({', '.join(helps)})"
        if any(method_options(m).sample[name].required for m in helps):
            text += "; required by " + ", ".join(
                m for m in helps if method_options(m).sample[name].required)
        kwargs: dict = dict(dest=name, default=None, help=text)
        if option.kind == "flag":
            kwargs.update(action="store_const", const=True)
        else:
            choices = [c for m in helps for c in method_options(m).sample[name].choices]
            kwargs.update(type={"int": int, "count": int, "float": float}.get(option.kind, str),
                          metavar=option.shown if not choices else None)
            if choices:
                kwargs["choices"] = list(dict.fromkeys(choices))
        group.add_argument(flag(name), **kwargs)


def parse_condition(text: str | None) -> list[float] | None:
    """Bits ("0101010101", one value per character) or comma-separated finite numbers."""
    import math

    if text is None:
        return None
    text = text.strip()
    values = None
    try:
        if "," in text:
            values = [float(v) for v in text.split(",")]
        elif text and set(text) <= {"0", "1"}:
            values = [float(c) for c in text]
    except ValueError:
        pass
    if values is None:
        raise ValueError(f"--condition {text!r}: expected bits like 0101010101 or comma-separated "
                         "numbers like 0.5,1,0")
    bad = [v for v in values if not math.isfinite(v) or abs(v) > 1e6]
    if bad:
        raise ValueError(f"--condition {text!r}: {bad[0]} is not a usable condition value "
                         "(conditions are finite numbers, such as task bits 0/1)")
    return values


def _is_sample_folder(path: Path) -> bool:
    # A folder of an older paramgen's samples (before output folders were marked).
    names = [p.name for p in path.iterdir() if not p.name.startswith(".")]
    return bool(names) and all(re.fullmatch(r"sample_\d+\.safetensors", n) for n in names)


def _read_options(args: argparse.Namespace, offered: dict) -> dict:
    """The method options given on the command line, checked as a command line spells them."""
    import math

    given = {}
    for name, (option, _) in offered.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if option.kind == "condition":
            value = parse_condition(value)
        elif option.kind == "count" and value < 1:
            raise ValueError(f"{flag(name)} must be at least 1, got {value}")
        elif option.kind == "float" and not math.isfinite(value):
            raise ValueError(f"{flag(name)} must be a finite number, got {value}")
        elif option.kind == "file" and not Path(value).is_file():
            raise FileNotFoundError(f"{flag(name)} {value}: no such file")
        given[name] = value
    return given


def _check_against(gen_dir: str, method: str, given: dict) -> None:
    """The options given against those the generator's method declares, in command-line words."""
    from paramgen.methods.registry import method_options

    declared = method_options(method)
    takes = [k for k in declared.sample_names(files=True) if declared.sample[k].cli]
    offers = ", ".join(f"{flag(k)} {declared.sample[k].shown}".rstrip() for k in takes) \
        or "no method options"
    unknown = [flag(k) for k in given if k not in takes]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an option of {gen_dir}, a {method} "
                         f"generator; it takes {offers}")
    missing = [k for k in takes if declared.sample[k].required and k not in given]
    if missing:
        needs = ", ".join(f"{flag(k)} {declared.sample[k].shown} ({declared.sample[k].help})"
                          for k in missing)
        raise ValueError(f"{gen_dir} is a {method} generator: pass {needs}; it takes {offers}")


def run(args: argparse.Namespace) -> int:
    from paramgen import io
    from paramgen.methods import load_generator

    if args.num < 1:
        raise ValueError(f"-n must be at least 1, got {args.num}")
    options = _read_options(args, offered_options())
    gen = load_generator(args.gen)
    _check_against(args.gen, gen.method, options)
    # A samples folder holds this run's samples only: what an earlier `sample` wrote there goes
    # (so a later eval never scores stale models); anything else there is kept, and a foreign
    # non-empty folder is refused unless --overwrite.
    wanted = Path(args.out)
    created = io.first_missing(wanted)
    out = io.prepare_output_dir(args.out, overwrite=args.overwrite, fresh=True,
                                owned=_is_sample_folder,
                                kind="samples")
    paths = [out / f"sample_{i:03d}.safetensors" for i in range(args.num)]
    # Streamed to disk as generated (RPG): memory does not grow with the model's size.
    try:
        gen.sample_to_files(paths, seed=args.seed, progress=True, **options)
    except BaseException:
        # e.g. a condition the generator refuses: no empty folder, nor the parents made for it
        if created is not None and io.discard_if_unused(out):
            io.discard_created_parents(wanted, created)
        raise
    print(f"wrote {len(paths)} models to {out}")
    return 0
