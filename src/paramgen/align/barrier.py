"""The loss barrier on the straight line between two models: the classic check of alignment.

Two models in one basin can be averaged: every point on the segment between them is about as
good as its ends. Two unaligned runs usually cannot: the middle of the segment is much worse.
The barrier is the largest rise of the test loss (and fall of accuracy) above the linear
interpolation of the ends' values (Frankle et al. 2020; Entezari et al. 2022).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn


def interpolate(a: Mapping[str, Tensor], b: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
    """(1 - t) a + t b for float entries; integer buffers from `a`."""
    return {k: torch.lerp(a[k], b[k], t) if a[k].is_floating_point() else a[k] for k in a}


@torch.no_grad()
def barrier(model: nn.Module, a: Mapping[str, Tensor], b: Mapping[str, Tensor], x: Tensor,
            y: Tensor, points: int = 11) -> dict[str, object]:
    """Loss and accuracy along the segment a → b at `points` evenly spaced positions, and the
    barriers: max over t of loss(t) - lerp(loss ends) and of lerp(acc ends) - acc(t)."""
    model = model.eval()
    ts = [i / (points - 1) for i in range(points)]
    losses, accs = [], []
    for t in ts:
        model.load_state_dict(interpolate(a, b, t))
        logits = model(x)
        losses.append(float(nn.functional.cross_entropy(logits, y)))
        accs.append(float((logits.argmax(1) == y).float().mean()))
    loss_barrier = max(l - ((1 - t) * losses[0] + t * losses[-1]) for t, l in zip(ts, losses))
    acc_barrier = max(((1 - t) * accs[0] + t * accs[-1]) - acc for t, acc in zip(ts, accs))
    return {"t": ts, "loss": losses, "accuracy": accs, "loss_barrier": loss_barrier,
            "accuracy_barrier": acc_barrier}
