"""RPG, recurrent diffusion for large-scale parameter generation, one idea a file: config and
presets (the settings), choice (which settings a fit uses), network, token_store (a
collection's tokens), states (permutation states), window (windowed training), sampling,
generator (the RPG class that puts them together) and its declaration (options.py).

Names load on first use, so ``paramgen.methods.rpg.options`` is read (``--help``) without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RPG": "paramgen.methods.rpg.generator", "RPGConfig": "paramgen.methods.rpg.config",
    "RPGNetwork": "paramgen.methods.rpg.network", "RPG_PRESETS": "paramgen.methods.rpg.presets",
}

__all__ = ["RPG", "RPGConfig", "RPGNetwork", "RPG_PRESETS"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paramgen.methods.rpg' has no attribute {name!r}")
