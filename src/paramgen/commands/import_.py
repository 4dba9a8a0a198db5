"""`paramgen import`: a plain folder of state dicts -> a CheckpointSet folder."""

from __future__ import annotations

import argparse
import textwrap

from paramgen.commands.user_model import PICKLE_NOTE, found_line, parse_in_shape

HELP = "turn a plain folder of .pt/.safetensors state dicts into a checkpoint collection"

_EPILOG = textwrap.fill(
    "DIR holds state dict files (.safetensors, .pt, .pth; sorted by name), or one subfolder per "
    "training run holding them (runs/seed0/*.pt, runs/seed1/*.safetensors). Files such as "
    f'{{"state_dict": sd, "epoch": 3}} are unwrapped. {PICKLE_NOTE}.', 78) + """

`paramgen train --ckpts DIR` imports such a folder by itself; import it once with this command
to check it and to keep the collection (manifest.json + one .safetensors per checkpoint).

example:
  paramgen import my_runs --out runs/mine
  paramgen train --ckpts runs/mine --out runs/mine-gen --model net.py:Net --steps 300
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("dir", metavar="DIR",
                        help="folder of state dicts, or of run subfolders holding them")
    parser.add_argument("--out", required=True, metavar="COLLECTION",
                        help="where to write the collection (must differ from DIR)")
    parser.add_argument("--in-shape", metavar="D[,D...]", default=None,
                        help="record the shape of one input example (e.g. 64 or 1,8,8) in the "
                             "collection, for `align` and `train --align auto` with --model")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from paramgen.checkpoints import MANIFEST, CheckpointSet

    src, out = Path(args.dir), Path(args.out)
    in_shape = parse_in_shape(args.in_shape)
    if not src.is_dir():
        raise FileNotFoundError(f"DIR {src}: no such folder" if not src.exists()
                                else f"DIR {src} is not a folder")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is inside DIR {src}; write the collection elsewhere")
    if (src / MANIFEST).exists():
        raise ValueError(f"{src} is already a checkpoint collection ({MANIFEST}); use it "
                         "as it is (--ckpts)")
    info = {"source": str(src)}
    if in_shape:
        info["in_shape"] = list(in_shape)
    ckpts = CheckpointSet.import_folder(src, allow_pickle=True, info=info)  # see PICKLE_NOTE
    print(found_line(ckpts, src))
    ckpts.save(out)
    print(f"wrote the collection to {out}")
    return 0
