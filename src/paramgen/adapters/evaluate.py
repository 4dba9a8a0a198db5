"""Adapters judged the way users run them: loaded through peft onto the base, then measured."""

from __future__ import annotations

import os

from torch import nn

__all__ = ["load_adapter", "score_adapter"]


def load_adapter(base: str | os.PathLike | nn.Module, folder: str | os.PathLike):
    """``peft.PeftModel.from_pretrained`` on a fresh copy of the base (a base folder or module),
    in eval mode."""
    import copy

    from peft import PeftModel

    from paramgen.adapters.base import load_base
    from paramgen.adapters.folders import read_peft_folder

    read_peft_folder(folder)  # a missing or damaged file: an error naming it, before peft reads
    module = load_base(base)[0] if isinstance(base, (str, os.PathLike)) else copy.deepcopy(base)
    try:
        return PeftModel.from_pretrained(module, str(folder)).eval()
    except (RuntimeError, ValueError) as exc:  # size mismatches, targets the base lacks
        first = " ".join(str(exc).split())[:300]
        raise ValueError(f"PEFT adapter folder {folder} does not fit the base model "
                         f"{type(module).__name__} (an adapter of another base?): "
                         f"{first}") from None


def score_adapter(base: str | os.PathLike | nn.Module, folder: str | os.PathLike, bits: str,
                  data: str = "digits", split: str = "test") -> float:
    """Balanced accuracy of the adapter in ``folder`` on task ``bits`` of ``data``."""
    from paramgen.evaluation.core import load_data_for
    from paramgen.metrics import evaluate_model

    x, y = load_data_for({"data": data}, task=bits, split=split)
    return evaluate_model(load_adapter(base, folder), x, y, "balanced_accuracy")
