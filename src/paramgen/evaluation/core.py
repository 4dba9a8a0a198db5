"""Rebuilding the model and the test data for a checkpoint collection, predicting and scoring.

Everything here works on plain state dicts, so generated samples and training checkpoints go
through exactly the same code path: a difference in their numbers is a difference in parameters.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

StateDict = Mapping[str, Tensor]
METRICS = ("accuracy", "balanced_accuracy")


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild the network a collection was trained on (its manifest `info`)."""

    arch: str
    in_shape: tuple[int, ...]
    num_classes: int
    data: str | None = None
    metric: str = "accuracy"
    # Extra constructor arguments the collection was built with (e.g. {"hidden": [64, 64]}):
    # without them the rebuilt network would not have the checkpoints' shapes.
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: Mapping[str, Any] | None, source: str = "info") -> "ModelSpec":
        """Read arch / in_shape / num_classes (and data, metric when present) from `info`.

        `source` names where the info came from (a manifest path) so a missing key can be fixed.
        """
        if not info:
            raise ValueError(f"{source}: no collection info; evaluation needs 'arch', 'in_shape' "
                             "and 'num_classes' to rebuild the model (or pass model= explicitly)")
        missing = [k for k in ("arch", "in_shape", "num_classes") if info.get(k) is None]
        if missing:
            raise ValueError(f"{source}: info lacks {', '.join(repr(k) for k in missing)}; "
                             f"present keys: {sorted(info)}")
        metric = info.get("metric") or "accuracy"
        if metric not in METRICS:
            raise ValueError(f"{source}: info['metric'] = {metric!r}; expected one of {METRICS}")
        return cls(arch=str(info["arch"]), in_shape=tuple(int(d) for d in info["in_shape"]),
                   num_classes=int(info["num_classes"]), data=info.get("data"), metric=metric,
                   model_kwargs=dict(info.get("model_kwargs") or {}))


def build_model(info: Mapping[str, Any] | ModelSpec) -> nn.Module:
    """A fresh (randomly initialised) instance of the collection's architecture, in eval mode."""
    from paramgen import zoo  # imported here: the zoo is only needed when no model is given

    spec = info if isinstance(info, ModelSpec) else ModelSpec.from_info(info)
    model = zoo.create(spec.arch, in_shape=spec.in_shape, num_classes=spec.num_classes,
                       **spec.model_kwargs)
    return model.eval()


def load_splits(name: str, task: str | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x_train, y_train, x_test, y_test of dataset `name`, labels relabelled to a binary task."""
    from paramgen import data as datasets  # lazily: loading data is only needed without data=

    x_train, y_train, x_test, y_test = datasets.load(name)
    if task is not None:
        bits = datasets.parse_bits(task, num_classes=datasets.num_classes(name))
        y_train, y_test = datasets.relabel(y_train, bits), datasets.relabel(y_test, bits)
    return x_train, y_train, x_test, y_test


def load_data_for(info: Mapping[str, Any] | ModelSpec, task: str | None = None,
                  split: str = "test", data: str | None = None) -> tuple[Tensor, Tensor]:
    """The (x, y) split a collection is evaluated on: its dataset, relabelled when `task` is given.

    `data` overrides the dataset named in `info` (e.g. evaluating on a related dataset).
    """
    spec_data = info.data if isinstance(info, ModelSpec) else (info or {}).get("data")
    name = data or spec_data
    if not name:
        raise ValueError("no dataset to evaluate on: the collection info has no 'data' key; "
                         "pass data=NAME (--data on the command line)")
    if split not in ("train", "test"):
        raise ValueError(f"split {split!r}: expected 'train' or 'test'")
    x_train, y_train, x_test, y_test = load_splits(name, task)
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def predict_one(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Class predictions [n] of `model` as it is (argmax, eval mode, no grad, batched)."""
    from paramgen.metrics import predict

    return predict(model, x, batch_size=batch_size)


def load_into(model: nn.Module, sd: StateDict, name: str = "state dict") -> nn.Module:
    """`model.load_state_dict(sd, strict=True)` with an error that names the offending source."""
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{name} does not fit the model: {exc}") from None
    return model


def predictions(state_dicts: Sequence[StateDict], model: nn.Module, x: Tensor,
                batch_size: int = 1024, names: Sequence[str] | None = None) -> Tensor:
    """Class predictions [M, n] of every state dict on inputs x.

    Each state dict is loaded into `model` with strict=True (so a key or shape mismatch is an
    error, never a silently half-loaded network); `model` is left holding the last one.
    """
    rows = []
    for i, sd in enumerate(state_dicts):
        load_into(model, sd, names[i] if names else f"state dict #{i}")
        rows.append(predict_one(model, x, batch_size))
    if not rows:
        return torch.empty(0, len(x), dtype=torch.long)
    return torch.stack(rows)


def score(preds: Tensor, y: Tensor, metric: str = "accuracy") -> Tensor:
    """Metric of predictions [n] → scalar tensor, or [M, n] → [M] (fractions in [0, 1]).

    balanced_accuracy is the mean per-class recall over the classes present in y, the metric of
    task grids where one class can be far rarer than the other. Computed here in one vectorised
    pass over all models; it matches `paramgen.metrics` row by row (checked in the tests).
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: expected one of {METRICS}")
    y = y.to(preds.device).long()
    if preds.shape[-1] != y.shape[0]:
        raise ValueError(f"predictions cover {preds.shape[-1]} examples, labels {y.shape[0]}")
    correct = (preds == y).to(torch.float64)
    if metric == "accuracy":
        return correct.mean(dim=-1)
    classes = torch.unique(y)
    per_class = torch.stack([correct[..., y == c].mean(dim=-1) for c in classes], dim=-1)
    return per_class.mean(dim=-1)


def _sample_files(folder: str | os.PathLike) -> list[Path]:
    """Every `*.safetensors` file directly in `folder`, sorted; a clear error when none."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"samples folder {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"samples path {path} is not a folder of .safetensors files")
    files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not files:
        raise ValueError(f"samples folder {path} holds no .safetensors files")
    return files


def _read_sample(f: Path) -> dict[str, Tensor]:
    """The state dict in `f`; a ValueError saying why not (without the path) otherwise."""
    try:
        return load_file(str(f))
    except Exception as exc:  # safetensors raises its own error types for torn/foreign files
        raise ValueError(f"cannot read as safetensors: {exc}") from None


def load_samples(folder: str | os.PathLike) -> tuple[list[str], list[dict[str, Tensor]]]:
    """File names and state dicts of every `*.safetensors` file directly in `folder`, sorted."""
    files, sds = _sample_files(folder), []
    for f in files:
        try:
            sds.append(_read_sample(f))
        except ValueError as exc:
            raise ValueError(f"{f}: {exc}") from None
    return [f.name for f in files], sds


def scan_samples(folder: str | os.PathLike, reference: StateDict,
                 reference_name: str = "checkpoints"
                 ) -> tuple[list[str], list[dict[str, Tensor]], dict[str, str]]:
    """The generated models in `folder`: file names, state dicts, and the files left out.

    A samples folder can hold leftovers (an older run's files, a model of another network): only
    files that load into the reference's exact keys and shapes are evaluated as generated
    models. Every other `.safetensors` file is named in the returned {file name: reason} and
    skipped, so it can neither pass as a sample nor go unnoticed. A folder where no file fits is
    refused with the first file's reason.
    """
    path = Path(folder)
    names, sds, skipped = [], [], {}
    for f in _sample_files(folder):
        try:
            sd = _read_sample(f)
        except ValueError as exc:
            skipped[f.name] = str(exc)
            continue
        try:
            check_compatible([sd], reference, [str(f)], reference_name)
        except ValueError as exc:
            skipped[f.name] = str(exc)
            continue
        names.append(f.name)
        sds.append(sd)
    if not sds:
        first = next(iter(skipped))
        raise ValueError(f"samples folder {path}: no file fits the {reference_name} "
                         f"({len(skipped)} skipped); {skipped[first]}")
    return names, sds, skipped


def check_compatible(state_dicts: Sequence[StateDict], reference: StateDict,
                     names: Sequence[str] | None = None, reference_name: str = "checkpoints"
                     ) -> None:
    """Every state dict must have exactly the reference's keys and shapes (dtypes may differ).

    Floating dtypes may differ (a sample saved in float16 is cast on load), but a float/integer
    swap means the file is not a state dict of this model. The error names the file and the key.
    """
    ref_keys = list(reference)
    for i, sd in enumerate(state_dicts):
        name = names[i] if names else f"sample #{i}"
        missing = [k for k in ref_keys if k not in sd]
        extra = [k for k in sd if k not in reference]
        if missing:
            raise ValueError(f"{name}: key {missing[0]!r} of the {reference_name} is missing "
                             f"({len(missing)} missing in all)")
        if extra:
            raise ValueError(f"{name}: key {extra[0]!r} is not in the {reference_name} "
                             f"({len(extra)} unexpected in all)")
        for k in ref_keys:
            a, b = sd[k], reference[k]
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError(f"{name}: key {k!r} has shape {tuple(a.shape)}, the "
                                 f"{reference_name} have {tuple(b.shape)}")
            if a.is_floating_point() != b.is_floating_point():
                raise ValueError(f"{name}: key {k!r} has dtype {a.dtype}, the {reference_name} "
                                 f"have {b.dtype}")


def nonfinite_keys(sd: StateDict) -> list[str]:
    """Keys of floating tensors holding NaN or inf: a diverged sample is reported, not hidden."""
    return [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: missing numbers are written as null."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)
