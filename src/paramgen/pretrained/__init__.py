"""Generators that ship with paramgen: trained once by ``scripts/build_pretrained.py NAME`` and
installed as package data, so that ``pg.load_generator("digits-tasks")`` and ``paramgen generate
--gen digits-tasks`` work offline right after ``pip install``.

Each shipped generator is a folder beside this file, ``NAME/``: the usual generator folder
(``config.json`` + ``model.safetensors``, read by :mod:`paramgen.methods.folder` like any other),
plus ``split.json`` (the seen and unseen tasks), ``quality.json`` (what the build measured, the
command, date, sizes and checksums) and, for an adapter generator, ``base/`` (the frozen base the
adapters load onto).

Name resolution: a path that exists always wins; otherwise a name of a shipped generator gives
its folder; anything else is an error that lists the shipped names. This module reads files only
(no torch), so the command line lists generators without loading any network.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

QUALITY = "quality.json"


def root() -> Path:
    """The folder holding the shipped generators (inside the installed package)."""
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """Names of the shipped generators: the folders here with a config.json and weights."""
    return sorted(p.name for p in root().iterdir()
                  if p.is_dir() and (p / "config.json").is_file()
                  and (p / "model.safetensors").is_file())


def folder(name: str) -> Path:
    """The folder of the shipped generator ``name``; an unknown name lists the shipped ones."""
    if name not in names():
        raise FileNotFoundError(f"no shipped generator named {name!r} (shipped: "
                                f"{', '.join(names()) or 'none'}; `paramgen generators` lists "
                                "them)")
    return root() / name


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A generator folder from a path or a shipped generator's name. A path that exists always
    wins over a name; a name matching a shipped generator gives its folder; anything else is a
    FileNotFoundError naming what was given and the shipped generators."""
    path = Path(path_or_name)
    if path.exists():
        return path
    text = str(path_or_name)
    if text in names():
        return root() / text
    raise FileNotFoundError(f"{text} not found: it is not a saved generator folder (config.json + "
                            "model.safetensors), nor the name "
                            f"of a shipped generator (shipped: {', '.join(names()) or 'none'}; "
                            "`paramgen generators` lists them)")


def localize(info: dict[str, Any], gen_dir: str | os.PathLike) -> dict[str, Any]:
    """``info`` (a generator's collection_info) with a relative ``base_dir`` that exists inside
    the generator folder made absolute: how a shipped adapter generator carries its base
    (``base_dir: "base"``). Other values, and a base_dir that is not in the folder, stay as
    they are (a generator trained by ``paramgen train`` records the base path it was given)."""
    base = info.get("base_dir")
    if isinstance(base, str) and base and not Path(base).is_absolute():
        inside = Path(gen_dir) / base
        if inside.is_dir():
            return {**info, "base_dir": str(inside)}
    return info


def quality(name: str) -> dict[str, Any]:
    """The shipped generator's ``quality.json``: measured quality, build command, sizes."""
    where = folder(name) / QUALITY
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{where} is missing: the package data is incomplete "
                                "(reinstall paramgen)") from None
    except ValueError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(data).__name__}")
    return data


def size_bytes(name: str) -> int:
    """Bytes the shipped generator takes on disk (every file of its folder)."""
    return sum(p.stat().st_size for p in folder(name).rglob("*") if p.is_file())
