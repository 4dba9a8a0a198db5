"""Small architectures behind a timm-style registry.

``paramgen.zoo.create("cnn-s", in_shape=(1, 8, 8), num_classes=10)`` builds a model;
``list_models()`` names them all. Inputs may be ``(L,)`` or ``(C, L)`` signals (1-D layers) or
``(C, H, W)`` images (2-D layers).
"""

from paramgen.zoo.layers import InputSpec, ZooModel, parse_in_shape
from paramgen.zoo.models import (
    MLP,
    ConvNeXtMini,
    ConvNetMini,
    ModelZooCNN,
    ResNetMini,
    ViT,
    mlp_family,
    mlp_param_count,
)
from paramgen.zoo.registry import create, list_models, param_count, register

__all__ = [
    "MLP",
    "ConvNeXtMini",
    "ConvNetMini",
    "InputSpec",
    "ModelZooCNN",
    "ResNetMini",
    "ViT",
    "ZooModel",
    "create",
    "list_models",
    "mlp_family",
    "mlp_param_count",
    "param_count",
    "parse_in_shape",
    "register",
]
