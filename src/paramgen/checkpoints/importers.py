"""Ways into a CheckpointSet from files that are not one: a plain folder of state dicts, and
importers registered by name (PEFT adapter folders).

An importer is a function ``(sources, **options) -> CheckpointSet``. The built-in ones are named
by module path ("package.module:function") and imported on first use, as `paramgen.methods`
names its built-in methods: so the core never imports the higher layers that implement them
(the PEFT importer lives in `paramgen.adapters`, which itself builds on CheckpointSet).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from paramgen.checkpoints.format import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    CheckpointError,
    fmt_keys,
)
from paramgen.checkpoints.reader import read_safetensors

__all__ = ["IMPORTERS", "FolderRuns", "get_importer", "read_state_dict_folder",
           "read_state_dict_runs", "register_importer"]

# name -> "module:function" of the importers paramgen ships.
IMPORTERS: dict[str, str] = {
    "peft": "paramgen.adapters.importer:import_peft",
}
_LOADED: dict[str, Callable[..., Any]] = {}


def register_importer(name: str, importer: Callable[..., Any] | str) -> None:
    """Register `importer` (a function, or its "module:function" path) under `name`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"importer name must be a non-empty string, got {name!r}")
    if isinstance(importer, str):
        if ":" not in importer:
            raise ValueError(f"importer {name!r}: path {importer!r} must read 'module:function'")
        IMPORTERS[name] = importer
        _LOADED.pop(name, None)
    elif callable(importer):
        IMPORTERS[name] = f"{importer.__module__}:{importer.__qualname__}"
        _LOADED[name] = importer
    else:
        raise TypeError(f"importer {name!r} must be a function or a 'module:function' path, "
                        f"got {type(importer).__name__}")


def get_importer(name: str) -> Callable[..., Any]:
    """The importer registered as `name`, imported now if it has not been."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in IMPORTERS:
        raise KeyError(f"no checkpoint importer named {name!r}; known: {sorted(IMPORTERS)}")
    module, _, attr = IMPORTERS[name].partition(":")
    fn = importlib.import_module(module)
    for part in attr.split("."):
        fn = getattr(fn, part)
    _LOADED[name] = fn
    return fn


def read_state_dict_folder(directory: str | os.PathLike, allow_pickle: bool = False
                           ) -> tuple[list[dict[str, torch.Tensor]], list[Path]]:
    """The state dicts of a folder's `.safetensors` / `.pt` / `.pth` files (sorted by file name),
    with the files they came from. Pickle files are refused unless `allow_pickle` (see
    `CheckpointSet.import_folder`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    files = _state_dict_files(directory)
    if not files:
        raise CheckpointError(f"{directory}: no .safetensors, .pt or .pth files to import (nor "
                              "subfolders holding them, one per run)")
    pickled = [p.name for p in files if p.suffix in PICKLE_SUFFIXES]
    if pickled and not allow_pickle:
        raise CheckpointError(
            f"{directory}: {fmt_keys(pickled, 3)} are pickle files, which can execute code "
            "when loaded, so they are not read by default. If you trust them, opt in with "
            "allow_pickle=True; they are then read with "
            "torch.load(weights_only=True). Or convert them to .safetensors.")
    sds = []
    for p in files:
        if p.suffix in SAFE_SUFFIXES:
            sds.append(read_safetensors(p))
            continue
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise CheckpointError(f"{p}: could not be read with torch.load(weights_only=True) "
                                  f"({type(exc).__name__}: {exc})") from exc
        sds.append(_unwrap(obj, str(p)))
    return sds, files


def _state_dict_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES)


@dataclass
class FolderRuns:
    """What `read_state_dict_runs` found: the state dicts, their files, each one's run index and
    the run names (subfolder names, or the folder's own name for a single run)."""

    state_dicts: list[dict[str, torch.Tensor]]
    files: list[Path]
    runs: list[int]
    run_names: list[str]


def read_state_dict_runs(directory: str | os.PathLike, allow_pickle: bool = False) -> FolderRuns:
    """A folder of state dicts as runs: each subfolder holding state dict files is one run (in
    sorted order, its files sorted by name); a folder holding the files itself is one run.
    Hidden subfolders (a resume state such as `.train`) are not runs."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist"
                                if not directory.exists() else
                                f"checkpoint path {directory} is not a folder")
    top = _state_dict_files(directory)
    subs = [d for d in sorted(directory.iterdir())
            if d.is_dir() and not d.name.startswith(".") and _state_dict_files(d)]
    if top and subs:
        # Mixing the two would leave the top-level files' run ambiguous: refuse, say how to fix.
        raise CheckpointError(
            f"{directory}: holds state dict files ({fmt_keys([p.name for p in top], 3)}) and run "
            f"subfolders ({fmt_keys([d.name for d in subs], 3)}); move the files into a "
            "subfolder of their own (one subfolder per run)")
    folders = subs or [directory]
    out = FolderRuns([], [], [], [d.name for d in folders])
    for run, folder in enumerate(folders):
        sds, files = read_state_dict_folder(folder, allow_pickle)
        out.state_dicts += sds
        out.files += files
        out.runs += [run] * len(files)
    return out


def _unwrap(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Return the state dict inside a training checkpoint such as {"state_dict": sd, "epoch": 3}."""
    for _ in range(4):  # wrappers can nest ({"model": {"state_dict": ...}}); a few levels is plenty
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor)
                                                    for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model")
                          if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if isinstance(obj, Mapping):
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        raise CheckpointError(f"{where}: not a state dict: keys {fmt_keys(map(str, bad))} are "
                              "not tensors, and there is no 'state_dict' or 'model' entry to "
                              "unwrap")
    raise CheckpointError(f"{where}: holds a {type(obj).__name__}, not a state dict")
