"""p-diff, neural network diffusion: config, presets, networks, generator (one file each), and
its declaration (options.py).

Names load on first use, so ``paramgen.methods.pdiff.options`` is read (``--help``) without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "last_norm_keys": "paramgen.keys", "resolve_keys": "paramgen.keys",
    "PDiffConfig": "paramgen.methods.pdiff.config",
    "PDiff": "paramgen.methods.pdiff.generator", "split_steps": "paramgen.methods.pdiff.generator",
    "ParameterAutoencoder": "paramgen.methods.pdiff.network",
    "PDiffNetwork": "paramgen.methods.pdiff.network",
    "PDIFF_PRESETS": "paramgen.methods.pdiff.presets",
}

__all__ = ["PDIFF_PRESETS", "PDiff", "PDiffConfig", "PDiffNetwork", "ParameterAutoencoder",
           "last_norm_keys", "resolve_keys", "split_steps"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paramgen.methods.pdiff' has no attribute {name!r}")
