"""Generated parameters as an initialisation: fine-tune them and a random init side by side.

RPG appendix Table 21 reports the test metric after 0, 1, 2, 5 epochs of fine-tuning, starting
from generated parameters versus a conventional initialisation: a good generator gives a head
start that training only slowly makes up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from paramgen.evaluation.core import ModelSpec, StateDict, load_into, load_splits, predict_one, \
    score
from paramgen.evaluation.tables import Table, pct
from paramgen.training_classifier import Phase, fit_classifier, steps_per_epoch


@dataclass
class FinetuneTable:
    """Test metric per init (row) and epoch (column); epoch 0 is before any training."""

    epochs: list[int]
    curves: dict[str, list[float]]
    metric: str = "accuracy"

    def table(self) -> Table:
        rows = [[name] + [pct(v) for v in vals] for name, vals in self.curves.items()]
        return Table(headers=["init"] + [f"epoch-{e} (%)" for e in self.epochs], rows=rows,
                     title=f"test {self.metric.replace('_', ' ')} while fine-tuning from each "
                           "initialisation")

    def to_markdown(self) -> str:
        return self.table().markdown()

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "epochs": self.epochs, "curves": self.curves}

    def __str__(self) -> str:
        return self.table().text()


def finetune_curves(init_state_dicts: Mapping[str, StateDict | None],
                    info: Mapping[str, Any] | ModelSpec | None = None, *,
                    model_fn: Callable[[], nn.Module] | None = None,
                    data: str | Sequence[Tensor] | None = None, task: str | None = None,
                    epochs: int = 5, lr: float = 1e-3, batch_size: int = 64,
                    weight_decay: float = 0.0, seed: int = 0, metric: str | None = None
                    ) -> FinetuneTable:
    """Fine-tune one model per init for `epochs` epochs; test metric after each epoch.

    init_state_dicts: name → state dict, or None for a fresh random initialisation (seeded by
    `seed`, the same for every None row). The network comes from `model_fn()` when given, else
    from `info` (the collection's arch / in_shape / num_classes). `data` is a dataset name or an
    (x_train, y_train, x_test, y_test) tuple; by default the dataset in `info`, relabelled to the
    binary `task` when given. Every row sees the same mini-batch order (epoch permutations seeded
    by `seed`), so the rows differ only by their initialisation. Trained through paramgen's
    classifier training (the Engine): AdamW at the constant `lr`; cross-entropy, class-balanced
    when the metric is balanced accuracy so the loss optimises what is being measured.
    """
    if epochs < 0:
        raise ValueError(f"finetune epochs={epochs}: expected >= 0")
    if not init_state_dicts:
        raise ValueError("finetune_curves: no initialisations given")
    spec = None
    if info is not None:
        spec = info if isinstance(info, ModelSpec) else ModelSpec.from_info(info)
    if model_fn is None and spec is None:
        raise ValueError("finetune_curves needs info (arch, in_shape, num_classes) or model_fn")
    metric = metric or (spec.metric if spec else "accuracy")
    if data is None or isinstance(data, str):
        name = data or (spec.data if spec else None)
        if not name:
            raise ValueError("finetune_curves: no dataset; pass data=NAME or a 4-tuple of tensors")
        x_train, y_train, x_test, y_test = load_splits(name, task)
    else:
        if len(data) != 4:
            raise ValueError(f"finetune_curves data: expected (x_train, y_train, x_test, y_test), "
                             f"got {len(data)} items")
        x_train, y_train, x_test, y_test = data
    y_train, y_test = y_train.long(), y_test.long()

    weight = None
    if metric == "balanced_accuracy":
        from paramgen.data import class_weights

        weight = class_weights(y_train, int(max(y_train.max(), y_test.max())) + 1)

    def fresh(init_seed: int) -> nn.Module:
        if model_fn is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                return model_fn()
        from paramgen import zoo

        return zoo.create(spec.arch, in_shape=spec.in_shape, num_classes=spec.num_classes,
                          seed=init_seed, **spec.model_kwargs)

    per_epoch = steps_per_epoch(len(x_train), batch_size, min_batch=2)

    def test_score(model: nn.Module) -> float:
        return float(score(predict_one(model, x_test), y_test, metric))

    curves: dict[str, list[float]] = {}
    for name, sd in init_state_dicts.items():
        model = fresh(seed)
        if sd is not None:
            load_into(model, sd, f"init {name!r}")
        vals = [test_score(model)]

        def after(step: int, model: nn.Module, vals: list[float] = vals) -> None:
            if step % per_epoch == 0:
                vals.append(test_score(model))

        if epochs:
            # Every row trains with the same seed, so it sees the same mini-batches in the same
            # order; a last batch of one example is skipped (BatchNorm cannot normalise it).
            fit_classifier(model, x_train, y_train,
                           [Phase("finetune", epochs * per_epoch, lr, schedule="constant")],
                           batch_size=batch_size, seed=seed, class_weight=weight, min_batch=2,
                           weight_decay=weight_decay,
                           on_step=after, desc=f"finetune {name}")
        curves[name] = vals
    return FinetuneTable(list(range(epochs + 1)), curves, metric)
