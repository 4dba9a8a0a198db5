"""Windowed training: a training step costs O(window), not O(model).

Each step trains, for each checkpoint of the batch, one window of W consecutive tokens. The
backbone starts the window from the recurrent state that checkpoint's previous window ended
in, kept in a bank (one state per checkpoint, no gradient), and each checkpoint walks its token
sequence window by window, starting over from the zero state after its last window. This is
truncated backpropagation through time, as stateful language models train: the carried state
was computed by slightly older weights, which the measurements in docs/performance.md show costs
no quality on the collections tried. The bank is a module, so the engine saves it with the
weights and a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten


class WindowCarry(nn.Module):
    """One carried backbone state and one window cursor per checkpoint."""

    def __init__(self, backbone: nn.Module, num_sequences: int, length: int, window: int):
        super().__init__()
        self.length, self.window = int(length), int(window)
        one, self._spec = tree_flatten(backbone.init_state(1, "cpu"))
        two, _ = tree_flatten(backbone.init_state(2, "cpu"))
        if not all(isinstance(x, Tensor) for x in one):  # a backbone with no state ("none")
            one, two, self._spec = [], [], tree_flatten(None)[1]
        # The batch axis of each state tensor is the one whose size follows the batch.
        self._axes = [next(i for i, (a, b) in enumerate(zip(x.shape, y.shape)) if a != b)
                      for x, y in zip(one, two)]
        bank = tree_flatten(backbone.init_state(num_sequences, "cpu"))[0] if one else []
        for i, leaf in enumerate(bank):
            self.register_buffer(f"state_{i}", leaf.float().clone())
        self.register_buffer("cursor", torch.zeros(num_sequences, dtype=torch.long))
        self._num = len(bank)

    @property
    def num_windows(self) -> int:
        return -(-self.length // self.window)

    def leaves(self) -> list[Tensor]:
        return [getattr(self, f"state_{i}") for i in range(self._num)]

    def starts(self, seqs: Tensor) -> Tensor:
        return self.cursor[seqs] * self.window

    def gather(self, seqs: Tensor, dtype: torch.dtype | None = None) -> Any:
        """The carried states of sequences ``seqs`` as the backbone's state structure."""
        if not self._num:
            return None
        leaves = [leaf.index_select(axis, seqs) for leaf, axis in zip(self.leaves(), self._axes)]
        if dtype is not None:
            leaves = [x.to(dtype) for x in leaves]
        return tree_unflatten(leaves, self._spec)

    @torch.no_grad()
    def update(self, seqs: Tensor, state: Any, reduce=None) -> None:
        """Store the states the window ended in, advance the cursors; a sequence whose last window
        this was starts over from the zero state. ``reduce(tensor)`` sums over processes, each of
        which updated only its own share of the global batch (``seqs`` are global indices with
        ``state`` given for ``mine``)."""
        new = tree_flatten(state)[0] if self._num else []
        done = self.cursor[seqs] + 1 >= self.num_windows
        for leaf, axis, value in zip(self.leaves(), self._axes, new):
            value = value.detach().float()
            keep = (~done).to(value.dtype).view([-1 if d == axis else 1
                                                 for d in range(value.dim())])
            leaf.index_copy_(axis, seqs, value * keep)
        self.cursor[seqs] = torch.where(done, torch.zeros_like(seqs), self.cursor[seqs] + 1)


def window_index(starts: Tensor, window: int, length: int) -> tuple[Tensor, Tensor]:
    """Token indices [b, W] of windows starting at ``starts`` (clamped to the last token) and
    which of them are real tokens (the last window of a sequence may be shorter)."""
    offsets = torch.arange(window, device=starts.device)
    index = starts[:, None] + offsets[None]
    real = index < length
    return index.clamp(max=length - 1), real
