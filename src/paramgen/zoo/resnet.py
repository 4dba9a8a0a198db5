"""p-diff's ResNet-mini (Wang et al. 2024, appendix A.2): ``resnet-mini``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from paramgen.zoo.layers import (
    ZooModel,
    adaptive_avg_pool,
    batch_norm,
    conv,
    feature_grid,
    max_pool,
)
from paramgen.zoo.layers import activation as make_activation
from paramgen.zoo.registry import register

__all__ = ["ResNetMini"]


class _ResidualBlock(nn.Module):
    """conv(C→bottleneck)-BN-act-conv(bottleneck→C)-BN, plus the identity, then act."""

    def __init__(self, nd: int, channels: int, kernel: int, bottleneck: int, act: str) -> None:
        super().__init__()
        # No conv bias: the BatchNorm right after it has its own shift.
        self.conv1 = conv(nd, channels, bottleneck, kernel, padding=kernel // 2, bias=False)
        self.bn1 = batch_norm(nd, bottleneck)
        self.conv2 = conv(nd, bottleneck, channels, kernel, padding=kernel // 2, bias=False)
        self.bn2 = batch_norm(nd, channels)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + x)


class ResNetMini(ZooModel):
    """p-diff ResNet-mini: conv (C, 8, 3) + BN, two residual blocks (8, 8, 3, bottleneck 4),
    linear (128, 16), (16, classes).

    Its last two BatchNorm layers (``layer2.bn1``, ``layer2.bn2``) are the ones p-diff
    generates in partial mode. The final map is average-pooled to 4x4 (16 for signals), so
    linear1 sees 8 * 16 = 128 features as in the paper.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int, width: int = 8,
                 bottleneck: int = 4, kernel: int = 3, hidden: int = 16,
                 activation: str = "relu") -> None:
        super().__init__(in_shape, num_classes)
        nd, grid = self.spec.ndim, feature_grid(self.spec, 4)
        sizes = self.spec.spatial
        self.conv1 = conv(nd, self.spec.channels, width, kernel, padding=kernel // 2, bias=False)
        self.bn1 = batch_norm(nd, width)
        self.act = make_activation(activation)
        pools = []
        for _ in range(2):
            # Downsample before each block while the map stays at least as large as the grid.
            if min(sizes) // 2 >= grid:
                pools.append(max_pool(nd))
                sizes = tuple(s // 2 for s in sizes)
            else:
                pools.append(nn.Identity())
        self.pool1, self.pool2 = pools
        self.layer1 = _ResidualBlock(nd, width, kernel, bottleneck, activation)
        self.layer2 = _ResidualBlock(nd, width, kernel, bottleneck, activation)
        self.pool = adaptive_avg_pool(nd, grid)
        self.fc1 = nn.Linear(width * grid**nd, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.conv1(self.as_channels(x))))
        x = self.layer1(self.pool1(x))
        x = self.layer2(self.pool2(x))
        return self.fc2(self.act(self.fc1(self.pool(x).flatten(1))))


@register("resnet-mini")
def _build_resnet_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ResNetMini(in_shape, num_classes, **kw)
