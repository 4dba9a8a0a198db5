"""IGPG (instruction-guided parameter generation): a Gumbel VQ-VAE over chunks of normalised
parameters and a GPT prior over its tokens, conditioned on architecture and dataset texts.
One file per idea: presets, config, chunking, describe (conditioning texts), vqvae, prior,
generator, and its declaration (options.py).

Names load on first use, so ``paramgen.methods.igpg.options`` is read (``--help``) without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "IGPG": "paramgen.methods.igpg.generator", "IGPGConfig": "paramgen.methods.igpg.config",
    "IGPG_PRESETS": "paramgen.methods.igpg.presets",
}

__all__ = ["IGPG", "IGPGConfig", "IGPG_PRESETS"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paramgen.methods.igpg' has no attribute {name!r}")
