"""p-diff's ConvNet-mini (Wang et al. 2024, appendix A.2): ``convnet-mini``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from paramgen.zoo.layers import (
    ConvClassifier,
    conv,
    conv_out,
    feature_grid,
    max_pool,
)
from paramgen.zoo.layers import activation as make_activation
from paramgen.zoo.registry import register

__all__ = ["ConvNetMini"]


class ConvNetMini(ConvClassifier):
    """p-diff ConvNet-mini: conv (C, 8, 7), (8, 8, 3), (8, 4, 3); linear (64, 16), (16, classes).

    Convolutions use "same" padding with a ReLU; a 2x max-pool follows conv1 and conv2 whenever
    the map stays at least as large as the final grid, and an adaptive average pool brings the
    last map to 4x4 (16 samples for signals) so linear1 always sees 4 * 16 = 64 features.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 channels: Sequence[int] = (8, 8, 4), kernels: Sequence[int] = (7, 3, 3),
                 hidden: int = 16, activation: str = "relu") -> None:
        super().__init__(in_shape, num_classes)
        if len(channels) != len(kernels) or not channels:
            raise ValueError(f"convnet-mini: channels {channels!r} and kernels {kernels!r} "
                             "must be non-empty and of equal length")
        nd, grid = self.spec.ndim, feature_grid(self.spec, 4)
        sizes, c = self.spec.spatial, self.spec.channels
        layers: list[nn.Module] = []
        for i, (co, k) in enumerate(zip(channels, kernels)):
            layers += [conv(nd, c, co, k, padding=k // 2), make_activation(activation)]
            sizes = conv_out(sizes, k, k // 2)
            if i < len(channels) - 1 and min(sizes) // 2 >= grid:
                layers.append(max_pool(nd))
                sizes = tuple(s // 2 for s in sizes)
            c = co
        self.finish(layers, c, nd, grid, hidden, activation)


@register("convnet-mini")
def _build_convnet_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ConvNetMini(in_shape, num_classes, **kw)
