"""paramgen: learn the distribution of trained network parameters and sample new networks."""

__version__ = "0.1.0"
from paramgen.checkpoints import CheckpointSet
