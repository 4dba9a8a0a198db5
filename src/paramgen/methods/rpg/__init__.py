"""RPG, recurrent diffusion for large-scale parameter generation: config, presets, networks,
generator (one file each), and its declaration (options.py).

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
