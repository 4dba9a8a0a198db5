"""`paramgen train --align auto`: test a collection with align's policy (`paramgen.align.policy`)
and align it (`paramgen.align.api`) when the test finds several basins.

The policy's tests are re-exported here under their earlier home (`paramgen.align.auto`).
"""

from __future__ import annotations

import time

from torch import Tensor, nn

from paramgen.align.api import align, structure_for
from paramgen.align.policy import (
    CORRELATED,
    MIN_VALUES,
    MOVED_THRESHOLD,
    SHARED_THRESHOLD,
    THRESHOLD,
    BasinTest,
    basin_test,
    correlated_share,
    runs_per_task,
    shared_start,
)
from paramgen.align.structure import UnsupportedLayerError
from paramgen.checkpoints import CheckpointSet

__all__ = ["CORRELATED", "MIN_VALUES", "MODES", "MOVED_THRESHOLD", "SHARED_THRESHOLD",
           "THRESHOLD", "BasinTest", "basin_test", "correlated_share", "prepare_for_training",
           "runs_per_task", "shared_start"]

MODES = ("auto", "none")


def prepare_for_training(ckpts: CheckpointSet, mode: str = "auto",
                         model: nn.Module | None = None, example_input: Tensor | None = None
                         ) -> tuple[CheckpointSet, str]:
    """What `paramgen train --align MODE` does before fitting: (collection to train on, a line
    saying what was found and done). "none" leaves the collection as it is; "auto" aligns it
    when the distance test finds several basins."""
    if mode not in MODES:
        raise ValueError(f"--align must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return ckpts, "align: off (--align none)"
    if len(ckpts) < 2:
        return ckpts, "align: one checkpoint, nothing to align"
    t0 = time.time()
    try:
        spec = structure_for(ckpts, model, example_input)
    except (UnsupportedLayerError, ValueError, TypeError, KeyError) as exc:
        # --align auto must never stop training: say why the collection is used as it is.
        reason = str(exc).removeprefix("align: ")  # the line already says align
        return ckpts, f"align: skipped ({reason})"
    if not spec.groups:
        return ckpts, "align: skipped (the architecture has no permutable hidden units)"
    test = basin_test(ckpts, spec)
    ratios = f"distance after / before matching: median {test.median:.2f} over " \
             f"{len(test.ratios)} pairs"
    if not test.several_basins:
        return ckpts, f"align: checkpoints share one basin ({ratios}); left as they are"
    aligned = align(ckpts, model, spec=spec)
    how = aligned.info["aligned"]
    message = (f"align: checkpoints come from several basins ({ratios}); aligned "
               f"{len(ckpts)} checkpoints to checkpoint 0 by weight matching, one "
               f"permutation per {how['by']} ({time.time() - t0:.1f} s); samples come out "
               "in checkpoint 0's basin (--align none to skip)")
    if how.get("runs") == "one per task":  # align's own finding: most units had to move
        message += (f"\nalign: the task models do not share an initialisation (matching moved "
                    f"{100 * how['moved']:.0f}% of hidden units): each of the "
                    f"{len(set(aligned.runs))} tasks counts as its own run (one permutation "
                    "state per task; a task to generate takes the state of the nearest seen "
                    "task)")
    return aligned, message
