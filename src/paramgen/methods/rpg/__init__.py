"""RPG, recurrent diffusion for large-scale parameter generation: config, presets, networks,
generator (one file each)."""

from paramgen.methods.rpg.config import RPGConfig
from paramgen.methods.rpg.generator import RPG
from paramgen.methods.rpg.network import RPGNetwork
from paramgen.methods.rpg.presets import RPG_PRESETS

__all__ = ["RPG", "RPGConfig", "RPGNetwork", "RPG_PRESETS"]
