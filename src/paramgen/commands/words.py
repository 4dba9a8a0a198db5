"""The library's messages in command-line words.

The library speaks to Python callers (``pass model=``, ``condition=None``) and must keep doing
so; the command line shows the same message with its own option names. Every error and warning
`paramgen` prints passes through `to_cli_words`; a message that names no Python argument comes
through unchanged.
"""

from __future__ import annotations

import re

# (pattern, replacement), applied in order; the more specific phrasings come first.
_RULES: list[tuple[str, str]] = [
    (r"pass model=, an instance of the architecture its checkpoints load into",
     "give --model FILE.py:CLASS, the architecture its checkpoints load into"),
    (r"\(or pass model= explicitly\)", "(or give --model FILE.py:CLASS)"),
    (r"pass example_input=, a batch of inputs the model accepts",
     "give --in-shape, the shape of one input example"),
    (r"method='activations' needs inputs: pass inputs= \(a batch of examples\), or use a "
     r"collection whose info names its 'data'",
     "--method activations needs the collection's dataset, which its manifest does not name; "
     "use --method weights"),
    (r"method='activations'", "--method activations"),
    (r"sample it with condition=None", "sample it without --condition"),
    (r"pass condition= \(e\.g\. task bits\) to sample",
     "pass --condition BITS (e.g. task bits) to sample"),
    (r"\buse trainable='all' or a list of key prefixes",
     "use --trainable all or a comma-separated list of key prefixes"),
    (r"\btrainable='([^']*)'", r"--trainable \1"),
    (r"; give keys= explicitly", "; name the layers' key prefixes instead"),
    (r"\bwith task=BITS \(--task\)", "with --task BITS"),
    (r"\bcondition=None\b", "no --condition"),
    (r"\bcondition=", "--condition "),
    (r"opt in with allow_pickle=True", "opt in with --allow-pickle"),
    (r" \(Python: allow_pickle=True\)", ""),
    (r"\ballow_pickle=True\b", "--allow-pickle"),
    (r"\braise context= or chunk_size=", "raise --set context=N or --set chunk_size=N"),
    (r"a larger context= or chunk_size=", "a larger --set context=N or --set chunk_size=N"),
    (r"use CheckpointSet\.import_folder\(('[^']*'|\"[^\"]*\")\)",
     r"give it to `paramgen train --ckpts` as it is, or import it with "
     r"`paramgen import \1 --out COLLECTION`"),
    # Resume refusals name the fields of the saved run's identity (paramgen.training).
    (r"\bstage_steps: saved \[([^\]]*)\], now \[([^\]]*)\]",
     r"steps (--steps, per stage): saved \1, now \2"),
    (r"\bseed: saved (\S+), now (\S+?)([;)])", r"--seed: saved \1, now \2\3"),
    (r"\bdata: saved \S+, now \S+?([;)])", r"the checkpoints (--ckpts) differ\1"),
    (r"\bsettings: saved \S+, now \S+?([;)])", r"the settings (--preset, --set) differ\1"),
    (r"\(`paramgen train --restart`, or a new workdir\)",
     "(`paramgen train --restart`, or a new --workdir)"),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]


def to_cli_words(message: str) -> str:
    """`message` with the Python argument names it uses replaced by the command line's."""
    for pattern, replacement in _COMPILED:
        message = pattern.sub(replacement, message)
    return message
