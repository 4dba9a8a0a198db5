"""Collect training checkpoints: the data every parameter generator learns from.

Two recipes:

* `collect` (RPG §3.1 / appendix, p-diff §3): train a model to convergence, then keep training and
  save `n` checkpoints spread uniformly over that continuation. The continuation updates every
  parameter (`trainable="all"`, RPG) or only a subset with the rest frozen (e.g. the last two
  normalization layers, p-diff). Several runs with distinct seeds give distinct "basins".
* `collect_tasks` (RPG appendix, binary-embedding experiment): one model per binary relabelling
  of the classes, trained with class-balanced weights; each saves a few checkpoints near the end
  of its training, conditioned on its task bits. Tasks run in a pool of worker processes.

Both write through `CheckpointWriter`, so a crash keeps every finished checkpoint, and both resume:
run the same call again and completed work is skipped (a single-task run in progress also
restarts from its last saved training state in `OUT/.resume/`).
"""


from paramgen.collect.grid import GRID_DEFAULTS, collect_tasks
from paramgen.collect.runs import DEFAULTS, collect
from paramgen.collect.trainable import resolve_trainable

__all__ = ["collect", "collect_tasks", "DEFAULTS", "GRID_DEFAULTS", "resolve_trainable"]
