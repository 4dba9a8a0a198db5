"""Which parameters keep training in a continuation: "all", "last-norm-K" or key prefixes;
and what that choice implies for BatchNorm buffers and frozen normalization layers."""

from __future__ import annotations

import re
from typing import Sequence

from torch import nn

__all__ = ["frozen_norms", "resolve_trainable", "varying_keys"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
               nn.modules.instancenorm._InstanceNorm)



def _is_norm(module: nn.Module) -> bool:
    # Custom norms (e.g. a channels-first LayerNorm in ConvNeXt) are recognised by name.
    return isinstance(module, _NORM_TYPES) or (
        "norm" in type(module).__name__.lower()
        and any(True for _ in module.parameters(recurse=False)))


def resolve_trainable(model: nn.Module, trainable: str | Sequence[str]) -> list[str] | None:
    """Parameter names to train during the continuation; None means all of them.

    `trainable` is "all", "last-norm-K" (the last K normalization layers, in module order;
    "last-norm-2" is p-diff's default), or a list of key prefixes such as ["fc.", "bn2."].
    """
    names = [n for n, _ in model.named_parameters()]
    if isinstance(trainable, str):
        spec = trainable.strip()
        if spec == "all":
            return None
        m = re.fullmatch(r"last-norm-(\d+)", spec)
        if m:
            # One meaning of "last-norm-K" for collect and the generators: paramgen.keys.
            from paramgen.keys import last_norm_keys

            try:
                keys = last_norm_keys(model.state_dict(), int(m.group(1)))
            except ValueError as exc:
                raise ValueError(f"trainable={spec!r}: {exc}; use trainable='all' or a list of "
                                 "key prefixes") from exc
            modules = list(dict.fromkeys(k.rpartition(".")[0] for k in keys))
            prefixes = [mod + "." for mod in modules
                        if any(n.startswith(mod + ".") for n in names)]
        else:
            prefixes = [p.strip() for p in spec.split(",") if p.strip()]
    else:
        prefixes = [str(p) for p in trainable]
    if not prefixes:
        raise ValueError(f"trainable={trainable!r} selects nothing")
    chosen = []
    for p in prefixes:
        hits = [n for n in names if n.startswith(p)]
        if not hits:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"trainable prefix {p!r} matches no parameter; parameters: {shown}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def varying_keys(model: nn.Module, chosen: list[str]) -> list[str]:
    """State-dict keys that change during a partial continuation: the chosen parameters plus the
    buffers (BatchNorm running stats) of the modules that own them."""
    chosen_set = set(chosen)
    keys = []
    for mname, mod in model.named_modules():
        prefix = mname + "." if mname else ""
        own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
        if any(k in chosen_set for k in own):
            keys += [k for k in own if k in chosen_set]
            keys += [prefix + n for n, b in mod.named_buffers(recurse=False) if b is not None]
    return keys


def frozen_norms(model: nn.Module, chosen: list[str] | None) -> list[nn.Module]:
    """Normalization modules none of whose parameters train. They are kept in eval mode during a
    partial continuation so their running statistics stay fixed: otherwise BatchNorm would keep
    updating "frozen" buffers and checkpoints would differ outside the chosen subset."""
    if chosen is None:
        return []
    chosen_set = set(chosen)
    out = []
    for mname, mod in model.named_modules():
        prefix = mname + "." if mname else ""
        if _is_norm(mod) or isinstance(mod, _NORM_TYPES):
            own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
            if not any(k in chosen_set for k in own):
                out.append(mod)
    return out


