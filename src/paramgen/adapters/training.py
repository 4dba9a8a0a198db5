"""One adapter for one binary task: put peft's LoRA/DoRA on a copy of the base and train it.

Every adapter of a collection starts from the same initial adapter weights (``init``): LoRA's A
matrices are random, and tasks trained from one draw of them differ only where the tasks
differ, which is what a generator conditioned on task bits can learn and interpolate.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor, nn

from paramgen.adapters.recipe import LoraRecipe
from paramgen.training_classifier import Phase, fit_classifier, warmup_for

__all__ = ["TRAIN_DEFAULTS", "adapter_state", "attach", "train_adapter"]

# 40 Adam steps on mini-batches of 128 at lr 0.02: digits tasks reach ~97% balanced accuracy in
# about a second of one busy CPU thread (docs/adapters.md).
TRAIN_DEFAULTS = {"steps": 40, "batch_size": 128, "lr": 2e-2}


def attach(base: nn.Module, recipe: LoraRecipe, head_module: str,
           init: dict[str, Tensor] | None = None, seed: int = 0):
    """A ``peft.PeftModel`` of a copy of ``base`` (left untouched) with the recipe's adapter,
    its weights set to ``init`` when given (else drawn with ``seed``)."""
    from peft import get_peft_model, set_peft_model_state_dict

    names = [n for n, _ in base.named_modules() if n]
    # peft adapts the targets that match and skips the rest without a word: a misspelt target
    # next to a good one would train a smaller adapter than asked for.
    unmatched = [t for t in recipe.targets if not any(n == t or n.endswith("." + t)
                                                      for n in names)]
    if unmatched and len(unmatched) < len(recipe.targets):
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules()
                         if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {unmatched} match no layer of the base model; its "
                         f"Linear layers are named {linear}")
    if recipe.head == "adapter" and head_module and head_module not in names:
        raise ValueError(f"head module {head_module!r} is not a layer of the base model "
                         f"{type(base).__name__}")
    model = copy.deepcopy(base)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            peft_model = get_peft_model(model, recipe.peft_config(head_module))
    except ValueError as exc:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules()
                         if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {list(recipe.targets)} do not fit the base model "
                         f"({exc}); its Linear layers are named {linear}") from None
    if init is not None:
        result = set_peft_model_state_dict(peft_model, init)
        missing = [k for k in getattr(result, "unexpected_keys", []) or []]
        if missing:
            raise ValueError(f"initial adapter keys {missing[:5]} do not fit the recipe")
    return peft_model


def adapter_state(peft_model) -> dict[str, Tensor]:
    """The adapter's weights as peft saves them (the keys of ``adapter_model.safetensors``)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True)
            for k, v in get_peft_model_state_dict(peft_model).items()}


def train_adapter(peft_model, x: Tensor, y: Tensor, steps: int | None = None,
                  lr: float | None = None, batch_size: int | None = None, seed: int = 0,
                  on_step: Callable[[int, nn.Module], None] | None = None):
    """Train the adapter's parameters on binary labels ``y`` (class-balanced cross-entropy,
    through paramgen's classifier training: warm-up + cosine decay to a tenth, seeded mini-batches
    in epoch order). ``on_step(step, model)`` runs after every step (``step`` from 0; the
    benchmark times the training around it). Returns the model in eval mode."""
    from paramgen.data import class_weights

    steps = TRAIN_DEFAULTS["steps"] if steps is None else int(steps)
    lr = TRAIN_DEFAULTS["lr"] if lr is None else float(lr)
    batch_size = TRAIN_DEFAULTS["batch_size"] if batch_size is None else int(batch_size)
    if steps < 1 or lr <= 0 or batch_size < 1:
        raise ValueError(f"bad adapter training settings: steps={steps}, lr={lr}, "
                         f"batch_size={batch_size}")
    # Only the adapter learns: the parameters peft left trainable (the base's are frozen).
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    phase = Phase("adapter", steps, lr, schedule="cosine", min_lr_ratio=0.1,
                  warmup_steps=warmup_for(steps), trainable=trainable)
    hook = None if on_step is None else (lambda step, model: on_step(step - 1, model))
    fit_classifier(peft_model, x, y, [phase], batch_size=batch_size, seed=seed,
                   class_weight=class_weights(y), on_step=hook, desc="adapter")
    return peft_model.eval()
