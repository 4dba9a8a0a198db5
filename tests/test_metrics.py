"""Metrics on hand-made cases, and the batched predictor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramgen import metrics


def test_accuracy_from_predictions_and_logits() -> None:
    y = torch.tensor([0, 1, 2, 2])
    assert metrics.accuracy(torch.tensor([0, 1, 1, 2]), y) == pytest.approx(0.75)
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5]])
    assert metrics.accuracy(logits, y) == pytest.approx(0.75)


def test_balanced_accuracy_ignores_class_imbalance() -> None:
    # 9 negatives, 1 positive, a model that always says 0: accuracy 0.9, balanced 0.5.
    y = torch.tensor([0] * 9 + [1])
    preds = torch.zeros(10, dtype=torch.long)
    assert metrics.accuracy(preds, y) == pytest.approx(0.9)
    assert metrics.balanced_accuracy(preds, y) == pytest.approx(0.5)
    # Recall of class 0 is 2/3, of class 1 is 1/1; class 2 never occurs in y and is ignored.
    y = torch.tensor([0, 0, 0, 1])
    preds = torch.tensor([0, 0, 2, 1])
    assert metrics.balanced_accuracy(preds, y) == pytest.approx((2 / 3 + 1) / 2)


@pytest.mark.parametrize(
    "preds, y, fragment",
    [
        (torch.zeros(3), torch.zeros(4), "3 predictions for 4 labels"),
        (torch.zeros(2, 2, 2), torch.zeros(2), "shape"),
        (torch.zeros(0), torch.zeros(0), "no samples"),
    ],
)
def test_metric_errors(preds: torch.Tensor, y: torch.Tensor, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        metrics.accuracy(preds, y)


class _Fixed(nn.Module):
    """Predicts class = first feature; has dropout so eval mode is observable."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = nn.functional.one_hot(x[:, 0].long(), 3).float() * self.scale
        return self.drop(logits)


def test_predict_batches_eval_mode_and_restores_training() -> None:
    model = _Fixed().train()
    x = torch.tensor([[0.0], [2.0], [1.0], [2.0], [0.0]])
    preds = metrics.predict(model, x, batch_size=2)
    assert preds.tolist() == [0, 2, 1, 2, 0] and preds.dtype == torch.int64
    assert model.training
    assert not preds.requires_grad
    y = torch.tensor([0, 2, 1, 1, 0])
    assert metrics.evaluate_model(model, x, y) == pytest.approx(0.8)
    assert metrics.evaluate_model(model, x, y, metric="balanced_accuracy") == pytest.approx(
        (1 + 0.5 + 1) / 3
    )
    with pytest.raises(ValueError, match="f1"):
        metrics.evaluate_model(model, x, y, metric="f1")
