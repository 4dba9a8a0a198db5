"""Classification metrics and a batched, gradient-free predictor for any classifier module."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["METRICS", "accuracy", "balanced_accuracy", "evaluate_model", "predict"]


def _as_preds(logits_or_preds: Tensor, y: Tensor, fn: str) -> tuple[Tensor, Tensor]:
    """Turn ``(N, C)`` logits or ``(N,)`` predictions into flat int64 predictions next to ``y``."""
    out = torch.as_tensor(logits_or_preds).detach()
    y = torch.as_tensor(y).detach()
    if out.ndim == 2:
        out = out.argmax(dim=1)
    elif out.ndim != 1:
        raise ValueError(f"{fn}: expected (N, C) logits or (N,) predictions, got shape "
                         f"{tuple(out.shape)}")
    if y.ndim != 1:
        raise ValueError(f"{fn}: expected labels of shape (N,), got {tuple(y.shape)}")
    if out.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: {out.shape[0]} predictions for {y.shape[0]} labels")
    if y.shape[0] == 0:
        raise ValueError(f"{fn}: no samples")
    return out.long().cpu(), y.long().cpu()


def accuracy(logits_or_preds: Tensor, y: Tensor) -> float:
    """Fraction of samples whose prediction (argmax of logits, or the given class) equals ``y``."""
    preds, y = _as_preds(logits_or_preds, y, "accuracy")
    return float((preds == y).float().mean())


def balanced_accuracy(preds: Tensor, y: Tensor) -> float:
    """Mean per-class recall over the classes present in ``y`` (accepts logits too).

    Unlike accuracy it is not inflated by always predicting a majority class, which matters for
    binary tasks that group e.g. 9 classes against 1.
    """
    preds, y = _as_preds(preds, y, "balanced_accuracy")
    recalls = [float((preds[y == c] == c).float().mean()) for c in torch.unique(y).tolist()]
    return sum(recalls) / len(recalls)


METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
}


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Argmax class predictions (int64, on CPU) of ``model`` on ``x``, in eval mode, no gradients.

    The model's train/eval mode is restored afterwards, so calling this mid-training is safe.
    """
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x[i:i + batch_size].to(device)).argmax(dim=1).cpu()
                  for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if not chunks:
        return torch.empty(0, dtype=torch.int64)
    return torch.cat(chunks).long()


def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, metric: str = "accuracy") -> float:
    """Score ``model`` on ``(x, y)`` with ``metric`` ("accuracy" or "balanced_accuracy")."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[metric](predict(model, x), y)
