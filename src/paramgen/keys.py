"""Which tensors of a state dict a generator makes: one meaning for every key selection.

``None`` / ``"all"``: every key. ``"last-norm-K"``: the last K normalization layers (weight, bias
and running statistics; p-diff's partial setting, and what ``paramgen collect --trainable`` trains).
Otherwise key names, module prefixes (``"fc"`` selects ``fc.weight`` and ``fc.bias``) or glob
patterns (``"*.bn2.*"``), as a list or one comma-separated string.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Mapping, Sequence

from torch import Tensor

_LAST_NORM = re.compile(r"last-norm-(\d+)")
_NORM_NAME = re.compile(r"(norm|bn|ln|gn)", re.IGNORECASE)


def last_norm_keys(state_dict: Mapping[str, Tensor], k: int = 2) -> list[str]:
    """Keys of the last ``k`` normalization layers of a state dict (weight, bias, running stats).

    Works on the state dict alone, by name and shape: a module (the key up to its last dot) is a
    normalization layer when its ``weight`` is a 1-D float tensor and it also has a matching 1-D
    ``bias``, BatchNorm running statistics, or a norm-like name (norm, bn, ln, gn). Linear and
    conv weights are 2-D or more; PReLU has neither bias nor such a name. "Last" is state-dict
    order, which is module registration order (for the zoo models, forward order).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    modules: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        modules.setdefault(prefix, {})[name] = value
    norms = []
    for prefix, members in modules.items():
        w = members.get("weight")
        if w is None or not w.is_floating_point() or w.dim() != 1:
            continue
        b = members.get("bias")
        bias_ok = b is not None and b.dim() == 1 and b.shape == w.shape
        stats = "running_mean" in members or "running_var" in members
        named = bool(_NORM_NAME.search(prefix.rpartition(".")[2]))
        if bias_ok or stats or named:
            norms.append(prefix)
    if len(norms) < k:
        raise ValueError(f"asked for the last {k} normalization layers, the state dict has "
                         f"{len(norms)} ({', '.join(norms) or 'none'}); give keys= explicitly")
    chosen = set(norms[-k:])
    return [key for key in state_dict if key.rpartition(".")[0] in chosen]


def _matches(key: str, pattern: str) -> bool:
    # "layer2.bn1" selects "layer2.bn1.weight" but not "layer2.bn10.weight"; globs match whole keys.
    if key == pattern or fnmatch.fnmatchcase(key, pattern):
        return True
    prefix = pattern if pattern.endswith(".") else pattern + "."
    return key.startswith(prefix)


def resolve_keys(state_dict: Mapping[str, Tensor], spec: str | Sequence[str] | None) -> list[str]:
    """The keys ``spec`` selects, in state-dict order.

    ``None`` or ``"all"``: every key. ``"last-norm-K"``: :func:`last_norm_keys`. Otherwise key
    names, module prefixes (``"fc"`` selects ``fc.weight`` and ``fc.bias``) or glob patterns
    (``"*.bn2.*"``), as a list or one comma-separated string. Each pattern must select something.
    """
    if spec is None:
        return list(state_dict)
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return list(state_dict)
        m = _LAST_NORM.fullmatch(text)
        if m:
            return last_norm_keys(state_dict, int(m.group(1)))
        patterns = [p.strip() for p in text.split(",") if p.strip()]
    else:
        patterns = [str(p) for p in spec]
    if not patterns:
        raise ValueError(f"keys={spec!r} selects nothing")
    chosen: set[str] = set()
    for p in patterns:
        hits = [k for k in state_dict if _matches(k, p)]
        if not hits:
            shown = ", ".join(list(state_dict)[:12]) + (", ..." if len(state_dict) > 12 else "")
            raise ValueError(f"key pattern {p!r} matches no key of the checkpoints; keys: {shown}")
        chosen.update(hits)
    return [k for k in state_dict if k in chosen]
