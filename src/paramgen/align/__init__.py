"""One basin: align independently trained checkpoints by permuting their hidden units.

    import paramgen as pg
    aligned = pg.align(ckpts)                  # architecture from the collection's info
    aligned = pg.align(ckpts, model=MyNet(), reference=3, method="activations", inputs=x)

structure.py derives from the model itself (a torch.export / torch.fx trace) which axes of which
tensors move together; weights.py and activations.py find the permutations (Git Re-Basin);
permute.py applies them exactly; api.py aligns a CheckpointSet; auto.py decides whether a
collection needs it (what `paramgen train --align auto` runs); barrier.py measures the loss
barrier between two models.
"""

from paramgen.align.api import align, structure_for
from paramgen.align.auto import basin_test, prepare_for_training
from paramgen.align.barrier import barrier
from paramgen.align.permute import apply_permutations, invert, random_permutations
from paramgen.align.structure import PermutationSpec, UnsupportedLayerError, discover

__all__ = ["PermutationSpec", "UnsupportedLayerError", "align", "apply_permutations",
           "barrier", "basin_test", "discover", "invert", "prepare_for_training",
           "random_permutations", "structure_for"]
