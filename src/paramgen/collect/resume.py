"""Resume state of a single-task collection run, kept in ``OUT/.resume/run_R.pt``.

It holds everything the training loop needs to continue bit for bit: model and optimizer state,
the data-order generator, the global RNG, the step and the position in the current epoch's
permutation, plus the collection's settings (`info`) so that a folder is never continued with
other settings. It is written atomically (`paramgen.io`) and read with
``torch.load(weights_only=True)``, which accepts tensors and plain containers only: a crafted
file cannot run code. The file is removed when its run finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from paramgen import io
from paramgen.collect.loop import cpu_state

RESUME_DIR = ".resume"


def path_for(out: Path, run: int) -> Path:
    return out / RESUME_DIR / f"run_{run}.pt"


def load(path: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state at `path` (None when there is none), checked against `info`."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # io writes atomically, so this means outside damage
        raise ValueError(f"{path}: unreadable resume state ({exc}); delete it to "
                         "restart this run from scratch") from exc
    needed = {"info", "model", "optimizer", "gen", "rng", "step", "perm", "pos"}
    if not isinstance(state, dict) or not needed <= state.keys():
        raise ValueError(f"{path}: not a paramgen resume state (expected the keys "
                         f"{sorted(needed)}); delete it to restart this run from scratch")
    if state.get("info") != info:
        raise ValueError(f"{path}: resume state was made with other settings; "
                         "delete it (or the whole output folder) to start over")
    return state


def save(path: Path, info: dict[str, Any], model: nn.Module,
                opt: torch.optim.Optimizer, gen: torch.Generator, step: int,
                perm: torch.Tensor, pos: int) -> None:
    io.save_torch(path, {
        "info": info, "model": cpu_state(model), "optimizer": opt.state_dict(),
        "gen": gen.get_state(), "rng": torch.get_rng_state(), "step": step,
        "perm": perm, "pos": pos})


def clear(path: Path) -> None:
    """Remove a finished run's state, and the resume folder once it is empty."""
    if path.exists():
        path.unlink()
    folder = path.parent
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
