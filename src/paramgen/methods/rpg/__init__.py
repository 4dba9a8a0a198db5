"""RPG, recurrent diffusion for large-scale parameter generation, one idea a file: config and
presets (the settings), choice (which settings a fit uses), network, token_store (a
collection's tokens), states (permutation states), window (windowed training), sampling, and
generator (the RPG class that puts them together)."""

from paramgen.methods.rpg.config import RPGConfig
from paramgen.methods.rpg.generator import RPG
from paramgen.methods.rpg.network import RPGNetwork
from paramgen.methods.rpg.presets import RPG_PRESETS

__all__ = ["RPG", "RPGConfig", "RPGNetwork", "RPG_PRESETS"]
