"""`paramgen sample`: draw models from a saved generator, one .safetensors per model."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "sample new models from a trained generator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gen", required=True, metavar="DIR",
                        help="a saved generator (from `paramgen train` or save_pretrained)")
    parser.add_argument("-n", "--num", type=int, default=10,
                        help="how many models (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the models: sample_000.safetensors, ...")
    parser.add_argument("--mode", choices=["sequential", "partial", "full"], default=None,
                        help="RPG: denoise one token at a time (least memory), a batch of tokens "
                             "at a time, or all at once (default: the generator's)")
    parser.add_argument("--sampler", choices=["ddpm", "ddim", "dpm++"], default=None,
                        help="ddpm walks every timestep; ddim and dpm++ (DPM-Solver++ 2M) take "
                             "--steps (default: the generator's)")
    parser.add_argument("--steps", type=int, default=None, help="ddim / dpm++ sampling steps")
    parser.add_argument("--condition", default=None, metavar="BITS",
                        help="task condition as bits, e.g. 0101010101, or comma-separated floats")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--like", default=None, metavar="FILE.safetensors",
                        help="igpg: a state dict of the architecture to generate (only its "
                             "keys, shapes and dtypes are used)")
    parser.add_argument("--dataset", default=None, metavar="TEXT",
                        help="igpg: the dataset to generate for, e.g. digits")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that is not empty and was not made by "
                             "paramgen (nothing that was there is deleted)")


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


def run(args: argparse.Namespace) -> int:
    from paramgen import io
    from paramgen.methods import load_generator

    if args.num < 1:
        raise ValueError(f"-n must be at least 1, got {args.num}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    condition = parse_condition(args.condition)
    gen = load_generator(args.gen)
    options = {k: v for k, v in (("mode", args.mode), ("sampler", args.sampler),
                                 ("steps", args.steps)) if v is not None}
    if gen.method == "igpg":
        if args.like is None:
            raise ValueError(f"{args.gen} is an igpg generator: pass --like FILE.safetensors "
                             "(the architecture to generate) and --dataset TEXT")
        if options:
            raise ValueError("--mode/--sampler/--steps are for rpg and pdiff, not igpg")
        options = {"like": args.like, "dataset": args.dataset}
    elif args.like is not None or args.dataset is not None:
        raise ValueError(f"--like/--dataset are for igpg generators; {args.gen} is "
                         f"{gen.method!r}")
    # A samples folder holds this run's samples only: what an earlier `sample` wrote there goes
    # (so a later eval never scores stale models); anything else there is kept, and a foreign
    # non-empty folder is refused unless --overwrite.
    wanted = Path(args.out)
    created = next((p for p in [*reversed(wanted.parents), wanted] if not p.exists()), None)
    out = io.prepare_output_dir(args.out, overwrite=args.overwrite, fresh=True,
                                owned=_is_sample_folder,
                                kind="samples")
    paths = [out / f"sample_{i:03d}.safetensors" for i in range(args.num)]
    # Streamed to disk as generated (RPG): memory does not grow with the model's size.
    try:
        gen.sample_to_files(paths, condition=condition, seed=args.seed,
                            progress=True, **options)
    except BaseException:
        # e.g. a condition the generator refuses: no empty folder, nor the parents made for it
        if created is not None and io.discard_if_unused(out):
            for parent in wanted.parents:
                if parent != created and created not in parent.parents:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise
    print(f"wrote {len(paths)} models to {out}")
    return 0
