"""Name → model-builder registry (the timm pattern): ``register``, ``create``, ``list_models``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["ZooOptionError", "canonical_name", "create", "list_models", "param_count", "register"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


def _key(name: str) -> str:
    # "ResNet_Mini" and "resnet-mini" name the same model.
    return name.strip().lower().replace("_", "-")


def register(name: str) -> Callable[[B], B]:
    """Decorator registering ``builder(in_shape, num_classes, **kw) -> nn.Module`` as ``name``."""

    def wrap(builder: B) -> B:
        key = _key(name)
        if key in _REGISTRY and _REGISTRY[key] is not builder:
            raise ValueError(f"zoo model {name!r} is already registered "
                             f"(by {_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__})")
        _REGISTRY[key] = builder
        return builder

    return wrap


class ZooOptionError(TypeError, ValueError):
    """A model was given an option it does not take. A TypeError as Python reports it, and a
    ValueError so that callers handling bad input (the command line) report it cleanly."""


def canonical_name(name: str) -> str:
    """The registered spelling of model ``name`` ("ResNet_Mini" -> "resnet-mini")."""
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(list_models())}")
    return _key(name)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, in_shape: Sequence[int] | int, num_classes: int = 10,
           seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name`` for inputs of shape ``in_shape`` (no batch dim) and ``num_classes``.

    ``seed`` makes the initialisation reproducible without touching the global RNG; extra
    keyword arguments go to the model (e.g. ``create("mlp", (40,), 10, hidden=(64, 64))``).
    """
    builder = _REGISTRY[canonical_name(name)]
    try:
        if seed is None:
            return builder(in_shape, num_classes, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return builder(in_shape, num_classes, **kwargs)
    except TypeError as err:
        # An unexpected keyword shows up as a TypeError deep in a constructor; name the model
        # and the option (e.g. --hidden for an architecture without hidden layers).
        bad = sorted(k for k in kwargs if f"'{k}'" in str(err))
        what = f"does not take the option {', '.join(map(repr, bad))}" if bad else str(err)
        raise ZooOptionError(f"zoo model {name!r} {what} ({err})") from err


def param_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter scalars in ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
