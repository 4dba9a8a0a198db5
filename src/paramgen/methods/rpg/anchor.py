"""The kernel anchor of a task-conditioned generator: the seen tasks' mean models, interpolated
to the asked condition by Gaussian-kernel ridge regression, added to every prototype.

A generator trained on a task grid places its seen tasks well and, between them, extrapolates
from its condition pathway: on our grids a smooth interpolation of the seen models in condition
space came closer to unseen tasks' fine-tuned models than the generator did (docs/tasks.md).
With the anchor, the prototypes start from that interpolation and the networks learn what is
left. The length scale and ridge are chosen by the closed-form leave-one-out error over the seen
tasks; the anchor is fitted once, from the training tokens, and saved with the network (it is
data, not learned).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Length scales as shares of the median squared distance between seen conditions (for 10 task
# bits of +-1 these are scales 1, 1.4, 2, 3 and 4), and ridges, tried by leave-one-out.
SCALE_SHARES = (0.05, 0.1, 0.2, 0.45, 0.8)
RIDGES = (1e-3, 1e-2, 1e-1, 1.0)
# Above this many stored values (seen tasks x tokens x token size) the anchor is not built and
# the backbone reads the condition: the anchor is held in memory (its fit in float64, a few
# copies) and saved with the generator. 1,022 tasks of a 1,090-value adapter are 1.1M.
ANCHOR_MAX_VALUES = 1 << 26


def anchor_size(num_tasks: int, num_tokens: int, token_size: int) -> int:
    return num_tasks * num_tokens * token_size


@dataclass(frozen=True)
class AnchorFit:
    """What :meth:`KernelAnchor.fit` chose: the length scale (as a share of the median squared
    distance between seen conditions), the ridge, and the leave-one-out error as a share of
    the seen tasks' spread."""

    tasks: int
    scale_share: float
    ridge: float
    loo_share: float

    def setting(self) -> str:
        return (f"length scale {self.scale_share:g} of the median squared distance, "
                f"ridge {self.ridge:g}")

    def __str__(self) -> str:
        return (f"kernel anchor over {self.tasks} seen tasks: {self.setting()}, leave-one-out "
                f"error {self.loo_share:.2f} of the tasks' spread")


class KernelAnchor(nn.Module):
    """``anchor(conditions [b, C], index)`` -> the interpolated mean tokens [b, W, T] at the
    token positions ``index`` (None: all; [W]: the same for every row; [b, W]: per row)."""

    def __init__(self, num_tasks: int, condition_dim: int, num_tokens: int, token_size: int):
        super().__init__()
        self.register_buffer("conditions", torch.zeros(num_tasks, condition_dim))
        self.register_buffer("weights", torch.zeros(num_tasks, num_tokens, token_size))
        self.register_buffer("mean", torch.zeros(num_tokens, token_size))
        self.register_buffer("inverse_width", torch.zeros(()))  # 1 / (2 scale^2)
        # Each seen task's leave-one-out anchor [K, L, T] (fit(held_out=True)): what training
        # reads for that task instead of its in-sample anchor. Not saved: sampling never uses it.
        self.register_buffer("held_out", torch.zeros(0), persistent=False)

    def kernel(self, conditions: Tensor) -> Tensor:
        """Gaussian kernel [b, K] between ``conditions`` and the seen tasks' conditions."""
        d2 = torch.cdist(conditions.float(), self.conditions.float()) ** 2
        return torch.exp(-d2 * self.inverse_width)

    def forward(self, conditions: Tensor, index: Tensor | None = None,
                held_out_rows: Tensor | None = None) -> Tensor:
        """``held_out_rows`` [b] (training with held-out anchors only): the rows that read
        their task's leave-one-out anchor; None: every row of a seen task."""
        if self.training and self.held_out.numel():
            # Exact differences: the matmul form cdist uses for many rows leaves rounding
            # error where two float conditions are the same.
            d2 = torch.cdist(conditions.float(), self.conditions.float(),
                             compute_mode="donot_use_mm_for_euclid_dist")
            seen, task = (d2 == 0).any(1), d2.argmin(1)
            if held_out_rows is not None:
                seen = seen & held_out_rows
            if seen.any():
                rows = self.held_out[task]
                if index is not None:
                    rows = (rows[:, index] if index.dim() == 1 else
                            rows[torch.arange(len(rows), device=rows.device)[:, None], index])
                if seen.all():  # the usual training batch: no row needs the interpolation
                    return rows
                return torch.where(seen[:, None, None], rows,
                                   self._interpolate(conditions, index))
        return self._interpolate(conditions, index)

    def _interpolate(self, conditions: Tensor, index: Tensor | None) -> Tensor:
        k = self.kernel(conditions)
        if index is None:
            return self.mean + torch.einsum("bk,klt->blt", k, self.weights)
        if index.dim() == 1:
            return self.mean[index] + torch.einsum("bk,kwt->bwt", k, self.weights[:, index])
        rows = [k[i] @ self.weights[:, index[i]].flatten(1) for i in range(index.shape[0])]
        return self.mean[index] + torch.stack(rows).view(*index.shape, -1)

    @torch.no_grad()
    def fit(self, conditions: Tensor, means: Tensor, held_out: bool = False) -> AnchorFit:
        """Fit to the seen tasks: their conditions [K, C] and mean tokens [K, L, T]. Returns the
        chosen setting. ``held_out``: also keep each seen task's leave-one-out anchor, which
        training then reads for that task (``RPGConfig.anchor_held_out``)."""
        x = conditions.double()
        y = means.double().flatten(1)
        center = y.mean(0)
        y = y - center
        d2 = torch.cdist(x, x) ** 2
        off = d2[~torch.eye(len(x), dtype=torch.bool)]
        typical = float(off.median()) if off.numel() else 1.0
        best = None
        for share in SCALE_SHARES:
            width = 1.0 / (2.0 * share * max(typical, 1e-12))
            vals, vecs = torch.linalg.eigh(torch.exp(-d2 * width))
            projected = vecs.T @ y
            for ridge in RIDGES:
                scaled = 1.0 / (vals.clamp_min(0) + ridge)
                alpha = vecs @ (projected * scaled[:, None])
                diag = (vecs ** 2) @ scaled
                loo = float(((alpha / diag[:, None]) ** 2).mean())
                if best is None or loo < best[0]:
                    best = (loo, share, ridge, width, alpha, diag)
        loo, share, ridge, width, alpha, diag = best
        self.conditions.copy_(conditions)
        self.weights.copy_(alpha.view_as(self.weights))
        self.mean.copy_(center.view_as(self.mean))
        self.inverse_width.fill_(width)
        # Leave-one-out prediction of task i: its mean less alpha_i / diag_i (the closed form
        # of kernel ridge regression); the centre keeps task i, a 1/K effect.
        self.held_out = ((means.double().flatten(1) - alpha / diag[:, None]).view_as(means)
                         .to(self.weights) if held_out else torch.zeros(0))
        spread = float((y ** 2).mean())
        return AnchorFit(len(x), share, ridge, loo / max(spread, 1e-30))


@torch.no_grad()
def seen_tasks(conditions: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct conditions [K, C] of a collection and each checkpoint's index among them."""
    unique, inverse = torch.unique(conditions, dim=0, return_inverse=True)
    return unique, inverse
