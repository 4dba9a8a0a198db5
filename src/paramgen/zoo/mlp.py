"""MLPs: ``mlp`` (configurable widths, optional LayerNorm), ``mlp-family`` (a requested
parameter count, see :func:`mlp_family`) and p-diff's ``mlp-mini``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from paramgen.zoo.layers import (
    ZooModel,
    parse_in_shape,
)
from paramgen.zoo.layers import activation as make_activation
from paramgen.zoo.registry import register

__all__ = ["MLP", "mlp_family", "mlp_param_count"]


class MLP(ZooModel):
    """Flatten, then ``Linear -> [LayerNorm] -> act -> [Dropout]`` per hidden width, then a head.

    ``hidden=()`` is a linear (softmax-regression) model.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 hidden: Sequence[int] = (64,), layernorm: bool = False,
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__(in_shape, num_classes)
        widths = tuple(hidden)
        if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise ValueError(f"mlp: hidden must be positive ints, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout!r}")
        self.hidden = widths
        layers: list[nn.Module] = []
        d = self.spec.numel
        for w in widths:
            layers.append(nn.Linear(d, w))
            if layernorm:
                layers.append(nn.LayerNorm(w))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = w
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.as_channels(x).flatten(1))


def mlp_param_count(in_shape: Sequence[int] | int, num_classes: int, hidden: Sequence[int],
                    layernorm: bool = False) -> int:
    """Parameter count of ``MLP(in_shape, num_classes, hidden, layernorm)`` without building it."""
    dims = [parse_in_shape(in_shape).numel, *hidden, num_classes]
    linear = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    return linear + (2 * sum(hidden) if layernorm else 0)


def mlp_family(target_params: int, in_shape: Sequence[int] | int, num_classes: int = 10,
               depth: int = 2, **kwargs) -> MLP:
    """An MLP with ``depth`` equal hidden layers, as close as possible to ``target_params``.

    Lets a benchmark sweep model size (2K to 10M parameters) with one architecture family.
    """
    if depth < 1:
        raise ValueError(f"mlp_family: depth must be >= 1, got {depth}")
    layernorm = bool(kwargs.get("layernorm", False))

    def count(w: int) -> int:
        return mlp_param_count(in_shape, num_classes, (w,) * depth, layernorm)

    if target_params < count(1):
        raise ValueError(f"mlp_family: target_params={target_params} is below the smallest "
                         f"{depth}-layer MLP for in_shape {in_shape} ({count(1)} parameters)")
    lo, hi = 1, 2
    while count(hi) < target_params:
        hi *= 2
    # Count grows monotonically with width, so bisect to the width just below the target.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= target_params else (lo, mid)
    width = min((lo, hi), key=lambda w: abs(count(w) - target_params))
    return MLP(in_shape, num_classes, hidden=(width,) * depth, **kwargs)


@register("mlp")
def _build_mlp(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return MLP(in_shape, num_classes, **kw)


@register("mlp-family")
def _build_mlp_family(in_shape: Sequence[int] | int, num_classes: int,
                      target_params: int = 10_000, depth: int = 2, **kw) -> nn.Module:
    """``create("mlp-family", shape, k, target_params=1_000_000)``: see :func:`mlp_family`."""
    return mlp_family(int(target_params), in_shape, num_classes, depth=depth, **kw)


@register("mlp-mini")
def _build_mlp_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """p-diff MLP-mini: linear (in, 64), (64, 16), (16, classes).

    The paper lists in = 1024 for CIFAR-10 (32x32); here the whole input is flattened, so a
    3x32x32 image gives in = 3072.
    """
    kw.setdefault("hidden", (64, 16))
    return MLP(in_shape, num_classes, **kw)
