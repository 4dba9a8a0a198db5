"""One basin: align independently trained checkpoints by permuting their hidden units.

    import paramgen as pg
    aligned = pg.align(ckpts)                  # architecture from the collection's info
    aligned = pg.align(ckpts, model=MyNet(), reference=3, method="activations", inputs=x)

structure.py derives from the model itself (a torch.export / torch.fx trace) which axes of which
tensors move together; weights.py and activations.py find the permutations (Git Re-Basin);
permute.py applies them exactly; api.py aligns a CheckpointSet; policy.py holds the measured
decisions (does a collection span several basins, do a grid's task models share a start);
auto.py acts on them for `paramgen train --align auto`; barrier.py measures the loss barrier
between two models.
"""

import sys
import types

from paramgen.align.api import align, structure_for
from paramgen.align.auto import prepare_for_training
from paramgen.align.barrier import barrier
from paramgen.align.permute import apply_permutations, invert, random_permutations
from paramgen.align.policy import basin_test
from paramgen.align.structure import PermutationSpec, UnsupportedLayerError, discover

__all__ = ["PermutationSpec", "UnsupportedLayerError", "align", "apply_permutations",
           "barrier", "basin_test", "discover", "invert", "prepare_for_training",
           "random_permutations", "structure_for"]


class _CallableModule(types.ModuleType):
    """`pg.align(ckpts, ...)` and `pg.align.structure` both work: the package is callable.

    `pg.align` names both this package and its main function. Importing the package binds the
    attribute `paramgen.align` to the package (also after a lazy `paramgen/__init__.py` handed
    out the function), so the package forwards calls to `align` and either binding works.
    """

    def __call__(self, *args, **kwargs):
        return align(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
