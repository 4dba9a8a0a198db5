"""p-diff's ConvNeXt-mini (Wang et al. 2024, appendix A.2): ``convnext-mini``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paramgen.zoo.layers import (
    ChannelLayerNorm,
    ZooModel,
    conv,
)
from paramgen.zoo.registry import register

__all__ = ["ConvNeXtMini"]


class _ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → Linear(4x) → GELU → Linear → layer scale, plus input."""

    def __init__(self, nd: int, dim: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = conv(nd, dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).movedim(1, -1))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.movedim(-1, 1)


class ConvNeXtMini(ZooModel):
    """p-diff ConvNeXt-mini: stage depths (1, 2, 2, 2), stage widths (16, 32, 32, 32).

    Patchify stem (stride 4 for 32x32, stride 1 for 8x8: the largest of 4/2/1 leaving at least
    8 positions), then stages separated by LayerNorm + stride-2 convolutions (kernel 1 stride 1
    once the map is a single position), global average pool, LayerNorm, linear head.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 depths: Sequence[int] = (1, 2, 2, 2), dims: Sequence[int] = (16, 32, 32, 32),
                 kernel: int = 7, layer_scale: float = 1e-6) -> None:
        super().__init__(in_shape, num_classes)
        if len(depths) != len(dims) or not dims:
            raise ValueError(f"convnext-mini: depths {depths!r} and dims {dims!r} must be "
                             "non-empty and of equal length")
        nd = self.spec.ndim
        size = min(self.spec.spatial)
        stride = next(s for s in (4, 2, 1) if size // s >= 8 or s == 1)
        size //= stride
        self.stem = nn.Sequential(conv(nd, self.spec.channels, dims[0], stride, stride=stride),
                                  ChannelLayerNorm(dims[0]))
        stages: list[nn.Module] = []
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            layers: list[nn.Module] = []
            if i > 0:
                k = 2 if size >= 2 else 1
                layers += [ChannelLayerNorm(dims[i - 1]), conv(nd, dims[i - 1], dim, k, stride=k)]
                size //= k
            layers += [_ConvNeXtBlock(nd, dim, kernel, layer_scale) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(self.as_channels(x)))
        return self.head(self.norm(x.flatten(2).mean(dim=2)))


@register("convnext-mini")
def _build_convnext_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ConvNeXtMini(in_shape, num_classes, **kw)
