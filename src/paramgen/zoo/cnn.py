"""The Model Zoo CNNs (Schürholt et al. 2022): ``cnn-s`` and ``cnn-m``."""

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

__all__ = ["ModelZooCNN"]


class ModelZooCNN(ConvClassifier):
    """The Model Zoo CNN (Schürholt et al. 2022): three conv layers, max-pooling, two linears.

    ``conv -> act -> [pool]`` per layer, average pooling to a fixed ``grid``, flatten,
    ``Linear(channels[-1] * grid**2, hidden) -> act -> Linear(hidden, classes)``.

    At the Model Zoo's resolution (images of at least 28x28) convolutions are unpadded, as in
    the paper. Smaller inputs (8x8 digits) and signals (MNIST-1D) pad odd kernels to keep the
    size ("same") and leave even kernels unpadded. Then, at any size, the *earliest* pools of
    ``pool_after`` are dropped until the last map is at least the grid (``grid`` for images,
    ``grid**2`` for signals); at 32x32 all pools stay. Dropping early rather than late pools keeps
    the first layers at full resolution, which is what lets cnn-s reach > 90% on 8x8 digits
    (8x8 → conv → conv → pool 4x4 → 2x2 conv → 3x3, the grid of the 28x28 original).
    Weight shapes are always the Model Zoo ones.

    The default activation is tanh (one of the Model Zoo's choices): with only 4 channels
    before the classifier, ReLU units can all die at initialisation and leave a run stuck at
    chance (seen once in six seeds on digits); tanh never did.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 channels: Sequence[int], kernels: Sequence[int], pool_after: Sequence[bool],
                 grid: int, hidden: int = 20, activation: str = "tanh") -> None:
        super().__init__(in_shape, num_classes)
        if not len(channels) == len(kernels) == len(pool_after) or not channels:
            raise ValueError(f"cnn: channels {channels!r}, kernels {kernels!r} and pool_after "
                             f"{pool_after!r} must be non-empty and of equal length")
        nd = self.spec.ndim
        grid_len = feature_grid(self.spec, grid)
        native = nd == 2 and min(self.spec.spatial) >= 28
        pads = [0 if native or k % 2 == 0 else k // 2 for k in kernels]
        pools = [bool(p) for p in pool_after]

        def final_size(pools: list[bool]) -> int:
            sizes = self.spec.spatial
            for k, pad, pool in zip(kernels, pads, pools):
                sizes = conv_out(sizes, k, pad)
                if pool:
                    sizes = tuple(s // 2 for s in sizes)
            return min(sizes)

        for i in range(len(pools)):
            if final_size(pools) >= grid_len:
                break
            pools[i] = False
        if final_size(pools) < 1:
            raise ValueError(f"cnn: input shape {self.in_shape} is too small for kernels "
                             f"{tuple(kernels)}")
        self.pools = tuple(pools)
        c = self.spec.channels
        layers: list[nn.Module] = []
        for co, k, pad, pool in zip(channels, kernels, pads, pools):
            layers += [conv(nd, c, co, k, padding=pad), make_activation(activation)]
            if pool:
                layers.append(max_pool(nd))
            c = co
        self.finish(layers, c, nd, grid_len, hidden, activation)


@register("cnn-s")
def _build_cnn_s(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """Model Zoo CNN-s: conv 8@5, pool, conv 6@5, pool, conv 4@2, 3x3 grid, fc 36→20→classes.

    2,464 parameters for 1-channel and 2,864 for 3-channel images (the paper's counts).
    """
    return ModelZooCNN(in_shape, num_classes, channels=(8, 6, 4), kernels=(5, 5, 2),
                       pool_after=(True, True, False), grid=3, **kw)


@register("cnn-m")
def _build_cnn_m(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """Model Zoo CNN-m: conv 16@3, 32@3, 15@3, each then a pool, 2x2 grid, fc 60→20→classes.

    10,565 parameters for 1-channel and 10,853 for 3-channel images.
    """
    return ModelZooCNN(in_shape, num_classes, channels=(16, 32, 15), kernels=(3, 3, 3),
                       pool_after=(True, True, True), grid=2, **kw)
