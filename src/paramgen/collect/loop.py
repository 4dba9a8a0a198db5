"""Pieces every collection training loop shares: lr schedule, device, progress bar, state copy."""

from __future__ import annotations

import math

import torch
from torch import nn

from paramgen import notices


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def cosine_lr(step: int, total: int, lr: float, floor: float = 0.01) -> float:
    """Cosine decay from lr to floor*lr over `total` steps (after a short linear warm-up that
    keeps Adam's first, poorly scaled steps from wrecking BatchNorm/attention models)."""
    warm = min(50, max(1, total // 20))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or cuda when available else cpu; a ValueError for a name torch does not know
    or a CUDA device this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"--device {device!r}: not a torch device ({exc}); use cpu or "
                         "cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine; use "
                         "--device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return dev


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    return notices.progress_bar(total, desc, enabled, initial=initial, leave=False)


