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

    module = load_base(base)[0] if isinstance(base, (str, os.PathLike)) else copy.deepcopy(base)
    return PeftModel.from_pretrained(module, str(folder)).eval()


def score_adapter(base: str | os.PathLike | nn.Module, folder: str | os.PathLike, bits: str,
                  data: str = "digits", split: str = "test") -> float:
    """Balanced accuracy of the adapter in ``folder`` on task ``bits`` of ``data``."""
    from paramgen.evaluation.core import load_data_for
    from paramgen.metrics import evaluate_model

    x, y = load_data_for({"data": data}, task=bits, split=split)
    return evaluate_model(load_adapter(base, folder), x, y, "balanced_accuracy")
