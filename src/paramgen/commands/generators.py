"""`paramgen generators`: the generators that ship with paramgen, with what they generate, their
measured quality and their size. Any of them is a valid `--gen` (`paramgen generate --gen
digits-tasks --prompt ...`) and a valid `pg.load_generator(...)` argument.

Reads each one's config.json and quality.json only: no network is built, so it runs in a moment.
"""

from __future__ import annotations

import argparse
import json

HELP = "list the pretrained generators that ship with paramgen (usable as --gen NAME)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per generator (name, folder, size, what it "
                             "generates, measured quality) instead of the summary")


def _pct(value: object) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


def describe(name: str) -> dict:
    """What `paramgen generators` shows for one shipped generator."""
    from paramgen import pretrained
    from paramgen.methods.folder import read_config

    where = pretrained.folder(name)
    config = read_config(where)
    info = config.get("collection_info") or {}
    # an adapter grid names its base's architecture under "base"
    arch = info.get("arch") or (info.get("base") or {}).get("arch")
    return {"name": name, "folder": str(where), "size_bytes": pretrained.size_bytes(name),
            "method": config.get("method"), "preset": config.get("preset"), "arch": arch,
            "data": info.get("data"), "in_shape": info.get("in_shape"),
            "classes": info.get("class_names"), "adapters": "peft_config" in info,
            "quality": pretrained.quality(name)}


def _summary(d: dict) -> list[str]:
    q = d["quality"]
    what = (f"PEFT LoRA adapters for the {d['arch']} base (shipped with it)" if d["adapters"]
            else f"{d['arch']} models")
    lines = [f"{d['name']}  ({d['method']}, {d['size_bytes'] / 1e6:.1f} MB)",
             f"  generates: {what} on {d['data']}, input {d['in_shape']}, a binary task of "
             f"classes {', '.join(map(str, d['classes'] or [])) or '?'} from bits or a prompt"]
    for part in ("seen", "unseen"):
        m = q.get(part) or {}
        if m:
            lines.append(f"  {part} tasks ({m.get('tasks')}): balanced accuracy generated "
                         f"{_pct(m.get('generated_mean'))}, directly trained "
                         f"{_pct(m.get('direct_mean'))}, worst task generated "
                         f"{_pct(m.get('generated_worst'))}")
    if q.get("command"):
        lines.append(f"  built by: {q['command']} ({q.get('date', '?')})")
    lines.append(f"  try: paramgen generate --gen {d['name']} --prompt \"odd digits\" --out "
                 + ("odd-adapter" if d["adapters"] else "odd.safetensors"))
    return lines


def run(args: argparse.Namespace) -> int:
    from paramgen import pretrained

    shipped = pretrained.names()
    if not shipped:
        print(f"no pretrained generators found in {pretrained.root()} (the package data is "
              "missing: reinstall paramgen)")
        return 1
    described = [describe(name) for name in shipped]
    if args.json:
        for d in described:
            print(json.dumps(d))
        return 0
    for i, d in enumerate(described):
        if i:
            print()
        print("\n".join(_summary(d)))
    return 0
