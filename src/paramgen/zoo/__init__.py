"""Small architectures behind a timm-style registry, one family per file.

``paramgen.zoo.create("cnn-s", in_shape=(1, 8, 8), num_classes=10)`` builds a model;
``list_models()`` names them all (names are case-insensitive, ``_`` and ``-`` alike). Inputs may
be ``(L,)`` or ``(C, L)`` signals (1-D layers) or ``(C, H, W)`` images (2-D layers).

* p-diff's hand-designed minis (Wang et al. 2024, appendix A.2): ``convnet-mini``, ``mlp-mini``,
  ``resnet-mini``, ``vit-mini``, ``convnext-mini``.
* The Model Zoo CNNs (Schürholt et al. 2022): ``cnn-s`` and ``cnn-m``.
* ``vit-tiny`` (a 2-block ViT) and ``mlp`` (configurable widths, optional LayerNorm), plus
  :func:`mlp_family` to build MLPs of a requested parameter count.
* ``resmlp``: residual MLPs of any depth (``depth=``, ``width=``), one family whose models of
  two depths share every tensor shape (IGPG's cross-depth transfer, docs/igpg.md).

Layer sizes follow the papers for 32x32 images; smaller inputs (8x8 digits, 40-sample MNIST-1D)
keep every weight shape that does not depend on the input and skip pooling steps that would
shrink the maps below the final feature grid. For ConvNeXt-mini that reproduces the paper's
parameter count exactly (74,970 on 3x32x32); ConvNet-mini (3,270) and ResNet-mini (3,666) come
out smaller than the paper's Table 6 (24,262 and 25,138), whose layer sizes are not given
anywhere else, and ViT-mini is 75,466 against 80,714.
"""

# Importing a family module registers its builders.
from paramgen.zoo.cnn import ModelZooCNN
from paramgen.zoo.convnet import ConvNetMini
from paramgen.zoo.convnext import ConvNeXtMini
from paramgen.zoo.layers import InputSpec, ZooModel, parse_in_shape
from paramgen.zoo.mlp import MLP, mlp_family, mlp_param_count
from paramgen.zoo.registry import (
    ZooOptionError,
    canonical_name,
    create,
    list_models,
    param_count,
    register,
)
from paramgen.zoo.resmlp import ResMLP
from paramgen.zoo.resnet import ResNetMini
from paramgen.zoo.vit import ViT

__all__ = [
    "MLP",
    "ResMLP",
    "ConvNeXtMini",
    "ConvNetMini",
    "InputSpec",
    "ModelZooCNN",
    "ResNetMini",
    "ViT",
    "ZooModel",
    "ZooOptionError",
    "canonical_name",
    "create",
    "list_models",
    "mlp_family",
    "mlp_param_count",
    "param_count",
    "parse_in_shape",
    "register",
]
