"""IGPG (instruction-guided parameter generation): a Gumbel VQ-VAE over chunks of normalised
parameters and a GPT prior over its tokens, conditioned on architecture and dataset texts."""

from paramgen.methods.igpg.config import IGPG_PRESETS, IGPGConfig
from paramgen.methods.igpg.generator import IGPG

__all__ = ["IGPG", "IGPGConfig", "IGPG_PRESETS"]
