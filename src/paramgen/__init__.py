"""paramgen: learn the distribution of trained network parameters and sample new networks.

    import paramgen as pg
    ckpts = pg.CheckpointSet.load("runs/ckpts")
    gen = pg.RPG(preset="cpu").fit(ckpts)
    models = gen.sample(n=10)
"""

__version__ = "0.1.0"

from paramgen import data, metrics, zoo
from paramgen.checkpoints import CheckpointSet, CheckpointWriter
from paramgen.methods import IGPG, IGPGConfig, PDiff, PDiffConfig, RPG, Generator, RPGConfig, load_generator

__all__ = ["CheckpointSet", "CheckpointWriter", "Generator", "IGPG", "IGPGConfig", "PDiff", "PDiffConfig", "RPG", "RPGConfig", "data",
           "load_generator", "metrics", "zoo"]
