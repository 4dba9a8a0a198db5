"""Residual MLPs: ``resmlp``, one family at any depth (for IGPG's cross-depth transfer).

``stem`` (inputs -> width), ``depth`` residual blocks ``x + fc2(act(fc1(x)))`` (width -> hidden
-> width), then ``head`` (width -> classes). Every block has the same shapes, so models of two
depths share every tensor but the blocks one has and the other lacks: the layout a generator
sees differs only in how many blocks there are. Digits (64 inputs) at width 24: 3,010
parameters at depth 1, each block adds 1,200.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from paramgen.zoo.layers import ZooModel
from paramgen.zoo.layers import activation as make_activation
from paramgen.zoo.registry import register

__all__ = ["ResMLP"]


class _Block(nn.Module):
    def __init__(self, width: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class ResMLP(ZooModel):
    """Flatten, ``stem`` + act, ``depth`` residual blocks, ``head``."""

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int, depth: int = 2,
                 width: int = 24, hidden: int | None = None, activation: str = "relu") -> None:
        super().__init__(in_shape, num_classes)
        hidden = width if hidden is None else hidden
        for name, v, low in (("depth", depth, 0), ("width", width, 1), ("hidden", hidden, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"resmlp: {name} must be an int >= {low}, got {v!r}")
        self.stem = nn.Linear(self.spec.numel, width)
        self.act = make_activation(activation)
        self.blocks = nn.Sequential(*(_Block(width, hidden, activation) for _ in range(depth)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.stem(self.as_channels(x).flatten(1)))
        return self.head(self.blocks(h))


@register("resmlp")
def _build_resmlp(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ResMLP(in_shape, num_classes, **kw)
