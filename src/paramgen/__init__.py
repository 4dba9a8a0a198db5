"""paramgen: learn the distribution of trained network parameters and sample new networks.

    import paramgen as pg
    ckpts = pg.CheckpointSet.load("runs/ckpts")
    gen = pg.RPG(preset="cpu").fit(ckpts)
    models = gen.sample(n=10)

Names load on first use, so ``import paramgen`` (and ``paramgen --help``) stays fast and the
CLI can set thread settings before torch loads.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CheckpointSet": "paramgen.checkpoints", "CheckpointWriter": "paramgen.checkpoints",
    "Generator": "paramgen.methods.base", "load_generator": "paramgen.methods.base",
    "RPG": "paramgen.methods.rpg", "RPGConfig": "paramgen.methods.rpg",
    "PDiff": "paramgen.methods.pdiff", "PDiffConfig": "paramgen.methods.pdiff",
    "IGPG": "paramgen.methods.igpg", "IGPGConfig": "paramgen.methods.igpg",
    "register_method": "paramgen.methods.registry",
}
# ``pg.align`` is the package, which is itself callable: ``pg.align(ckpts)``.
_SUBMODULES = ("align", "data", "metrics", "zoo", "prompts", "training", "keys", "methods",
               "evaluation",
               "diffusion", "tokenize", "io")

__all__ = sorted(_LAZY) + ["align", "data", "metrics", "zoo", "prompts"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"paramgen.{name}")
    else:
        raise AttributeError(f"module 'paramgen' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
