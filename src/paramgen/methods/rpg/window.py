"""Windowed training: a training step costs O(window), not O(model).

Each step trains, for each checkpoint of the batch, one window of W consecutive tokens. The
backbone starts the window from the recurrent state that checkpoint's previous window ended
in, kept in a bank (one state per checkpoint, no gradient), and each checkpoint walks its token
sequence window by window, starting over from the zero state after its last window. This is
truncated backpropagation through time, as stateful language models train: the carried state
was computed by slightly older weights, which the measurements in docs/performance.md show costs
no quality on the collections tried. The bank is a module, so the engine saves it with the
weights and a resumed run continues exactly.

Here: which window a fit uses (:func:`choose_window`), the carry it needs (:func:`carry_for`),
the loss of one step (:func:`window_loss`) and the bank's update across processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from paramgen.diffusion import NoiseSchedule, diffusion_loss
from paramgen.tokenize import slot_mask
from paramgen.training import StepContext


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


def choose_window(train_window: int, num_tokens: int) -> int:
    """The window a fit trains with: ``train_window`` tokens, or 0 (whole sequences) when that
    is off or covers the whole sequence anyway."""
    return train_window if 0 < train_window < num_tokens else 0


def carry_for(network: nn.Module, backbone: str, num_sequences: int, length: int,
              window: int) -> WindowCarry | None:
    """The state bank a windowed fit carries (None without a window)."""
    if not window:
        return None
    if not network.backbone.streams:
        raise ValueError(f"train_window needs a backbone that carries its state "
                         f"(mamba, lstm, none); {backbone!r} does not")
    return WindowCarry(network.backbone, num_sequences, length, window)


def noisy_conditions(conditions: Tensor | None, rows: Tensor, config: Any,
                     ctx: StepContext) -> Tensor | None:
    """The conditions of the checkpoints ``rows``, with ``config.condition_noise`` std of
    Gaussian noise (drawn from the step's noise stream) when it is set, and a
    ``config.condition_dropout`` share of them zeroed (classifier-free guidance)."""
    if conditions is None:
        return None
    cd = conditions[rows]
    if config.condition_noise > 0:
        cd = cd + config.condition_noise * torch.randn(cd.shape, generator=ctx.noise,
                                                       device=cd.device)
    if config.condition_dropout > 0:
        # zeros are the null condition of classifier-free guidance (no task has all bits 0)
        keep = torch.rand(cd.shape[0], generator=ctx.noise, device=cd.device)
        cd = cd * (keep >= config.condition_dropout).to(cd.dtype)[:, None]
    return cd


def training_states(states: Tensor | None, rows: Tensor, shared_state: int | None,
                    config: Any, ctx: StepContext) -> Tensor | None:
    """The permutation states of the checkpoints ``rows``; with task states (states.py) a
    ``config.shared_state_share`` of them (drawn from the step's noise stream) take the shared
    state ``shared_state``, which conditions not seen in training sample with."""
    if states is None:
        return None
    st = states[rows]
    if shared_state is not None:
        shared = torch.rand(st.shape[0], generator=ctx.noise, device=st.device)
        st = torch.where(shared < config.shared_state_share,
                         torch.full_like(st, shared_state), st)
    return st


def window_loss(net: nn.Module, data: dict, config: Any, schedule: NoiseSchedule,
                ctx: StepContext) -> Tensor:
    """RPG's diffusion loss on one window of W tokens per checkpoint of a batch. ``data``: the
    fit's training data (tokens in memory or in a file, token_store.py: the same windows), valid
    counts per token, states and conditions per checkpoint, the window and its carry (on the
    device: the engine moved it with the training modules)."""
    carry: WindowCarry = data["carry"]
    tokens = data["tokens"]
    n, L, T = tokens.shape
    W = data["window"]
    chosen = torch.randperm(n, generator=ctx.generator)[:min(config.batch_size, n)]
    mine = ctx.shard(chosen).to(ctx.device)
    b = mine.numel()
    index, real = window_index(carry.starts(mine), W, L)             # [b, W]
    st = training_states(data["states"], mine, data["shared_state"], config, ctx)
    cd = noisy_conditions(data["conditions"], mine, config, ctx)
    per_process = max(1, config.diffusion_batch // ctx.num_processes)
    picked = torch.randperm(b * W, generator=ctx.generator)[:min(per_process, b * W)]
    picked = picked.to(ctx.device)
    x0 = tokens.windows(mine, index).reshape(b * W, T)[picked]
    m = (slot_mask(data["valid"][index], T) & real[..., None]).reshape(b * W, T)[picked]
    with ctx.autocast():
        h = net.window_input(st, cd, index)
        protos, after = net.backbone.forward_stateful(h, carry.gather(mine, h.dtype))
        protos = net.add_fixed(protos, st, cd, index).reshape(b * W, T)[picked]
        loss = diffusion_loss(lambda xt, t: net.denoise(xt, t, protos), x0, m,
                              schedule, config.prediction, generator=ctx.noise)
    advance_windows(ctx, carry, chosen.to(ctx.device), mine, after)
    return loss


@torch.no_grad()
def advance_windows(ctx: StepContext, carry: WindowCarry, chosen: Tensor, mine: Tensor,
                    after: Any) -> None:
    """Store the states the windows ended in. Every process stores the states of the whole
    global batch (``chosen``; ``after`` holds those of its share, ``mine``), so all banks
    agree."""
    if ctx.num_processes == 1:
        carry.update(mine, after)
        return
    leaves, spec = tree_flatten(after)
    where = (mine[:, None] == chosen[None, :]).float()                 # [mine, chosen]
    count = ctx.reduce_sum(where.sum(0))
    full = []
    for leaf, axis in zip(leaves, carry._axes):
        moved = leaf.detach().float().movedim(axis, -1)                 # [..., mine]
        total = ctx.reduce_sum(moved @ where) / count.clamp_min(1)
        full.append(total.movedim(-1, axis))
    carry.update(chosen, tree_unflatten(full, spec))
